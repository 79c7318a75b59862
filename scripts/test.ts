/**
 * `npm test`: runs the ava suite against a real PostgreSQL.
 *
 * With DATABASE_URL set (CI's second pass: the system PostgreSQL) that server is used;
 * otherwise an embedded PostgreSQL is started in a temporary folder and removed afterwards.
 * A template database is migrated once; each test file clones its own database from it
 * (see test/support/database.ts), so files run in parallel without sharing state.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../app/db/embedded.js';
import { runMigrations } from '../app/db/migrate.js';

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const runId = `kx_${process.pid}_${Date.now().toString(36)}`;
const template = `${runId}_template`;

const withAdmin = async <T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
};

/** Drops databases left by earlier runs whose process is gone (a crash or a kill). */
const dropOrphans = (adminUrl: string) =>
  withAdmin(adminUrl, async (client) => {
    const { rows } = await client.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'kx\\_%'");
    for (const { datname } of rows) {
      const pid = Number(/^kx_(\d+)_/.exec(datname)?.[1]);
      let alive = false;
      try {
        process.kill(pid, 0);
        alive = true;
      } catch {
        alive = false;
      }
      if (!alive) await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
  });

const main = async () => {
  let embedded: EmbeddedDatabase | undefined;
  let scratch: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  const sslMode = process.env.DB_SSLMODE ?? (adminUrl ? 'require' : 'disable');
  if (!adminUrl) {
    // /tmp is world-traversable, which the embedded server's own OS user needs when we are root.
    scratch = await mkdtemp(join(tmpdir(), 'karaxas-test-pg-'));
    await chmod(scratch, 0o711);
    embedded = await startEmbeddedDatabase({
      directory: join(scratch, 'pg'),
      port: await freePort(),
      persistent: false,
      settings: { max_connections: '300', fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
    });
    adminUrl = embedded.url('postgres');
  }

  const cleanup = async () => {
    await withAdmin(adminUrl!, async (client) => {
      const { rows } = await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [`${runId}%`]);
      for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }).catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  };

  let code = 1;
  try {
    await dropOrphans(adminUrl);
    await withAdmin(adminUrl, (client) => client.query(`CREATE DATABASE "${template}"`));
    const templateUrl = new URL(adminUrl);
    templateUrl.pathname = `/${template}`;
    await runMigrations({
      connectionUri: templateUrl.toString(),
      sslMode: sslMode as 'disable',
      sslRootCert: undefined,
      connectTimeoutMs: 10_000,
    });
    const server = await withAdmin(adminUrl, async (client) => (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version);
    console.log(`PostgreSQL ${server} (${embedded ? 'embedded' : 'DATABASE_URL'}); template ${template}`);

    const ava = spawn(process.execPath, [join('node_modules', 'ava', 'entrypoints', 'cli.mjs'), ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: {
        ...process.env,
        KARAXAS_TEST_ADMIN_URL: adminUrl,
        KARAXAS_TEST_TEMPLATE: template,
        KARAXAS_TEST_RUN_ID: runId,
        KARAXAS_TEST_SSLMODE: sslMode,
      },
    });
    const forward = (signal: NodeJS.Signals) => ava.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    code = await new Promise<number>((resolve) => ava.on('exit', (exitCode) => resolve(exitCode ?? 1)));
  } finally {
    await cleanup();
  }
  process.exit(code);
};

main().catch((error: unknown) => {
  console.error(`test harness failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
