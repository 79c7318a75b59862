/**
 * Starts the real service (real server, real PostgreSQL) for a test file.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { loadConfig, type Config } from '../../app/config/index.js';
import type { AnyRoute } from '../../app/http/route.js';
import { createLogger } from '../../app/logger.js';
import { startService, type Service } from '../../app/server.js';
import { createTestDatabase, testSslMode, type TestDatabase } from './database.js';

/** A complete, valid environment for tests: plain local secrets, the given database. */
export const testEnvironment = (databaseUrl: string, overrides: Record<string, string | undefined> = {}) => ({
  NODE_ENV: 'test',
  DATABASE_URL: databaseUrl,
  DB_SSLMODE: testSslMode(),
  ALLOW_PLAIN_ENV_SECRETS: 'true',
  JWT_SECRET: randomBytes(48).toString('base64url'),
  OPS_API_TOKEN: randomBytes(32).toString('base64url'),
  TOTP_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  LOG_LEVEL: 'debug',
  // Every test client shares 127.0.0.1; tests of the per-IP throttle set their own budget.
  AUTH_RATE_LIMIT_MAX: '10000',
  ...overrides,
});

/** Captures every log line the service writes, for assertions about what is (not) logged. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void) {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    done();
  }
  entries(): Array<Record<string, unknown>> {
    return this.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

export type TestService = Service & { config: Config; logs: LogCapture; database: TestDatabase };

/**
 * A running service on an ephemeral port with its own fresh database; stopped and dropped when
 * the test file ends.
 */
export const startTestService = async (
  t: ExecutionContext | { teardown: (fn: () => Promise<void>) => void },
  overrides: Record<string, string | undefined> = {},
  options: { database?: TestDatabase; extraRoutes?: readonly AnyRoute[] } = {},
): Promise<TestService> => {
  const database = options.database ?? (await createTestDatabase());
  const config = await loadConfig(testEnvironment(database.url, overrides));
  const logs = new LogCapture();
  const logger = createLogger(config, logs);
  const service = await startService({ config, logger, port: 0, extraRoutes: options.extraRoutes });
  t.teardown(async () => {
    await service.shutdown('test finished');
    if (!options.database) await database.drop();
  });
  return { ...service, config, logs, database };
};

/**
 * One service shared by the tests of a file: started by the first test that asks for it (so
 * files can declare several with different settings), stopped in `test.after.always`.
 */
export const useSharedService = (overrides: Record<string, string | undefined> = {}, options: { extraRoutes?: readonly AnyRoute[] } = {}) => {
  const cleanups: Array<() => Promise<void>> = [];
  let started: Promise<TestService> | undefined;
  test.after.always(async () => {
    await started?.catch(() => undefined);
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  return () => (started ??= startTestService({ teardown: (fn: () => Promise<void>) => void cleanups.push(fn) }, overrides, options));
};
