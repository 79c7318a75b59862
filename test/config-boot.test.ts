/**
 * Configuration at the process level: the real entry point (`app/main.ts`) started as a child
 * process with a bad environment must exit non-zero (78, EX_CONFIG) with exactly one line on
 * stderr — `Invalid configuration: <VAR> <reason>` — no stack trace and no secret value.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { startFakeSecretManager, type FakeSecretManager } from './support/fake-secret-manager.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const entry = 'app/main.ts';
const EX_CONFIG = 78;

const SENTINEL = 'S3NT1NEL';
const jwtSecret = `${SENTINEL}-jwt-0123456789abcdefghijklmnopqrstuv`;
const opsApiToken = `${SENTINEL}-ops-0123456789abcdefghijklmnopqrstuv`;
const totpKeyHex = 'c3'.repeat(32);
const secretValues = [jwtSecret, opsApiToken, totpKeyHex];

type Environment = Record<string, string | undefined>;
type Outcome = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };

/** A local environment that would be valid; each test breaks one thing. */
const validEnv = (overrides: Environment = {}): Environment => ({
  NODE_ENV: 'test',
  DATABASE_URL: 'postgres://app@127.0.0.1:1/karaxas',
  DB_SSLMODE: 'disable',
  ALLOW_PLAIN_ENV_SECRETS: 'true',
  JWT_SECRET: jwtSecret,
  OPS_API_TOKEN: opsApiToken,
  TOTP_ENCRYPTION_KEY: totpKeyHex,
  ...overrides,
});

/** Runs the entry with only `env` (plus PATH/HOME): nothing leaks in from the test runner. */
const boot = (env: Environment): Promise<Outcome> =>
  new Promise((resolve, reject) => {
    const clean: Record<string, string> = {};
    for (const [name, value] of Object.entries({ PATH: process.env.PATH, HOME: process.env.HOME, ...env })) {
      if (value !== undefined) clean[name] = value;
    }
    const child = spawn(process.execPath, ['--import', 'tsx', entry], { cwd: root, env: clean, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });

/** The whole contract for a configuration failure, in one place. */
const assertRefused = async (t: ExecutionContext, env: Environment, variable: string, reason?: RegExp): Promise<string> => {
  const { code, signal, stdout, stderr } = await boot(env);
  t.is(signal, null, 'the process exits by itself');
  t.not(code, 0);
  t.is(code, EX_CONFIG, `exit code (stderr: ${stderr})`);
  t.regex(stderr, /^[^\n]*\n?$/, `stderr is exactly one line: ${JSON.stringify(stderr)}`);
  const line = stderr.trimEnd();
  t.true(line.startsWith(`Invalid configuration: ${variable} `), line);
  if (reason) t.regex(line, reason);
  t.notRegex(stderr, /^\s+at /m, 'no stack trace');
  for (const output of [stdout, stderr]) {
    t.false(output.includes(SENTINEL), 'no secret value');
    for (const value of secretValues) t.false(output.includes(value));
  }
  return line;
};

let fake: FakeSecretManager;
const version = (secret: string, number = 1) => `projects/boot-test/secrets/${secret}/versions/${number}`;

test.before(async () => {
  if (!existsSync(new URL(`../${entry}`, import.meta.url))) throw new Error(`${entry} is missing: these tests drive the real entry point`);
  fake = await startFakeSecretManager({
    versions: { [version('jwt')]: jwtSecret, [version('ops')]: opsApiToken, [version('totp')]: totpKeyHex },
    denied: [version('denied')],
  });
});

test.after.always(async () => {
  await fake?.close();
});

test('PORT that is not a number', async (t) => {
  await assertRefused(t, validEnv({ PORT: 'eighty' }), 'PORT', /whole number/);
});

test('PORT out of range', async (t) => {
  await assertRefused(t, validEnv({ PORT: '65536' }), 'PORT');
});

test('WS_TICKET_TTL_SECONDS above 60', async (t) => {
  await assertRefused(t, validEnv({ WS_TICKET_TTL_SECONDS: '61' }), 'WS_TICKET_TTL_SECONDS');
});

test('CORS_ALLOWED_ORIGINS with a wildcard', async (t) => {
  await assertRefused(t, validEnv({ CORS_ALLOWED_ORIGINS: '*' }), 'CORS_ALLOWED_ORIGINS');
});

test('DB_SSLMODE=verify-full without DB_SSL_ROOT_CERT', async (t) => {
  await assertRefused(t, validEnv({ DB_SSLMODE: 'verify-full' }), 'DB_SSL_ROOT_CERT');
});

test('plain secrets without ALLOW_PLAIN_ENV_SECRETS=true', async (t) => {
  await assertRefused(t, validEnv({ ALLOW_PLAIN_ENV_SECRETS: undefined }), 'JWT_SECRET', /ALLOW_PLAIN_ENV_SECRETS=true/);
});

test('plain secrets in production, and on Cloud Run', async (t) => {
  await assertRefused(t, validEnv({ NODE_ENV: 'production', DB_SSLMODE: 'require' }), 'ALLOW_PLAIN_ENV_SECRETS');
  await assertRefused(t, validEnv({ K_SERVICE: 'karaxas-api', DB_SSLMODE: 'require' }), 'ALLOW_PLAIN_ENV_SECRETS');
});

test('a short JWT secret is named without being shown', async (t) => {
  await assertRefused(t, validEnv({ JWT_SECRET: `${SENTINEL}-short` }), 'JWT_SECRET', /at least 32/);
});

test('a missing JWT secret', async (t) => {
  await assertRefused(t, validEnv({ JWT_SECRET: undefined }), 'JWT_SECRET_SECRET_REF', /is required/);
});

const refEnv = (overrides: Environment = {}): Environment => ({
  NODE_ENV: 'test',
  DATABASE_URL: 'postgres://app@127.0.0.1:1/karaxas',
  DB_SSLMODE: 'disable',
  SECRET_MANAGER_EMULATOR_HOST: fake.host,
  JWT_SECRET_SECRET_REF: version('jwt'),
  OPS_API_TOKEN_SECRET_REF: version('ops'),
  TOTP_ENCRYPTION_KEY_SECRET_REF: version('totp'),
  // The Google client libraries would log whole responses (secret payloads) with this set.
  GOOGLE_SDK_NODE_LOGGING: 'all',
  ...overrides,
});

test('a *_SECRET_REF that does not exist (through the real client)', async (t) => {
  await assertRefused(t, refEnv({ OPS_API_TOKEN_SECRET_REF: version('absent') }), 'OPS_API_TOKEN_SECRET_REF', /NOT_FOUND/);
  t.true(fake.requests.includes(version('absent')));
});

test('a *_SECRET_REF the service may not read', async (t) => {
  await assertRefused(t, refEnv({ TOTP_ENCRYPTION_KEY_SECRET_REF: version('denied') }), 'TOTP_ENCRYPTION_KEY_SECRET_REF', /PERMISSION_DENIED/);
});

test('secrets resolved, then a later problem: still one line, no payload logged', async (t) => {
  // Secrets are read before DATABASE_URL is assembled, so this fails with every payload in memory.
  await assertRefused(t, refEnv({ DB_SSLMODE: 'require', DATABASE_URL: 'postgres://app@127.0.0.1:1/karaxas?sslmode=disable' }), 'DATABASE_URL');
  t.true(fake.requests.includes(version('jwt')));
});

test('a "latest" reference in production', async (t) => {
  await assertRefused(
    t,
    refEnv({ NODE_ENV: 'production', DB_SSLMODE: 'require', SECRET_MANAGER_EMULATOR_HOST: undefined, JWT_SECRET_SECRET_REF: version('jwt').replace(/\d+$/, 'latest') }),
    'JWT_SECRET_SECRET_REF',
    /latest/,
  );
});
