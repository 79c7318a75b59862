/**
 * What every scenario shares: the database, the service's environment, fixtures, and how the
 * service and the baselines are started (child processes pinned to the server core).
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { freePort, type BenchDatabase } from './db.js';
import { createSessions, createUsers, hashPassword, type BenchSession, type BenchUser } from './fixtures.js';
import { spawnChild, type BenchChild } from './proc.js';

export const benchDirectory = resolve(import.meta.dirname, '..');
export const SERVER_CORE = 1;
export const HTTP_CONNECTIONS = 32;
export const LOGIN_CONCURRENCY = 8;

/** Argon2 parameters of the service's defaults (ARGON2_* unset). */
export const ARGON2 = { memoryKib: 19_456, timeCost: 2, parallelism: 1 };

export const secrets = {
  JWT_SECRET: randomBytes(48).toString('base64url'),
  OPS_API_TOKEN: randomBytes(32).toString('base64url'),
  TOTP_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
};
export const TOKEN_SETTINGS = { jwtSecret: secrets.JWT_SECRET, issuer: 'karaxas-backend', audience: 'karaxas-game', accessTtlSeconds: 3_600 };

/**
 * The service's configuration: production when the database speaks TLS (production refuses
 * DB_SSLMODE=disable, and the embedded server has no TLS), development otherwise — the two differ
 * only in what the config validation accepts. Plain secrets; the bench's budgets.
 */
export const serviceEnvironment = (db: BenchDatabase, port: number): Record<string, string | undefined> => ({
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  TMPDIR: process.env.TMPDIR,
  NODE_ENV: db.sslMode === 'disable' ? 'development' : 'production',
  ALLOW_PLAIN_ENV_SECRETS: 'true',
  FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION: 'true',
  ...secrets,
  DATABASE_URL: db.url,
  DB_SSLMODE: db.sslMode,
  HOST: '127.0.0.1',
  PORT: String(port),
  LOG_LEVEL: 'info',
  ACCESS_TOKEN_TTL_SECONDS: String(TOKEN_SETTINGS.accessTtlSeconds),
  // One client address generates all the load: the per-IP throttle must not be what is measured.
  AUTH_RATE_LIMIT_MAX: '10000',
  AUTH_RATE_LIMIT_WINDOW_SECONDS: '1',
  CHAT_RATE_LIMIT_MAX: '1000',
  CHAT_RATE_LIMIT_WINDOW_SECONDS: '1',
  WS_TICKET_TTL_SECONDS: '60',
});

export const startService = async (
  db: BenchDatabase,
  options: { label?: string; env?: Record<string, string>; cpuProfileDirectory?: string; nodeFlags?: string[] } = {},
): Promise<BenchChild> => {
  const profileDirectory = options.cpuProfileDirectory ?? process.env.BENCH_CPU_PROF;
  if (profileDirectory) await mkdir(profileDirectory, { recursive: true });
  return spawnChild({
    label: options.label ?? 'service',
    entry: join(benchDirectory, 'server-entry.ts'),
    env: { ...serviceEnvironment(db, await freePort()), ...options.env },
    core: SERVER_CORE,
    nodeFlags: ['--expose-gc', ...(options.nodeFlags ?? []), ...(profileDirectory ? ['--cpu-prof', `--cpu-prof-dir=${resolve(profileDirectory)}`] : [])],
  });
};

export const startBaseline = (db: BenchDatabase, mode: string, options: { cpuProfileDirectory?: string; nodeFlags?: string[] } = {}) =>
  spawnChild({
    label: `baseline ${mode}`,
    entry: join(benchDirectory, 'baselines.ts'),
    args: [mode],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, BENCH_DATABASE_URL: db.url, DB_POOL_SIZE: '10' },
    core: SERVER_CORE,
    nodeFlags: ['--expose-gc', ...(options.nodeFlags ?? []), ...(options.cpuProfileDirectory ? ['--cpu-prof', `--cpu-prof-dir=${resolve(options.cpuProfileDirectory)}`] : [])],
  });

export const withChild = async <T>(child: Promise<BenchChild>, work: (child: BenchChild) => Promise<T>): Promise<T> => {
  const started = await child;
  try {
    return await work(started);
  } finally {
    await started.stop();
  }
};

export type Fixtures = {
  passwordHash: string;
  users: BenchUser[];
  meSessions: BenchSession[];
  refreshSessions: BenchSession[];
  baselineRefreshSessions: BenchSession[];
};

export const createFixtures = async (db: BenchDatabase): Promise<Fixtures> => {
  const passwordHash = await hashPassword(ARGON2);
  return db.withClient(async (client) => {
    const users = await createUsers(client, 64, passwordHash, 'bench');
    return {
      passwordHash,
      users,
      meSessions: await createSessions(client, users.slice(0, HTTP_CONNECTIONS), 1, TOKEN_SETTINGS),
      refreshSessions: await createSessions(client, users, 4, TOKEN_SETTINGS),
      baselineRefreshSessions: await createSessions(client, users, 4, TOKEN_SETTINGS),
    };
  });
};
