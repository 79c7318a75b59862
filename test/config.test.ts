/**
 * Configuration, unit level (no database, no server): contract §9 names and defaults, one-line
 * errors naming the variable, the plain-env secret policy, and `*_SECRET_REF` resolution through
 * the real Secret Manager client against a local fake of its gRPC surface.
 */
import test, { type ExecutionContext } from 'ava';
import { ConfigError, loadConfig, parseEnvironment, type Config, type SecretAccessor } from '../app/config/index.js';
import { crc32c, createSecretManagerAccessor, SecretAccessError } from '../app/config/secret-manager.js';
import { startFakeSecretManager, type FakeSecretManager } from './support/fake-secret-manager.js';

type Environment = Record<string, string | undefined>;

/** Every secret value used below contains this, so any leak into a message is caught. */
const SENTINEL = 'S3NT1NEL';
const jwtSecret = `${SENTINEL}-jwt-0123456789abcdefghijklmnopqrstuv`;
const jwtSecretPrevious = `${SENTINEL}-jwt-previous-0123456789abcdefghijkl`;
const opsApiToken = `${SENTINEL}-ops-0123456789abcdefghijklmnopqrstuv`;
const dbPassword = `${SENTINEL}-db-password`;
/** 32 bytes, hex. The sentinel cannot live inside hex, so the key text is checked separately. */
const totpKeyHex = 'a1'.repeat(32);

const plainSecrets = {
  ALLOW_PLAIN_ENV_SECRETS: 'true',
  JWT_SECRET: jwtSecret,
  OPS_API_TOKEN: opsApiToken,
  TOTP_ENCRYPTION_KEY: totpKeyHex,
} satisfies Environment;

/** A valid local environment; each test breaks one thing. */
const validEnv = (overrides: Environment = {}): Environment => ({
  NODE_ENV: 'test',
  DATABASE_URL: 'postgres://app@127.0.0.1:5432/karaxas',
  DB_SSLMODE: 'disable',
  ...plainSecrets,
  ...overrides,
});

/** Production-shaped environment (still with plain secrets, which most production tests refuse). */
const productionEnv = (overrides: Environment = {}): Environment =>
  validEnv({ NODE_ENV: 'production', DB_SSLMODE: 'require', ...overrides });

const secretValues = [jwtSecret, jwtSecretPrevious, opsApiToken, dbPassword, totpKeyHex];

/**
 * Asserts that loading fails with a ConfigError that names `variable`, is one line, and carries
 * no secret value (nor any of `alsoAbsent`, typically the offending value itself).
 */
const rejects = async (
  t: ExecutionContext,
  env: Environment,
  variable: string,
  options: { reason?: RegExp; alsoAbsent?: string[]; accessSecret?: SecretAccessor } = {},
): Promise<ConfigError> => {
  const error = await t.throwsAsync(loadConfig(env, { accessSecret: options.accessSecret }), { instanceOf: ConfigError });
  if (!(error instanceof ConfigError)) throw new Error('unreachable');
  t.is(error.variable, variable);
  t.true(error.message.startsWith(`Invalid configuration: ${variable} `), error.message);
  t.notRegex(error.message, /[\r\n]/, 'one line');
  if (options.reason) t.regex(error.reason, options.reason);
  for (const value of [...secretValues, SENTINEL, ...(options.alsoAbsent ?? [])]) {
    t.false(error.message.includes(value), `the message must not contain ${JSON.stringify(value)}`);
  }
  return error;
};

let fake: FakeSecretManager;

const version = (project: string, secret: string, number: string | number = 1) =>
  `projects/${project}/secrets/${secret}/versions/${number}`;

test.before(async () => {
  fake = await startFakeSecretManager({
    versions: {
      [version('refs-ok', 'jwt', 3)]: jwtSecret,
      [version('refs-ok', 'jwt', 2)]: jwtSecretPrevious,
      [version('refs-ok', 'ops', 1)]: opsApiToken,
      [version('refs-ok', 'db-password', 7)]: dbPassword,
      [version('refs-ok', 'totp', 1)]: totpKeyHex,
      [version('refs-latest', 'jwt', 'latest')]: jwtSecret,
      [version('refs-latest', 'ops', 'latest')]: opsApiToken,
      [version('refs-latest', 'totp', 'latest')]: totpKeyHex,
      [version('refs-missing', 'jwt')]: jwtSecret,
      [version('refs-missing', 'totp')]: totpKeyHex,
      [version('refs-denied', 'jwt')]: jwtSecret,
      [version('refs-denied', 'totp')]: totpKeyHex,
      [version('refs-crc', 'jwt')]: jwtSecret,
      [version('refs-crc', 'ops')]: opsApiToken,
      [version('refs-crc', 'totp')]: totpKeyHex,
      [version('refs-short', 'jwt')]: `${SENTINEL}-short`,
      [version('refs-short', 'ops')]: opsApiToken,
      [version('refs-short', 'totp')]: totpKeyHex,
      [version('refs-sweep', 'jwt')]: jwtSecret,
      [version('refs-sweep', 'ops')]: opsApiToken,
      [version('refs-sweep', 'totp')]: totpKeyHex,
      [version('refs-sweep', 'short')]: `${SENTINEL}-short`,
      [version('accessor', 'text')]: 'héllo wörld ✓',
      [version('accessor', 'plain')]: 'no checksum here',
      [version('accessor', 'binary')]: Uint8Array.from([0xff, 0xfe, 0x00]),
    },
    denied: [version('refs-denied', 'ops')],
    corrupt: [version('refs-crc', 'ops')],
    withoutChecksum: [version('accessor', 'plain')],
  });
});

test.after.always(async () => {
  await fake?.close();
});

const requestsFor = (project: string) => fake.requests.filter((name) => name.startsWith(`projects/${project}/`)).sort();

// ---------------------------------------------------------------------------------------------
// Defaults (contract §9)

test('defaults match contract §9', async (t) => {
  const config: Config = await loadConfig(validEnv({ DB_SSLMODE: undefined }));
  t.is(config.http.port, 8080);
  t.is(config.database.sslMode, 'require');
  t.deepEqual(config.http.corsAllowedOrigins, []);
  t.is(config.http.maxRequestBodyBytes, 65_536);
  t.is(config.http.trustProxy, false);
  t.is(config.http.trustedProxyHops, 2);
  t.is(config.tokens.accessTtlSeconds, 900);
  t.is(config.tokens.refreshTtlSeconds, 2_592_000);
  t.is(config.tokens.adminRefreshTtlSeconds, 28_800);
  t.is(config.tokens.refreshReuseGraceSeconds, 10);
  t.is(config.tokens.wsTicketTtlSeconds, 30);
  t.is(config.authThrottle.rateLimitMax, 20);
  t.is(config.authThrottle.rateLimitWindowSeconds, 60);
  t.is(config.authThrottle.lockoutThreshold, 5);
  t.is(config.authThrottle.lockoutBaseSeconds, 30);
  t.is(config.authThrottle.lockoutMaxSeconds, 900);
  t.is(config.chat.rateLimitMax, 5);
  t.is(config.chat.rateLimitWindowSeconds, 5);
  t.is(config.chat.muteBaseSeconds, 30);
  t.is(config.chat.muteMaxSeconds, 3_600);
  t.is(config.chat.maxMessageLength, 500);
  t.is(config.redisUrl, undefined);
  t.is(config.securityAuditHotDays, 180);
  t.is(config.logLevel, 'info');
  t.is(config.shutdownTimeoutMs, 8_000);
  t.is(config.secrets.jwtSecretPrevious, undefined);
  t.false(config.deployed);
  t.deepEqual(config.tunables, {
    MAX_REQUEST_BODY_BYTES: 65_536,
    CORS_ALLOWED_ORIGINS: [],
    ACCESS_TOKEN_TTL_SECONDS: 900,
    REFRESH_TOKEN_TTL_SECONDS: 2_592_000,
    ADMIN_REFRESH_TOKEN_TTL_SECONDS: 28_800,
    REFRESH_REUSE_GRACE_SECONDS: 10,
    WS_TICKET_TTL_SECONDS: 30,
    AUTH_RATE_LIMIT_MAX: 20,
    AUTH_RATE_LIMIT_WINDOW_SECONDS: 60,
    AUTH_LOCKOUT_THRESHOLD: 5,
    AUTH_LOCKOUT_BASE_SECONDS: 30,
    AUTH_LOCKOUT_MAX_SECONDS: 900,
    CHAT_RATE_LIMIT_MAX: 5,
    CHAT_RATE_LIMIT_WINDOW_SECONDS: 5,
    CHAT_MUTE_BASE_SECONDS: 30,
    CHAT_MUTE_MAX_SECONDS: 3_600,
    CHAT_MAX_MESSAGE_LENGTH: 500,
  });
  t.true(Object.isFrozen(config) && Object.isFrozen(config.http) && Object.isFrozen(config.http.corsAllowedOrigins));
});

test('defaults that are not carried into Config: ALLOW_PLAIN_ENV_SECRETS, DB_SSLMODE, PORT', (t) => {
  const env = parseEnvironment({});
  t.is(env.ALLOW_PLAIN_ENV_SECRETS, false);
  t.is(env.FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION, false);
  t.is(env.DB_SSLMODE, 'require');
  t.is(env.PORT, 8080);
  t.is(env.DATABASE_URL, undefined);
  t.is(env.NODE_ENV, 'development');
});

test('explicit values are parsed and typed', async (t) => {
  const config = await loadConfig(
    validEnv({
      PORT: '9090',
      CORS_ALLOWED_ORIGINS: ' https://play.example.com , http://localhost:5173 ',
      TRUST_PROXY: 'true',
      REDIS_URL: 'rediss://cache.internal:6380',
      WS_TICKET_TTL_SECONDS: '60',
      REFRESH_REUSE_GRACE_SECONDS: '0',
      LOG_LEVEL: 'debug',
    }),
  );
  t.is(config.http.port, 9090);
  t.deepEqual(config.http.corsAllowedOrigins, ['https://play.example.com', 'http://localhost:5173']);
  t.true(config.http.trustProxy);
  t.is(config.redisUrl, 'rediss://cache.internal:6380');
  t.is(config.tokens.wsTicketTtlSeconds, 60);
  t.is(config.tokens.refreshReuseGraceSeconds, 0);
  t.is(config.logLevel, 'debug');
});

// ---------------------------------------------------------------------------------------------
// One bad variable → one line naming it

test('PORT that is not a number', async (t) => {
  await rejects(t, validEnv({ PORT: 'eighty' }), 'PORT', { reason: /whole number/, alsoAbsent: ['eighty'] });
});

test('PORT out of range', async (t) => {
  await rejects(t, validEnv({ PORT: '70000' }), 'PORT', { reason: /at most 65535/ });
  await rejects(t, validEnv({ PORT: '0' }), 'PORT', { reason: /at least 1/ });
  await rejects(t, validEnv({ PORT: '-1' }), 'PORT');
  await rejects(t, validEnv({ PORT: '80.5' }), 'PORT');
});

test('DB_SSLMODE that is not a known mode', async (t) => {
  await rejects(t, validEnv({ DB_SSLMODE: 'prefer' }), 'DB_SSLMODE', {
    reason: /disable, require, verify-ca, verify-full/,
    alsoAbsent: ['prefer'],
  });
});

test('DB_SSLMODE=verify-full (or verify-ca) without DB_SSL_ROOT_CERT', async (t) => {
  await rejects(t, validEnv({ DB_SSLMODE: 'verify-full' }), 'DB_SSL_ROOT_CERT', { reason: /verify-full/ });
  await rejects(t, validEnv({ DB_SSLMODE: 'verify-ca' }), 'DB_SSL_ROOT_CERT', { reason: /verify-ca/ });
});

test('DB_SSL_ROOT_CERT naming a file that cannot be read', async (t) => {
  await rejects(t, validEnv({ DB_SSLMODE: 'verify-full', DB_SSL_ROOT_CERT: '/nonexistent/ca.pem' }), 'DB_SSL_ROOT_CERT');
});

test('WS_TICKET_TTL_SECONDS above its maximum of 60', async (t) => {
  await rejects(t, validEnv({ WS_TICKET_TTL_SECONDS: '61' }), 'WS_TICKET_TTL_SECONDS', { reason: /at most 60/ });
});

test('AUTH_LOCKOUT_MAX_SECONDS below AUTH_LOCKOUT_BASE_SECONDS', async (t) => {
  await rejects(t, validEnv({ AUTH_LOCKOUT_BASE_SECONDS: '600', AUTH_LOCKOUT_MAX_SECONDS: '300' }), 'AUTH_LOCKOUT_MAX_SECONDS', {
    reason: /AUTH_LOCKOUT_BASE_SECONDS/,
  });
});

test('CORS_ALLOWED_ORIGINS with a wildcard or a path', async (t) => {
  await rejects(t, validEnv({ CORS_ALLOWED_ORIGINS: '*' }), 'CORS_ALLOWED_ORIGINS');
  await rejects(t, validEnv({ CORS_ALLOWED_ORIGINS: 'https://play.example.com,*' }), 'CORS_ALLOWED_ORIGINS');
  await rejects(t, validEnv({ CORS_ALLOWED_ORIGINS: 'https://*.example.com' }), 'CORS_ALLOWED_ORIGINS');
  await rejects(t, validEnv({ CORS_ALLOWED_ORIGINS: 'https://play.example.com/app' }), 'CORS_ALLOWED_ORIGINS');
  await rejects(t, validEnv({ CORS_ALLOWED_ORIGINS: 'https://play.example.com/' }), 'CORS_ALLOWED_ORIGINS');
});

test('REDIS_URL with a scheme other than redis:// or rediss://', async (t) => {
  await rejects(t, validEnv({ REDIS_URL: 'http://cache.internal:6379' }), 'REDIS_URL', { reason: /redis:\/\//, alsoAbsent: ['cache.internal'] });
});

test('DATABASE_URL whose sslmode conflicts with DB_SSLMODE', async (t) => {
  await rejects(t, validEnv({ DB_SSLMODE: 'require', DATABASE_URL: 'postgres://app:pw@db.internal/karaxas?sslmode=disable' }), 'DATABASE_URL', {
    reason: /sslmode=disable.*DB_SSLMODE=require/,
    alsoAbsent: ['pw@', 'db.internal'],
  });
  // A hostile parameter cannot break the one-line rule.
  await rejects(t, validEnv({ DATABASE_URL: 'postgres://app@db/karaxas?sslmode=x%0Ay' }), 'DATABASE_URL');
  // Agreeing values are fine, and the parameter is dropped (DB_SSLMODE alone governs TLS).
  const config = await loadConfig(validEnv({ DATABASE_URL: 'postgres://app@db/karaxas?sslmode=disable' }));
  t.false(config.database.connectionUri.includes('sslmode'));
});

test('DATABASE_URL that is not a postgres URL, and DB_HOST together with DATABASE_URL', async (t) => {
  await rejects(t, validEnv({ DATABASE_URL: 'mysql://app@db/karaxas' }), 'DATABASE_URL');
  await rejects(t, validEnv({ DB_HOST: 'db.internal' }), 'DB_HOST', { reason: /conflicts with DATABASE_URL/ });
});

test('DATABASE_URL is required in production', async (t) => {
  await rejects(t, productionEnv({ DATABASE_URL: undefined, FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION: 'true' }), 'DATABASE_URL');
});

test('missing JWT secret', async (t) => {
  await rejects(t, validEnv({ JWT_SECRET: undefined }), 'JWT_SECRET_SECRET_REF', { reason: /is required/ });
});

test('short JWT secret', async (t) => {
  const short = `${SENTINEL}-short`;
  await rejects(t, validEnv({ JWT_SECRET: short }), 'JWT_SECRET', { reason: /at least 32/, alsoAbsent: [short] });
  await rejects(t, validEnv({ JWT_SECRET_PREVIOUS: short }), 'JWT_SECRET_PREVIOUS', { alsoAbsent: [short] });
});

test('missing or short ops token', async (t) => {
  await rejects(t, validEnv({ OPS_API_TOKEN: undefined }), 'OPS_API_TOKEN_SECRET_REF');
  await rejects(t, validEnv({ OPS_API_TOKEN: `${SENTINEL}-x` }), 'OPS_API_TOKEN');
});

test('TOTP_ENCRYPTION_KEY that is not 32 bytes', async (t) => {
  const tooShortHex = 'ab'.repeat(16);
  const tooLongBase64 = Buffer.alloc(33, 7).toString('base64');
  await rejects(t, validEnv({ TOTP_ENCRYPTION_KEY: tooShortHex }), 'TOTP_ENCRYPTION_KEY', { reason: /32 bytes/, alsoAbsent: [tooShortHex] });
  await rejects(t, validEnv({ TOTP_ENCRYPTION_KEY: tooLongBase64 }), 'TOTP_ENCRYPTION_KEY', { alsoAbsent: [tooLongBase64] });
  await rejects(t, validEnv({ TOTP_ENCRYPTION_KEY: `${SENTINEL}-not-a-key` }), 'TOTP_ENCRYPTION_KEY');
  await rejects(t, validEnv({ TOTP_ENCRYPTION_KEY: undefined }), 'TOTP_ENCRYPTION_KEY_SECRET_REF');
});

test('TOTP_ENCRYPTION_KEY accepts 64 hex characters or base64 of 32 bytes', async (t) => {
  const hex = await loadConfig(validEnv());
  t.deepEqual(hex.secrets.totpEncryptionKey, Buffer.from(totpKeyHex, 'hex'));
  const key = Buffer.alloc(32, 9);
  const base64 = await loadConfig(validEnv({ TOTP_ENCRYPTION_KEY: key.toString('base64') }));
  t.deepEqual(base64.secrets.totpEncryptionKey, key);
});

test('booleans are exactly "true" or "false"', async (t) => {
  await rejects(t, validEnv({ TRUST_PROXY: 'yes' }), 'TRUST_PROXY');
  await rejects(t, validEnv({ ALLOW_PLAIN_ENV_SECRETS: '1' }), 'ALLOW_PLAIN_ENV_SECRETS');
});

test('parseEnvironment names the variable without echoing its value', (t) => {
  const error = t.throws(() => parseEnvironment({ LOG_LEVEL: `${SENTINEL}\nverbose` }), { instanceOf: ConfigError });
  t.is(error?.variable, 'LOG_LEVEL');
  t.false(error?.message.includes(SENTINEL));
  t.notRegex(error?.message ?? '', /\n/);
});

// ---------------------------------------------------------------------------------------------
// Plain-env secrets

test('plain secrets are refused without ALLOW_PLAIN_ENV_SECRETS=true, naming the variable', async (t) => {
  await rejects(t, validEnv({ ALLOW_PLAIN_ENV_SECRETS: undefined }), 'JWT_SECRET', { reason: /ALLOW_PLAIN_ENV_SECRETS=true/ });
  await rejects(t, validEnv({ ALLOW_PLAIN_ENV_SECRETS: 'false' }), 'JWT_SECRET');
  await rejects(t, { NODE_ENV: 'test', DATABASE_URL: 'postgres://app@db/k', OPS_API_TOKEN: opsApiToken }, 'OPS_API_TOKEN');
  await rejects(t, { NODE_ENV: 'test', DATABASE_URL: 'postgres://app@db/k', DB_PASSWORD: dbPassword }, 'DB_PASSWORD');
  await rejects(t, { NODE_ENV: 'test', DATABASE_URL: 'postgres://app@db/k', TOTP_ENCRYPTION_KEY: totpKeyHex }, 'TOTP_ENCRYPTION_KEY');
  await rejects(t, { NODE_ENV: 'test', DATABASE_URL: 'postgres://app@db/k', JWT_SECRET_PREVIOUS: jwtSecretPrevious }, 'JWT_SECRET_PREVIOUS');
});

test('plain secrets are read with ALLOW_PLAIN_ENV_SECRETS=true', async (t) => {
  const config = await loadConfig(validEnv({ JWT_SECRET_PREVIOUS: jwtSecretPrevious, DB_PASSWORD: dbPassword }));
  t.is(config.secrets.jwtSecret, jwtSecret);
  t.is(config.secrets.jwtSecretPrevious, jwtSecretPrevious);
  t.is(config.secrets.opsApiToken, opsApiToken);
  t.deepEqual(config.secrets.totpEncryptionKey, Buffer.from(totpKeyHex, 'hex'));
  t.is(decodeURIComponent(new URL(config.database.connectionUri).password), dbPassword);
});

test('plain secrets are refused in production (NODE_ENV=production) unless forced', async (t) => {
  await rejects(t, productionEnv(), 'ALLOW_PLAIN_ENV_SECRETS', { reason: /refused in production/ });
  await rejects(t, productionEnv({ FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION: 'false' }), 'ALLOW_PLAIN_ENV_SECRETS');
  const forced = await loadConfig(productionEnv({ FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION: 'true' }));
  t.true(forced.deployed);
  t.is(forced.secrets.jwtSecret, jwtSecret);
});

test('plain secrets are refused on Cloud Run (K_SERVICE set) unless forced', async (t) => {
  const cloudRun = validEnv({ NODE_ENV: undefined, K_SERVICE: 'karaxas-api', DB_SSLMODE: 'require' });
  await rejects(t, cloudRun, 'ALLOW_PLAIN_ENV_SECRETS', { reason: /refused in production/ });
  const forced = await loadConfig({ ...cloudRun, FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION: 'true' });
  t.true(forced.deployed);
});

test('a secret given both plainly and by reference is refused', async (t) => {
  await rejects(t, validEnv({ JWT_SECRET_SECRET_REF: version('refs-ok', 'jwt', 3) }), 'JWT_SECRET', { reason: /JWT_SECRET_SECRET_REF/ });
});

test('DB_HOST needs a database password', async (t) => {
  await rejects(t, validEnv({ DATABASE_URL: undefined, DB_HOST: 'db.internal', DB_NAME: 'karaxas', DB_USER: 'app' }), 'DB_PASSWORD_SECRET_REF');
  await rejects(t, validEnv({ DATABASE_URL: undefined, DB_HOST: 'db.internal', DB_USER: 'app' }), 'DB_NAME');
});

// ---------------------------------------------------------------------------------------------
// *_SECRET_REF through the real Secret Manager client, against the fake

const refEnv = (project: string, overrides: Environment = {}): Environment => ({
  NODE_ENV: 'test',
  DATABASE_URL: 'postgres://app@127.0.0.1:5432/karaxas',
  DB_SSLMODE: 'disable',
  SECRET_MANAGER_EMULATOR_HOST: fake.host,
  JWT_SECRET_SECRET_REF: version(project, 'jwt'),
  OPS_API_TOKEN_SECRET_REF: version(project, 'ops'),
  TOTP_ENCRYPTION_KEY_SECRET_REF: version(project, 'totp'),
  ...overrides,
});

test('*_SECRET_REF values are resolved through the Secret Manager client', async (t) => {
  const config = await loadConfig(
    refEnv('refs-ok', {
      DATABASE_URL: undefined,
      DB_HOST: 'db.internal',
      DB_NAME: 'karaxas',
      DB_USER: 'app',
      JWT_SECRET_SECRET_REF: version('refs-ok', 'jwt', 3),
      JWT_SECRET_PREVIOUS_SECRET_REF: version('refs-ok', 'jwt', 2),
      DB_PASSWORD_SECRET_REF: version('refs-ok', 'db-password', 7),
    }),
  );
  t.is(config.secrets.jwtSecret, jwtSecret);
  t.is(config.secrets.jwtSecretPrevious, jwtSecretPrevious);
  t.is(config.secrets.opsApiToken, opsApiToken);
  t.deepEqual(config.secrets.totpEncryptionKey, Buffer.from(totpKeyHex, 'hex'));
  const uri = new URL(config.database.connectionUri);
  t.is(decodeURIComponent(uri.password), dbPassword);
  t.is(uri.hostname, 'db.internal');
  t.is(config.gcpProject, 'refs-ok');
  t.deepEqual(
    requestsFor('refs-ok'),
    [
      version('refs-ok', 'db-password', 7),
      version('refs-ok', 'jwt', 2),
      version('refs-ok', 'jwt', 3),
      version('refs-ok', 'ops', 1),
      version('refs-ok', 'totp', 1),
    ].sort(),
  );
});

test('a reference to "latest" is accepted locally but refused in production', async (t) => {
  const latest = {
    JWT_SECRET_SECRET_REF: version('refs-latest', 'jwt', 'latest'),
    OPS_API_TOKEN_SECRET_REF: version('refs-latest', 'ops', 'latest'),
    TOTP_ENCRYPTION_KEY_SECRET_REF: version('refs-latest', 'totp', 'latest'),
  };
  const local = await loadConfig(refEnv('refs-latest', latest));
  t.is(local.secrets.jwtSecret, jwtSecret);
  const before = requestsFor('refs-latest').length;

  // No emulator in production (it is refused there too); the refusal comes before any access.
  const production = { ...refEnv('refs-latest', latest), NODE_ENV: 'production', DB_SSLMODE: 'require', SECRET_MANAGER_EMULATOR_HOST: undefined };
  await rejects(t, production, 'JWT_SECRET_SECRET_REF', { reason: /pin a version/ });
  await rejects(t, { ...production, NODE_ENV: undefined, K_SERVICE: 'karaxas-api' }, 'JWT_SECRET_SECRET_REF');
  t.is(requestsFor('refs-latest').length, before, 'nothing was read for a refused configuration');
});

test('a malformed reference names its variable', async (t) => {
  await rejects(t, refEnv('refs-ok', { OPS_API_TOKEN_SECRET_REF: 'projects/refs-ok/secrets/ops' }), 'OPS_API_TOKEN_SECRET_REF', {
    reason: /projects\/P\/secrets\/S\/versions\/V/,
  });
  await rejects(t, refEnv('refs-ok', { OPS_API_TOKEN_SECRET_REF: 'ops-token' }), 'OPS_API_TOKEN_SECRET_REF');
});

test('a NOT_FOUND secret gives one line naming the *_SECRET_REF variable and no value', async (t) => {
  const error = await rejects(t, refEnv('refs-missing'), 'OPS_API_TOKEN_SECRET_REF', { reason: /NOT_FOUND/ });
  t.regex(error.reason, /gRPC code 5/);
  t.deepEqual(requestsFor('refs-missing'), [version('refs-missing', 'jwt'), version('refs-missing', 'ops'), version('refs-missing', 'totp')]);
});

test('a PERMISSION_DENIED secret names the variable', async (t) => {
  await rejects(t, refEnv('refs-denied'), 'OPS_API_TOKEN_SECRET_REF', { reason: /PERMISSION_DENIED/ });
});

test('a payload that fails its CRC32C check is refused without showing it', async (t) => {
  await rejects(t, refEnv('refs-crc'), 'OPS_API_TOKEN_SECRET_REF', { reason: /could not be read/ });
});

test('a short secret read by reference names the *_SECRET_REF variable', async (t) => {
  await rejects(t, refEnv('refs-short'), 'JWT_SECRET_SECRET_REF', { reason: /at least 32/ });
});

test('an unreachable Secret Manager endpoint fails with the variable named', async (t) => {
  // Port 9 (discard) on loopback: nothing listens, so the client's retries run out quickly.
  const accessor = await createSecretManagerAccessor({ emulatorHost: '127.0.0.1:9', timeoutMs: 1_500 });
  const started = Date.now();
  const error = await rejects(t, refEnv('refs-ok'), 'JWT_SECRET_SECRET_REF', { accessSecret: accessor });
  t.regex(error.reason, /gRPC code (4|14)/);
  t.true(Date.now() - started < 3_000, 'the access timeout bounds boot time');
  await accessor.close();
});

test('SECRET_MANAGER_EMULATOR_HOST must be host:port and is refused in production', async (t) => {
  await rejects(t, refEnv('refs-ok', { SECRET_MANAGER_EMULATOR_HOST: 'http://127.0.0.1:8085' }), 'SECRET_MANAGER_EMULATOR_HOST');
  await rejects(
    t,
    refEnv('refs-ok', { NODE_ENV: 'production', DB_SSLMODE: 'require', JWT_SECRET_SECRET_REF: version('refs-ok', 'jwt', 3) }),
    'SECRET_MANAGER_EMULATOR_HOST',
    { reason: /refused in production/ },
  );
});

test('an injected accessor is used instead of the client', async (t) => {
  const asked: string[] = [];
  const accessSecret: SecretAccessor = async (name) => {
    asked.push(name);
    return { jwt: jwtSecret, ops: opsApiToken, totp: totpKeyHex }[name.split('/')[3]!] ?? '';
  };
  const env = refEnv('injected', { SECRET_MANAGER_EMULATOR_HOST: undefined });
  const config = await loadConfig(env, { accessSecret });
  t.is(config.secrets.opsApiToken, opsApiToken);
  t.deepEqual(asked.sort(), [version('injected', 'jwt'), version('injected', 'ops'), version('injected', 'totp')]);
  t.deepEqual(requestsFor('injected'), []);

  // An accessor failing without a gRPC code still yields a clean line.
  const failing: SecretAccessor = async () => {
    throw new Error(`boom ${SENTINEL}`);
  };
  const error = await rejects(t, env, 'JWT_SECRET_SECRET_REF', { accessSecret: failing });
  t.notRegex(error.message, /boom/);
});

// ---------------------------------------------------------------------------------------------
// The Secret Manager accessor itself

test('crc32c is the Castagnoli checksum', (t) => {
  t.is(crc32c(Buffer.from('123456789')), 0xe3069283);
  t.is(crc32c(new Uint8Array(0)), 0);
  t.is(crc32c(new Uint8Array(32)), 0x8a9136aa);
});

test('the accessor returns UTF-8 text, tolerates a missing checksum, and refuses after close', async (t) => {
  const accessor = await createSecretManagerAccessor({ emulatorHost: fake.host });
  t.is(await accessor(version('accessor', 'text')), 'héllo wörld ✓');
  t.is(await accessor(version('accessor', 'plain')), 'no checksum here');

  const binary = await t.throwsAsync(accessor(version('accessor', 'binary')), { instanceOf: SecretAccessError });
  t.regex(binary?.message ?? '', /not valid UTF-8/);

  const missing = await t.throwsAsync(accessor(version('accessor', 'absent')), { instanceOf: SecretAccessError });
  t.is(missing?.code, 5);
  t.false(missing?.message.includes('not found.'), 'the server detail text is not carried along');

  await accessor.close();
  await accessor.close();
  const closed = await t.throwsAsync(accessor(version('accessor', 'text')), { instanceOf: SecretAccessError });
  t.regex(closed?.message ?? '', /closed/);
});

test('no error message contains a secret value (sentinel sweep)', async (t) => {
  // Each of these fails after the secrets are known to the loader.
  const failing: Environment[] = [
    validEnv({ PORT: 'x' }),
    validEnv({ DATABASE_URL: 'postgres://app@db/k?sslmode=verify-full' }),
    validEnv({ JWT_SECRET: `${SENTINEL}` }),
    validEnv({ JWT_SECRET_PREVIOUS: `${SENTINEL}-prev` }),
    validEnv({ OPS_API_TOKEN: `${SENTINEL}` }),
    validEnv({ TOTP_ENCRYPTION_KEY: `${SENTINEL}${SENTINEL}` }),
    validEnv({ TOTP_ENCRYPTION_KEY_PREVIOUS: `${SENTINEL}-prev-key` }),
    validEnv({ ALLOW_PLAIN_ENV_SECRETS: undefined }),
    productionEnv(),
    // Own project names, so that the request log of the tests above stays exact.
    refEnv('refs-sweep', { OPS_API_TOKEN_SECRET_REF: version('refs-sweep', 'absent') }),
    refEnv('refs-sweep', { JWT_SECRET_SECRET_REF: version('refs-sweep', 'short') }),
  ];
  for (const env of failing) {
    const error = await t.throwsAsync(loadConfig(env), { instanceOf: ConfigError });
    t.false(error?.message.includes(SENTINEL), error?.message);
    t.false(error?.stack?.includes(SENTINEL), 'nor the stack');
    for (const value of secretValues) t.false(error?.message.includes(value));
  }
});
