/**
 * Append-only numbered migrations (`app/db/migrations/NNNN_name.sql`), applied at boot.
 *
 * A session-level advisory lock serialises concurrent boots: the first instance applies the
 * pending files, the others wait and then find nothing to do. Each file runs in its own
 * transaction through the simple query protocol (files hold several statements). A checksum of
 * every applied file is kept; editing an applied migration stops the boot instead of drifting.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Config } from '../config/index.js';
import { TCP_KEEPALIVE_INITIAL_DELAY_MS } from './driver.js';
import { tlsOptionsFor } from './tls.js';

export const migrationsDirectory = fileURLToPath(new URL('./migrations/', import.meta.url));

/** Arbitrary constant shared by every instance: the key of the migration advisory lock. */
const MIGRATION_LOCK_KEY = 7_305_114_201;

export type Migration = { version: number; name: string; sql: string; checksum: string };

export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** The file a migration comes from: `0001_name.sql`. */
const fileNameOf = (migration: { version: number; name: string }) => `${String(migration.version).padStart(4, '0')}_${migration.name}.sql`;

/** Loads and orders the migration files. @throws {MigrationError} on a malformed or duplicate file name. */
export const loadMigrations = async (directory = migrationsDirectory): Promise<Migration[]> => {
  const files = (await readdir(directory)).filter((file) => file.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file);
    if (!match) throw new MigrationError(`migration file name ${file} must look like 0001_name.sql`);
    const sql = await readFile(join(directory, file), 'utf8');
    const version = Number(match[1]);
    if (migrations.some((m) => m.version === version)) throw new MigrationError(`duplicate migration number ${match[1]}`);
    migrations.push({ version, name: match[2]!, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return migrations;
};

export type MigrationResult = { applied: number[]; alreadyApplied: number };

/**
 * Applies pending migrations under the advisory lock.
 * @throws {MigrationError} when an applied migration's file changed or is missing.
 */
export const runMigrations = async (
  database: Pick<Config['database'], 'connectionUri' | 'sslMode' | 'sslRootCert' | 'connectTimeoutMs'>,
  migrations?: Migration[],
): Promise<MigrationResult> => {
  const files = migrations ?? (await loadMigrations());
  const ssl = tlsOptionsFor({ ...database, poolSize: 1, statementTimeoutMs: 0 });
  const client = new pg.Client({
    connectionString: database.connectionUri,
    ssl,
    connectionTimeoutMillis: database.connectTimeoutMs,
    application_name: 'karaxas-migrate',
    // No client-side query bound here (unlike the pool, app/db/driver.ts): a migration may run
    // long, and this client sets no statement timeout either. Keepalive still notices a peer that
    // vanished mid-migration instead of waiting on it for good.
    keepAlive: true,
    keepAliveInitialDelayMillis: TCP_KEEPALIVE_INITIAL_DELAY_MS,
  });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    const { rows } = await client.query<{ version: number; name: string; checksum: string }>(
      'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
    );
    for (const row of rows) {
      const file = files.find((m) => m.version === row.version);
      if (!file) throw new MigrationError(`applied migration ${fileNameOf(row)} has no file; migrations are append-only`);
      if (file.checksum !== row.checksum) {
        throw new MigrationError(`applied migration ${fileNameOf(row)} was edited; add a new migration instead`);
      }
    }
    const appliedVersions = new Set(rows.map((row) => row.version));
    const applied: number[] = [];
    for (const migration of files) {
      if (appliedVersions.has(migration.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
          migration.version,
          migration.name,
          migration.checksum,
        ]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new MigrationError(`migration ${fileNameOf(migration)} failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
      applied.push(migration.version);
    }
    return { applied, alreadyApplied: rows.length };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await client.end().catch(() => undefined);
  }
};
