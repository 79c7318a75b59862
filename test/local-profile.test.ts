/**
 * `npm start` (app/local.ts): the local profile on the embedded PostgreSQL, started as a real
 * child process with its data folder in a temporary directory. It prints the URL and serves;
 * secrets and data are kept across a SIGTERM and a second start; it refuses to run where the
 * service is deployed, and an unusable data folder gives one line, not a stack or a crash loop.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';

const root = fileURLToPath(new URL('..', import.meta.url));
const EX_CONFIG = 78;
const run = promisify(execFile);

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const portAnswers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

let scratch: string;

test.before(async () => {
  // World-traversable only, as the embedded server's OS user needs when we are root.
  scratch = await mkdtemp(join(tmpdir(), 'karaxas-local-profile-'));
  await chmod(scratch, 0o711);
});

test.after.always(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

type Started = {
  child: ChildProcess;
  output: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
};

/** Runs `app/local.ts` with only PATH, HOME and `env` (nothing leaks in from the test runner, e.g. DATABASE_URL). */
const startLocal = (env: Record<string, string | undefined>, options: { uid?: number; gid?: number } = {}): Started => {
  const clean: Record<string, string> = {};
  for (const [name, value] of Object.entries({ PATH: process.env.PATH, HOME: process.env.HOME, ...env })) {
    if (value !== undefined) clean[name] = value;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/local.ts'], {
    cwd: root,
    env: clean,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => stdout, stderr: () => stderr, exited };
};

const waitForUrl = async (started: Started, timeoutMs = 20_000): Promise<string> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = /Karaxas API listening on (http:\/\/\S+)/.exec(started.output());
    if (match) return match[1]!;
    if (started.child.exitCode !== null || started.child.signalCode !== null) {
      throw new Error(`npm start exited (${started.child.exitCode ?? started.child.signalCode}): ${started.stderr()}`);
    }
    if (Date.now() > deadline) throw new Error(`npm start printed no URL within ${timeoutMs} ms: ${started.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

/** The whole contract for a refusal: exit 78, exactly one line on stderr, no stack. */
const assertOneLineRefusal = async (t: ExecutionContext, started: Started, pattern: RegExp) => {
  const { code, signal } = await started.exited;
  t.is(signal, null);
  t.is(code, EX_CONFIG, `stderr: ${started.stderr()}`);
  t.regex(started.stderr(), /^[^\n]+\n$/, `exactly one line: ${JSON.stringify(started.stderr())}`);
  t.regex(started.stderr(), pattern);
  t.notRegex(started.stderr() + started.output(), /^\s+at /m, 'no stack trace');
  t.notRegex(started.output(), /listening/);
};

/**
 * Stops whatever a test left running: the app, and the embedded server it started (found by
 * its pid file, in case the app was killed before it could stop it).
 */
const cleanUp = async (started: Started[], dataDirectory: string) => {
  for (const { child } of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all(started.map(({ exited }) => exited));
  const pidText = await readFile(join(dataDirectory, 'postgres', 'pgdata', 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number(pidText.split('\n')[0]);
  if (pid > 0) {
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      // already gone
    }
  }
};

test('npm start serves on the embedded database, keeps secrets and data across a restart, and stops cleanly on SIGTERM', async (t) => {
  const dataDirectory = join(scratch, 'restart', '.data');
  const pgPort = await freePort();
  const env = {
    KARAXAS_DATA_DIR: dataDirectory,
    KARAXAS_LOCAL_PG_PORT: String(pgPort),
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
  };
  const runs: Started[] = [];
  t.teardown(() => cleanUp(runs, dataDirectory));

  // First start: initialises the database and generates the local secrets.
  const first = startLocal(env);
  runs.push(first);
  const url = await waitForUrl(first);
  t.is(new URL(url).port, env.PORT);
  const health = await fetch(`${url}/healthz`);
  t.is(health.status, 200);
  t.deepEqual(await health.json(), { status: 'ok' });
  t.is((await fetch(`${url}/readyz`)).status, 200);

  const secretsFile = join(dataDirectory, 'local-secrets.json');
  t.is((await stat(secretsFile)).mode & 0o777, 0o600, 'local secrets are private to their owner');
  t.is((await stat(dataDirectory)).mode & 0o777, 0o711);
  const secrets = await readFile(secretsFile, 'utf8');
  t.deepEqual(Object.keys(JSON.parse(secrets) as object).sort(), ['JWT_SECRET', 'OPS_API_TOKEN', 'TOTP_ENCRYPTION_KEY']);
  t.regex(first.output(), new RegExp(`local-only secrets: ${secretsFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  t.false(first.output().includes(JSON.parse(secrets).JWT_SECRET as string), 'the secrets themselves are not printed');

  // Write a row straight into the embedded database with the credentials it keeps beside its data.
  const { password } = JSON.parse(await readFile(join(dataDirectory, 'postgres', 'credentials.json'), 'utf8')) as { password: string };
  const database = () => new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password, database: 'postgres' });
  const client = database();
  await client.connect();
  await client.query('CREATE TABLE local_profile_probe (note text)');
  await client.query("INSERT INTO local_profile_probe VALUES ('kept across restarts')");
  const migrationsBefore = (await client.query('SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version')).rows;
  await client.end();
  t.true(migrationsBefore.length > 0);

  // SIGTERM while a request is still arriving: the app drains before the embedded database stops.
  const { port } = new URL(url);
  const inFlight = connect({ port: Number(port), host: '127.0.0.1' });
  await new Promise((resolve) => inFlight.once('connect', resolve));
  let response = '';
  inFlight.setEncoding('utf8').on('data', (chunk: string) => (response += chunk));
  const responded = new Promise((resolve) => inFlight.once('close', resolve));
  inFlight.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
  first.child.kill('SIGTERM');
  while (!first.output().includes('"message":"shutting down"')) await new Promise((resolve) => setTimeout(resolve, 20));
  const duringDrain = database();
  const answer = await duringDrain
    .connect()
    .then(async () => (await duringDrain.query('SELECT 1 AS up')).rows)
    .catch((error: Error) => error.message)
    .finally(() => duringDrain.end().catch(() => undefined));
  t.deepEqual(answer, [{ up: 1 }], 'the embedded database is still up while the app drains');
  inFlight.write('\r\n');
  await responded;
  t.regex(response, /^HTTP\/1\.1 200 /);

  const firstExit = await first.exited;
  t.deepEqual(firstExit, { code: 0, signal: null }, first.stderr());
  t.regex(first.output(), /"message":"shutdown complete"/);
  t.is(first.stderr(), '');
  t.false(await portAnswers(pgPort), 'the embedded server stopped with the app');

  // Second start: same secrets, same data, nothing re-applied.
  const second = startLocal(env);
  runs.push(second);
  const secondUrl = await waitForUrl(second);
  t.is((await fetch(`${secondUrl}/healthz`)).status, 200);
  t.is((await fetch(`${secondUrl}/readyz`)).status, 200);
  t.is(await readFile(secretsFile, 'utf8'), secrets, 'the generated secrets are reused');
  t.notRegex(second.output(), /"message":"migrations applied"/);
  const again = database();
  await again.connect();
  t.deepEqual((await again.query('SELECT note FROM local_profile_probe')).rows, [{ note: 'kept across restarts' }]);
  t.deepEqual((await again.query('SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version')).rows, migrationsBefore);
  await again.end();

  second.child.kill('SIGTERM');
  t.deepEqual(await second.exited, { code: 0, signal: null }, second.stderr());
  t.false(await portAnswers(pgPort));
});

test('npm start refuses NODE_ENV=production with one line, before touching the data folder', async (t) => {
  const dataDirectory = join(scratch, 'production', '.data');
  const started = startLocal({ NODE_ENV: 'production', KARAXAS_DATA_DIR: dataDirectory, KARAXAS_LOCAL_PG_PORT: String(await freePort()) });
  t.teardown(() => cleanUp([started], dataDirectory));
  await assertOneLineRefusal(t, started, /^Invalid configuration: NODE_ENV /);
  await t.throwsAsync(stat(dataDirectory), { code: 'ENOENT' });
});

test('npm start refuses to run on Cloud Run (K_SERVICE set) with one line', async (t) => {
  const dataDirectory = join(scratch, 'cloud-run', '.data');
  const started = startLocal({ K_SERVICE: 'karaxas-api', KARAXAS_DATA_DIR: dataDirectory, KARAXAS_LOCAL_PG_PORT: String(await freePort()) });
  t.teardown(() => cleanUp([started], dataDirectory));
  await assertOneLineRefusal(t, started, /^Invalid configuration: K_SERVICE /);
  await t.throwsAsync(stat(dataDirectory), { code: 'ENOENT' });
});

test('a read-only data folder gives one line naming KARAXAS_DATA_DIR and a config exit code', async (t) => {
  // Root may write anywhere, so when we are root the app runs as an unprivileged user.
  const readOnly = join(scratch, 'read-only');
  await mkdir(readOnly, { mode: 0o555 });
  await chmod(readOnly, 0o555);
  const dataDirectory = join(readOnly, '.data');
  let identity: { uid: number; gid: number } | undefined;
  if (userInfo().uid === 0) {
    const { stdout: uid } = await run('id', ['-u', 'nobody']);
    const { stdout: gid } = await run('id', ['-g', 'nobody']);
    identity = { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  }
  const started = startLocal(
    { KARAXAS_DATA_DIR: dataDirectory, KARAXAS_LOCAL_PG_PORT: String(await freePort()), PORT: String(await freePort()), HOME: readOnly },
    identity,
  );
  t.teardown(() => cleanUp([started], dataDirectory));
  await assertOneLineRefusal(t, started, /^Invalid configuration: KARAXAS_DATA_DIR \(.+\) is not writable/);
});

test('a data folder path blocked by a file gives one line too', async (t) => {
  const blocker = join(scratch, 'blocker');
  await writeFile(blocker, 'not a folder');
  const dataDirectory = join(blocker, '.data');
  const started = startLocal({ KARAXAS_DATA_DIR: dataDirectory, KARAXAS_LOCAL_PG_PORT: String(await freePort()), PORT: String(await freePort()) });
  t.teardown(() => cleanUp([started], dataDirectory));
  await assertOneLineRefusal(t, started, /^Invalid configuration: KARAXAS_DATA_DIR \(.+\) is not writable or is full \(ENOTDIR\)\n$/);
});
