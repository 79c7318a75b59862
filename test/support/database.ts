/**
 * Per-test-file databases cloned from the run's migrated template (see scripts/test.ts).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export type TestDatabase = { name: string; url: string; drop: () => Promise<void> };

const required = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite with \`npm test\` (scripts/test.ts prepares the database)`);
  return value;
};

export const adminUrl = () => required('KARAXAS_TEST_ADMIN_URL');
export const testSslMode = () => (process.env.KARAXAS_TEST_SSLMODE ?? 'disable') as 'disable' | 'require';

/** A URL for `database` on the test server. */
export const databaseUrl = (database: string) => {
  const url = new URL(adminUrl());
  url.pathname = `/${database}`;
  return url.toString();
};

export const withAdminClient = async <T>(work: (client: pg.Client) => Promise<T>, database?: string): Promise<T> => {
  const client = new pg.Client({ connectionString: database ? databaseUrl(database) : adminUrl() });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
};

/** A fresh database, migrated (cloned from the template) unless `empty` is set. */
export const createTestDatabase = async (options: { empty?: boolean } = {}): Promise<TestDatabase> => {
  const name = `${required('KARAXAS_TEST_RUN_ID')}_${randomBytes(5).toString('hex')}`;
  const template = required('KARAXAS_TEST_TEMPLATE');
  await withAdminClient((client) =>
    client.query(options.empty ? `CREATE DATABASE "${name}"` : `CREATE DATABASE "${name}" TEMPLATE "${template}"`),
  );
  return {
    name,
    url: databaseUrl(name),
    drop: () => withAdminClient((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
};
