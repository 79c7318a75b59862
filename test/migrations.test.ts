/**
 * Migrations: two real app processes racing on one empty database, the append-only guard
 * (edited or missing applied files stop the boot) and file-name validation.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { loadMigrations, MigrationError, migrationsDirectory, runMigrations, type Migration } from '../app/db/migrate.js';
import { createTestDatabase, testSslMode, withAdminClient, type TestDatabase } from './support/database.js';
import { testEnvironment } from './support/service.js';

const root = fileURLToPath(new URL('..', import.meta.url));

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const connection = (database: TestDatabase) => ({
  connectionUri: database.url,
  sslMode: testSslMode(),
  sslRootCert: undefined,
  connectTimeoutMs: 5_000,
});

const checksum = (text: string) => createHash('sha256').update(text).digest('hex');

const appliedRows = (database: TestDatabase) =>
  withAdminClient(
    async (client) =>
      (await client.query<{ version: number; name: string; checksum: string; applied_at: Date }>(
        'SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version',
      )).rows,
    database.name,
  );

type AppProcess = { child: ChildProcess; lines: Array<Record<string, unknown>>; stderr: () => string; exited: Promise<number | null> };

/** Starts `app/main.ts` with only the given environment; resolves once it logs "listening". */
const startApp = (env: Record<string, string | undefined>): { app: AppProcess; listening: Promise<string> } => {
  const clean: Record<string, string> = {};
  for (const [name, value] of Object.entries({ PATH: process.env.PATH, HOME: process.env.HOME, ...env })) {
    if (value !== undefined) clean[name] = value;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts'], { cwd: root, env: clean, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  let buffered = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const listening = new Promise<string>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      for (const part of parts) {
        if (!part.trim()) continue;
        const entry = JSON.parse(part) as Record<string, unknown>;
        lines.push(entry);
        if (entry.message === 'listening') resolve(String(entry.url));
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    void exited.then((code) => reject(new Error(`app exited with ${code} before listening: ${stderr}`)));
  });
  return { app: { child, lines, stderr: () => stderr, exited }, listening };
};

test('two app processes booting at once against one empty database both come up; each migration is applied once', async (t) => {
  const database = await createTestDatabase({ empty: true });
  const apps: AppProcess[] = [];
  t.teardown(async () => {
    for (const { child } of apps) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all(apps.map(({ exited }) => exited));
    await database.drop();
  });

  const ports = [await freePort(), await freePort()];
  const started = ports.map((port) =>
    startApp(testEnvironment(database.url, { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', SHUTDOWN_TIMEOUT_SECONDS: '5' })),
  );
  apps.push(...started.map(({ app }) => app));
  const urls = await Promise.all(started.map(({ listening }) => listening));

  for (const url of urls) {
    const ready = await fetch(`${url}/readyz`);
    t.is(ready.status, 200, url);
  }

  const files = await loadMigrations();
  const rows = await appliedRows(database);
  t.deepEqual(
    rows.map(({ version, name, checksum: sum }) => ({ version, name, checksum: sum })),
    files.map(({ version, name, checksum: sum }) => ({ version, name, checksum: sum })),
    'every migration recorded exactly once, with its checksum',
  );
  const appliers = apps.filter(({ lines }) => lines.some((line) => line.message === 'migrations applied'));
  t.is(appliers.length, 1, 'exactly one process applied the migrations; the other waited for the lock and found nothing to do');
  t.deepEqual(appliers[0]!.lines.find((line) => line.message === 'migrations applied')!.applied, files.map((file) => file.version));

  for (const { child } of apps) child.kill('SIGTERM');
  const codes = await Promise.all(apps.map(({ exited }) => exited));
  t.deepEqual(codes, [0, 0]);
  t.deepEqual(
    apps.map(({ stderr }) => stderr()),
    ['', ''],
  );
});

test('re-running on a migrated database applies nothing', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const before = await appliedRows(database);
  const result = await runMigrations(connection(database));
  t.deepEqual(result.applied, []);
  t.is(result.alreadyApplied, before.length);
  t.deepEqual(await appliedRows(database), before);
});

test('an edited applied migration is refused, naming its file', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const files = await loadMigrations();
  const first = files[0]!;
  const fileName = `${String(first.version).padStart(4, '0')}_${first.name}.sql`;
  const editedSql = `${first.sql}\n-- an innocent-looking edit\n`;
  const edited: Migration[] = files.map((file) => (file === first ? { ...file, sql: editedSql, checksum: checksum(editedSql) } : file));

  const error = await t.throwsAsync(runMigrations(connection(database), edited), { instanceOf: MigrationError });
  t.true(error!.message.includes(fileName), error!.message);
  t.regex(error!.message, /edited/);

  // The same through the files themselves: a copy of the folder with the first file changed.
  const folder = await mkdtemp(join(tmpdir(), 'karaxas-migrations-'));
  t.teardown(() => rm(folder, { recursive: true, force: true }));
  for (const file of await readdir(migrationsDirectory)) {
    if (file.endsWith('.sql')) await copyFile(join(migrationsDirectory, file), join(folder, file));
  }
  await writeFile(join(folder, fileName), editedSql);
  await t.throwsAsync(runMigrations(connection(database), await loadMigrations(folder)), {
    instanceOf: MigrationError,
    message: new RegExp(fileName.replace('.', '\\.')),
  });
});

test('an applied migration whose file is gone is refused, naming it', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const files = await loadMigrations();
  const first = files[0]!;
  const fileName = `${String(first.version).padStart(4, '0')}_${first.name}.sql`;
  const error = await t.throwsAsync(runMigrations(connection(database), files.slice(1)), { instanceOf: MigrationError });
  t.true(error!.message.includes(fileName), error!.message);
  t.regex(error!.message, /append-only/);
});

test('a new migration is applied once, in its own transaction; a failing one leaves nothing behind', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const files = await loadMigrations();
  const probe: Migration = {
    version: 9001,
    name: 'probe_table',
    sql: 'CREATE TABLE migration_probe (id integer PRIMARY KEY); INSERT INTO migration_probe VALUES (1);',
    checksum: checksum('probe'),
  };
  t.deepEqual((await runMigrations(connection(database), [...files, probe])).applied, [9001]);
  t.deepEqual((await runMigrations(connection(database), [...files, probe])).applied, []);

  const broken: Migration = {
    version: 9002,
    name: 'broken',
    sql: 'CREATE TABLE half_done (id integer); SELECT 1 / 0;',
    checksum: checksum('broken'),
  };
  await t.throwsAsync(runMigrations(connection(database), [...files, probe, broken]), {
    instanceOf: MigrationError,
    message: /9002_broken\.sql failed/,
  });
  const state = await withAdminClient(
    async (client) => ({
      halfDone: (await client.query("SELECT to_regclass('half_done') AS t")).rows[0].t as string | null,
      versions: (await client.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map((row) => row.version),
      probeRows: (await client.query('SELECT id FROM migration_probe')).rowCount,
    }),
    database.name,
  );
  t.is(state.halfDone, null, 'the failed migration was rolled back');
  t.deepEqual(state.versions, [...files.map((file) => file.version), 9001]);
  t.is(state.probeRows, 1);
});

test('loadMigrations orders files, ignores non-SQL files and rejects malformed or duplicate names', async (t) => {
  const scratch = await mkdtemp(join(tmpdir(), 'karaxas-migration-names-'));
  t.teardown(() => rm(scratch, { recursive: true, force: true }));
  const folder = async (name: string, files: Record<string, string>) => {
    const path = join(scratch, name);
    await mkdir(path);
    for (const [file, text] of Object.entries(files)) await writeFile(join(path, file), text);
    return path;
  };

  const valid = await folder('valid', {
    '0002_second.sql': 'SELECT 2;',
    '0001_first.sql': 'SELECT 1;',
    'README.md': 'not a migration',
  });
  const loaded = await loadMigrations(valid);
  t.deepEqual(
    loaded.map(({ version, name, sql, checksum: sum }) => ({ version, name, sql, sum })),
    [
      { version: 1, name: 'first', sql: 'SELECT 1;', sum: checksum('SELECT 1;') },
      { version: 2, name: 'second', sql: 'SELECT 2;', sum: checksum('SELECT 2;') },
    ],
  );
  // A folder given with a trailing slash reads the same files.
  t.deepEqual(await loadMigrations(`${valid}/`), loaded);

  for (const bad of ['1_short.sql', '0001_Upper.sql', '0001-dash.sql', '0001_.sql', '00001_five.sql', '0001_white space.sql']) {
    const path = await folder(`bad-${checksum(bad).slice(0, 8)}`, { [bad]: 'SELECT 1;' });
    await t.throwsAsync(loadMigrations(path), { instanceOf: MigrationError, message: new RegExp(`${bad.replace('.', '\\.')} must look like 0001_name\\.sql`) }, bad);
  }
  const duplicate = await folder('duplicate', { '0003_a.sql': 'SELECT 1;', '0003_b.sql': 'SELECT 2;' });
  await t.throwsAsync(loadMigrations(duplicate), { instanceOf: MigrationError, message: /duplicate migration number 0003/ });
});
