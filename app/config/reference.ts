/**
 * The configuration reference (README "Configuration"), generated from the schema so that the
 * two cannot drift: `npm run config:reference` prints it, and a test compares it with the README.
 */
import type { z } from 'zod';
import { envSchema } from './schema.js';

/** One line per variable. Every schema key must have one (a test enforces it). */
export const variableDescriptions: Record<string, string> = {
  NODE_ENV: '`development`, `test` or `production`; production refuses local conveniences',
  K_SERVICE: 'set by Cloud Run; its presence counts as production',
  PORT: 'HTTP port',
  HOST: 'listen address',
  DATABASE_URL: 'full `postgres://` connection string (no `sslmode`: use DB_SSLMODE)',
  DB_HOST: 'database host, instead of DATABASE_URL (with DB_PORT, DB_NAME, DB_USER and a DB password)',
  DB_PORT: 'database port',
  DB_NAME: 'database name',
  DB_USER: 'database user',
  DB_SSLMODE: '`disable`, `require`, `verify-ca` or `verify-full` (`disable` is refused in production)',
  DB_SSL_ROOT_CERT: 'path of the CA bundle for verify-ca / verify-full',
  DB_POOL_SIZE: 'maximum connections in the pool',
  DB_STATEMENT_TIMEOUT_MS: 'statement timeout (server-side); a pool query with no answer within it plus DB_CONNECT_TIMEOUT_MS fails with 503 and its connection is closed (a frozen or unreachable database)',
  DB_CONNECT_TIMEOUT_MS: 'connection timeout; also the margin of the client-side query bound (see DB_STATEMENT_TIMEOUT_MS)',
  JWT_SECRET_SECRET_REF: 'Secret Manager version of the JWT signing secret (≥ 32 characters)',
  JWT_SECRET_PREVIOUS_SECRET_REF: 'previous JWT secret, verify-only during a rotation',
  OPS_API_TOKEN_SECRET_REF: 'Secret Manager version of the ops API token (≥ 32 characters)',
  DB_PASSWORD_SECRET_REF: 'Secret Manager version of the database password',
  TOTP_ENCRYPTION_KEY_SECRET_REF: 'Secret Manager version of the TOTP encryption key (32 bytes, hex or base64)',
  TOTP_ENCRYPTION_KEY_PREVIOUS_SECRET_REF: 'previous TOTP key, decrypt-only during a rotation',
  ALLOW_PLAIN_ENV_SECRETS: 'read JWT_SECRET, OPS_API_TOKEN, DB_PASSWORD, TOTP_ENCRYPTION_KEY(_PREVIOUS), JWT_SECRET_PREVIOUS from the environment (local only)',
  FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION: 'the deliberate override needed before plain secrets are read in production',
  JWT_SECRET: 'plain-env JWT secret (only with ALLOW_PLAIN_ENV_SECRETS=true)',
  JWT_SECRET_PREVIOUS: 'plain-env previous JWT secret (only with ALLOW_PLAIN_ENV_SECRETS=true)',
  OPS_API_TOKEN: 'plain-env ops token (only with ALLOW_PLAIN_ENV_SECRETS=true)',
  DB_PASSWORD: 'plain-env database password (only with ALLOW_PLAIN_ENV_SECRETS=true)',
  TOTP_ENCRYPTION_KEY: 'plain-env TOTP key (only with ALLOW_PLAIN_ENV_SECRETS=true)',
  TOTP_ENCRYPTION_KEY_PREVIOUS: 'plain-env previous TOTP key (only with ALLOW_PLAIN_ENV_SECRETS=true)',
  SECRET_MANAGER_EMULATOR_HOST: '`host:port` of a plaintext Secret Manager emulator (tests; refused in production)',
  TRUST_PROXY: 'trust X-Forwarded-* (true behind the load balancer)',
  TRUSTED_PROXY_HOPS: 'with TRUST_PROXY: the client IP is the X-Forwarded-For entry this many places from the right',
  JWT_ISSUER: '`iss` of access tokens',
  JWT_AUDIENCE: '`aud` of access tokens',
  ARGON2_MEMORY_KIB: 'argon2id memory cost (OWASP minimum 19456)',
  ARGON2_TIME_COST: 'argon2id iterations',
  ARGON2_PARALLELISM: 'argon2id lanes',
  REDIS_URL: 'when set, HTTP rate-limit counters live in Redis (shared across instances)',
  SECURITY_AUDIT_HOT_DAYS: 'days security events stay in PostgreSQL before the archive routine exports them',
  LOG_LEVEL: 'fatal, error, warn, info, debug, trace or silent',
  SHUTDOWN_TIMEOUT_SECONDS: 'graceful-shutdown deadline after SIGTERM (Cloud Run allows 10 s)',
  GOOGLE_CLOUD_PROJECT: 'project id for Cloud Logging trace correlation (derived from the secret refs when unset)',
  MAX_REQUEST_BODY_BYTES: 'larger bodies get 413 without being buffered',
  CORS_ALLOWED_ORIGINS: 'comma-separated exact origins that get CORS headers (never `*`)',
  ACCESS_TOKEN_TTL_SECONDS: 'access token lifetime',
  REFRESH_TOKEN_TTL_SECONDS: 'player session lifetime, extended on each refresh',
  ADMIN_REFRESH_TOKEN_TTL_SECONDS: 'admin session lifetime, absolute',
  REFRESH_REUSE_GRACE_SECONDS: 'window in which the immediate predecessor returns the same successor (0 disables)',
  WS_TICKET_TTL_SECONDS: 'websocket ticket lifetime (max 60)',
  AUTH_RATE_LIMIT_MAX: 'requests per client IP and window on /auth/login, /auth/register, /auth/refresh, /auth/mfa/verify',
  AUTH_RATE_LIMIT_WINDOW_SECONDS: 'the window of AUTH_RATE_LIMIT_MAX',
  AUTH_LOCKOUT_THRESHOLD: 'consecutive failures per account before a lock',
  AUTH_LOCKOUT_BASE_SECONDS: 'first lock; doubles on each repeated lock',
  AUTH_LOCKOUT_MAX_SECONDS: 'longest lock',
  CHAT_RATE_LIMIT_MAX: 'chat messages per user and window',
  CHAT_RATE_LIMIT_WINDOW_SECONDS: 'the window of CHAT_RATE_LIMIT_MAX',
  CHAT_MUTE_BASE_SECONDS: 'first mute after repeated violations; doubles on repeat',
  CHAT_MUTE_MAX_SECONDS: 'longest mute',
  CHAT_MAX_MESSAGE_LENGTH: 'longest chat message, in characters',
};

const schemaShape = () => (envSchema as unknown as z.ZodEffects<z.AnyZodObject>).innerType().shape as Record<string, z.ZodTypeAny>;

const defaultOf = (schema: z.ZodTypeAny): string => {
  const result = schema.safeParse(undefined);
  if (!result.success || result.data === undefined) return '—';
  const value: unknown = result.data;
  if (Array.isArray(value)) return value.length === 0 ? 'empty' : value.join(',');
  return String(value);
};

/** The Markdown table of every variable, its default and its meaning. */
export const configurationReference = (): string => {
  const rows = Object.entries(schemaShape()).map(
    ([name, schema]) => `| \`${name}\` | ${defaultOf(schema)} | ${variableDescriptions[name] ?? ''} |`,
  );
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
};

export const schemaVariables = () => Object.keys(schemaShape());
