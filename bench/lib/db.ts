/**
 * The bench's PostgreSQL: DATABASE_URL when set (a database is created on that server for the
 * run and dropped afterwards), otherwise an embedded PostgreSQL in a temporary folder (mode 0711,
 * so that the server's own OS user can traverse it when the bench runs as root).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../app/db/embedded.js';
import { runMigrations } from '../../app/db/migrate.js';

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

export type BenchDatabase = {
  /** Connection URL of the run's migrated database. */
  url: string;
  /** DB_SSLMODE for the services under test. */
  sslMode: 'disable' | 'require';
  kind: 'embedded' | 'DATABASE_URL';
  serverVersion: string;
  /** Runs `work` with a dedicated client on the run's database. */
  withClient: <T>(work: (client: pg.Client) => Promise<T>) => Promise<T>;
  stop: () => Promise<void>;
};

const withUrl = async <T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> => {
  const client = new pg.Client({ connectionString: url, application_name: 'karaxas-bench' });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
};

const urlFor = (adminUrl: string, database: string) => {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
};

export const startBenchDatabase = async (): Promise<BenchDatabase> => {
  let embedded: EmbeddedDatabase | undefined;
  let scratch: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  const sslMode = (process.env.DB_SSLMODE ?? (adminUrl ? 'require' : 'disable')) as 'disable' | 'require';
  if (!adminUrl) {
    scratch = await mkdtemp(join(tmpdir(), 'karaxas-bench-pg-'));
    await chmod(scratch, 0o711);
    embedded = await startEmbeddedDatabase({
      directory: join(scratch, 'pg'),
      port: await freePort(),
      persistent: false,
      // The test harness's settings: durability off (the bench measures the service, not the
      // disk), room for two instances, the baselines and 2,000 websocket tickets.
      settings: {
        max_connections: '300',
        fsync: 'off',
        synchronous_commit: 'off',
        full_page_writes: 'off',
        shared_buffers: '256MB',
        max_wal_size: '4GB',
        checkpoint_timeout: '30min',
      },
    });
    adminUrl = embedded.url('postgres');
  }
  const name = `karaxas_bench_${process.pid}_${Date.now().toString(36)}`;
  const admin = adminUrl;
  try {
    await withUrl(admin, (client) => client.query(`CREATE DATABASE "${name}"`));
    const url = urlFor(admin, name);
    await runMigrations({ connectionUri: url, sslMode, sslRootCert: undefined, connectTimeoutMs: 10_000 });
    const serverVersion = await withUrl(url, async (client) => (await client.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v);
    return {
      url,
      sslMode,
      kind: embedded ? 'embedded' : 'DATABASE_URL',
      serverVersion,
      withClient: (work) => withUrl(url, work),
      stop: async () => {
        await withUrl(admin, (client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).catch(() => undefined);
        await embedded?.stop().catch(() => undefined);
        if (scratch) await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
      },
    };
  } catch (error) {
    await embedded?.stop().catch(() => undefined);
    if (scratch) await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
};
