/**
 * Configuration: the environment is parsed once at boot into a typed, frozen {@link Config}
 * that is passed down. This folder is the only place that reads `process.env`.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { envSchema, secretNames, type Env, type SecretName, type SslMode } from './schema.js';
import type { TunableValues } from './tunables.js';

export { envSchema, secretRefPattern } from './schema.js';
export type { SslMode } from './schema.js';

/** Reads a Secret Manager version by name and returns its payload as text. */
export type SecretAccessor = (versionName: string) => Promise<string>;

/**
 * A configuration problem. Its message is one line that names the variable and never
 * contains a secret value.
 */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly reason: string,
  ) {
    super(`Invalid configuration: ${variable} ${reason}`);
    this.name = 'ConfigError';
  }
}

export type Config = Readonly<{
  nodeEnv: Env['NODE_ENV'];
  /** True in production or on Cloud Run: local conveniences are refused. */
  deployed: boolean;
  http: Readonly<{
    port: number;
    host: string;
    trustProxy: boolean;
    trustedProxyHops: number;
    maxRequestBodyBytes: number;
    corsAllowedOrigins: readonly string[];
  }>;
  database: Readonly<{
    /** Connection URI including credentials. Never log it. */
    connectionUri: string;
    sslMode: SslMode;
    /** PEM text of the CA bundle for verify-ca / verify-full. */
    sslRootCert: string | undefined;
    poolSize: number;
    statementTimeoutMs: number;
    connectTimeoutMs: number;
  }>;
  secrets: Readonly<{
    jwtSecret: string;
    jwtSecretPrevious: string | undefined;
    opsApiToken: string;
    /** 32-byte AES-256 key. */
    totpEncryptionKey: Buffer;
    totpEncryptionKeyPrevious: Buffer | undefined;
  }>;
  tokens: Readonly<{
    issuer: string;
    audience: string;
    accessTtlSeconds: number;
    refreshTtlSeconds: number;
    adminRefreshTtlSeconds: number;
    refreshReuseGraceSeconds: number;
    wsTicketTtlSeconds: number;
  }>;
  passwordHashing: Readonly<{ memoryKib: number; timeCost: number; parallelism: number }>;
  authThrottle: Readonly<{
    rateLimitMax: number;
    rateLimitWindowSeconds: number;
    lockoutThreshold: number;
    lockoutBaseSeconds: number;
    lockoutMaxSeconds: number;
  }>;
  chat: Readonly<{
    rateLimitMax: number;
    rateLimitWindowSeconds: number;
    muteBaseSeconds: number;
    muteMaxSeconds: number;
    maxMessageLength: number;
  }>;
  redisUrl: string | undefined;
  securityAuditHotDays: number;
  logLevel: Env['LOG_LEVEL'];
  shutdownTimeoutMs: number;
  gcpProject: string | undefined;
  /** Every tunable of contract §9 by its variable name, for diagnostics and the ops API. */
  tunables: Readonly<TunableValues>;
}>;

export type LoadConfigOptions = {
  /**
   * Resolves `*_SECRET_REF` values. Defaults to the official Secret Manager client,
   * created only when a reference is present.
   */
  accessSecret?: SecretAccessor;
  /** The database URI to use when none is configured (the local profile's embedded server). */
  fallbackDatabaseUrl?: string;
};

/** A copy of the process environment, for the entry points that hand it to {@link loadConfig}. */
export const processEnvironment = (): Record<string, string | undefined> => ({ ...process.env });

const describeIssue = (issue: z.ZodIssue): string => {
  // Messages are written so that they never echo the offending value (it may be a secret).
  if (issue.code === z.ZodIssueCode.invalid_enum_value) return `must be one of: ${issue.options.join(', ')}`;
  if (issue.code === z.ZodIssueCode.invalid_type && issue.received === 'undefined') return 'is required';
  return issue.message;
};

/**
 * Parses the environment. Pure and synchronous: secrets are not resolved.
 * @throws {ConfigError} naming the first invalid variable.
 */
export const parseEnvironment = (env: Record<string, string | undefined>): Env => {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ConfigError(String(issue.path[0] ?? 'environment'), describeIssue(issue));
  }
  return result.data;
};

/** The gRPC codes an operator is most likely to meet at boot, spelled out. */
const grpcStatusHint: Partial<Record<number, string>> = {
  4: ': DEADLINE_EXCEEDED',
  5: ': NOT_FOUND, check the version name',
  7: ': PERMISSION_DENIED, grant roles/secretmanager.secretAccessor on the secret',
  9: ': FAILED_PRECONDITION, the version may be disabled or destroyed',
  14: ': UNAVAILABLE',
  16: ': UNAUTHENTICATED',
};

const requiredSecrets: ReadonlySet<SecretName> = new Set(['JWT_SECRET', 'OPS_API_TOKEN', 'TOTP_ENCRYPTION_KEY']);

type ResolvedSecrets = Partial<Record<SecretName, string>>;

const resolveSecrets = async (env: Env, options: LoadConfigOptions): Promise<ResolvedSecrets> => {
  const deployed = env.NODE_ENV === 'production' || env.K_SERVICE !== undefined;
  const plainInUse = secretNames.filter((name) => env[name] !== undefined);
  if (plainInUse.length > 0) {
    const first = plainInUse[0]!;
    if (!env.ALLOW_PLAIN_ENV_SECRETS) {
      throw new ConfigError(first, `is a plain-env secret, refused unless ALLOW_PLAIN_ENV_SECRETS=true; use ${first}_SECRET_REF`);
    }
    if (deployed && !env.FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION) {
      throw new ConfigError(
        'ALLOW_PLAIN_ENV_SECRETS',
        'is refused in production; use *_SECRET_REF (or set FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION=true deliberately)',
      );
    }
  }

  // Check every reference before reading any, so that a refusal never leaves accesses in flight.
  const refs: Array<[SecretName, string]> = [];
  const resolved: ResolvedSecrets = {};
  for (const name of secretNames) {
    const refVariable = `${name}_SECRET_REF` as const;
    const ref = env[refVariable];
    const plain = env[name];
    if (ref !== undefined && plain !== undefined) {
      throw new ConfigError(name, `conflicts with ${refVariable}; set one of them`);
    }
    if (ref !== undefined) {
      if (deployed && ref.endsWith('/versions/latest')) {
        throw new ConfigError(refVariable, 'must pin a version number in production, not "latest"');
      }
      refs.push([name, ref]);
    } else if (plain !== undefined) {
      resolved[name] = plain;
    }
  }

  if (refs.length > 0) {
    let accessor = options.accessSecret;
    let close: (() => Promise<void>) | undefined;
    if (accessor === undefined) {
      try {
        const { createSecretManagerAccessor } = await import('./secret-manager.js');
        const created = await createSecretManagerAccessor({ emulatorHost: env.SECRET_MANAGER_EMULATOR_HOST });
        accessor = created;
        close = created.close;
      } catch {
        throw new ConfigError(`${refs[0]![0]}_SECRET_REF`, 'could not be read: the Secret Manager client failed to start');
      }
    }
    const access = accessor;
    // Config is resolved once: wait for every access, then let the client's channel go.
    const outcomes = await Promise.allSettled(refs.map(([, ref]) => Promise.resolve().then(() => access(ref))));
    await close?.().catch(() => undefined);
    outcomes.forEach((outcome, index) => {
      const [name] = refs[index]!;
      if (outcome.status === 'rejected') {
        const error: unknown = outcome.reason;
        const code = error instanceof Error && 'code' in error && typeof error.code === 'number' ? error.code : undefined;
        const why = code === undefined ? '' : ` (gRPC code ${code}${grpcStatusHint[code] ?? ''})`;
        throw new ConfigError(`${name}_SECRET_REF`, `could not be read from Secret Manager${why}`);
      }
      // `echo value | gcloud secrets versions add` stores a trailing newline nobody means.
      resolved[name] = outcome.value.replace(/\r?\n$/, '');
    });
  }

  for (const name of requiredSecrets) {
    if (resolved[name] === undefined) {
      throw new ConfigError(`${name}_SECRET_REF`, `is required (or ${name} with ALLOW_PLAIN_ENV_SECRETS=true for local use)`);
    }
  }
  const needsDbPassword = env.DB_HOST !== undefined;
  if (needsDbPassword && resolved.DB_PASSWORD === undefined) {
    throw new ConfigError('DB_PASSWORD_SECRET_REF', 'is required when DB_HOST is set');
  }
  return resolved;
};

const decodeKey = (variable: string, value: string): Buffer => {
  const text = value.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
  if (key.length !== 32) throw new ConfigError(variable, 'must be 32 bytes, as 64 hex characters or base64');
  return key;
};

const requireLength = (variable: string, value: string, minimum: number): string => {
  if (value.length < minimum) throw new ConfigError(variable, `must be at least ${minimum} characters`);
  return value;
};

const buildConnectionUri = (env: Env, password: string | undefined, fallback: string | undefined): string => {
  if (env.DB_HOST !== undefined) {
    const url = new URL('postgres://placeholder');
    url.hostname = env.DB_HOST;
    url.port = String(env.DB_PORT);
    url.username = env.DB_USER ?? '';
    url.password = password ?? '';
    url.pathname = `/${env.DB_NAME ?? ''}`;
    return url.toString();
  }
  const raw = env.DATABASE_URL ?? fallback;
  if (raw === undefined) {
    throw new ConfigError('DATABASE_URL', 'is required (or run `npm start`, which starts an embedded PostgreSQL)');
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('DATABASE_URL', 'is not a valid URL');
  }
  // TLS is governed by DB_SSLMODE alone, so a URL parameter cannot silently weaken it.
  const urlSslMode = url.searchParams.get('sslmode');
  if (urlSslMode !== null && urlSslMode !== env.DB_SSLMODE) {
    // Echo the URL's value only when it is a plain word: the message must stay one line.
    const shown = /^[a-z-]{1,20}$/.test(urlSslMode) ? `sslmode=${urlSslMode}` : 'an sslmode parameter';
    throw new ConfigError('DATABASE_URL', `has ${shown}, which conflicts with DB_SSLMODE=${env.DB_SSLMODE}`);
  }
  url.searchParams.delete('sslmode');
  if (password !== undefined) url.password = password;
  return url.toString();
};

const readRootCert = (path: string | undefined): string | undefined => {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw new ConfigError('DB_SSL_ROOT_CERT', 'names a file that cannot be read');
  }
};

/**
 * Parses the environment and resolves secrets.
 * @throws {ConfigError} naming the first invalid or missing variable.
 */
export const loadConfig = async (
  environment: Record<string, string | undefined>,
  options: LoadConfigOptions = {},
): Promise<Config> => {
  const env = parseEnvironment(environment);
  const secrets = await resolveSecrets(env, options);
  const deployed = env.NODE_ENV === 'production' || env.K_SERVICE !== undefined;

  const config: Config = {
    nodeEnv: env.NODE_ENV,
    deployed,
    http: {
      port: env.PORT,
      host: env.HOST,
      trustProxy: env.TRUST_PROXY,
      trustedProxyHops: env.TRUSTED_PROXY_HOPS,
      maxRequestBodyBytes: env.MAX_REQUEST_BODY_BYTES,
      corsAllowedOrigins: env.CORS_ALLOWED_ORIGINS,
    },
    database: {
      connectionUri: buildConnectionUri(env, secrets.DB_PASSWORD, options.fallbackDatabaseUrl),
      sslMode: env.DB_SSLMODE,
      sslRootCert: readRootCert(env.DB_SSL_ROOT_CERT),
      poolSize: env.DB_POOL_SIZE,
      statementTimeoutMs: env.DB_STATEMENT_TIMEOUT_MS,
      connectTimeoutMs: env.DB_CONNECT_TIMEOUT_MS,
    },
    secrets: {
      jwtSecret: requireLength(secretVariable(env, 'JWT_SECRET'), secrets.JWT_SECRET!, 32),
      jwtSecretPrevious:
        secrets.JWT_SECRET_PREVIOUS === undefined
          ? undefined
          : requireLength(secretVariable(env, 'JWT_SECRET_PREVIOUS'), secrets.JWT_SECRET_PREVIOUS, 32),
      opsApiToken: requireLength(secretVariable(env, 'OPS_API_TOKEN'), secrets.OPS_API_TOKEN!, 32),
      totpEncryptionKey: decodeKey(secretVariable(env, 'TOTP_ENCRYPTION_KEY'), secrets.TOTP_ENCRYPTION_KEY!),
      totpEncryptionKeyPrevious:
        secrets.TOTP_ENCRYPTION_KEY_PREVIOUS === undefined
          ? undefined
          : decodeKey(secretVariable(env, 'TOTP_ENCRYPTION_KEY_PREVIOUS'), secrets.TOTP_ENCRYPTION_KEY_PREVIOUS),
    },
    tokens: {
      issuer: env.JWT_ISSUER,
      audience: env.JWT_AUDIENCE,
      accessTtlSeconds: env.ACCESS_TOKEN_TTL_SECONDS,
      refreshTtlSeconds: env.REFRESH_TOKEN_TTL_SECONDS,
      adminRefreshTtlSeconds: env.ADMIN_REFRESH_TOKEN_TTL_SECONDS,
      refreshReuseGraceSeconds: env.REFRESH_REUSE_GRACE_SECONDS,
      wsTicketTtlSeconds: env.WS_TICKET_TTL_SECONDS,
    },
    passwordHashing: { memoryKib: env.ARGON2_MEMORY_KIB, timeCost: env.ARGON2_TIME_COST, parallelism: env.ARGON2_PARALLELISM },
    authThrottle: {
      rateLimitMax: env.AUTH_RATE_LIMIT_MAX,
      rateLimitWindowSeconds: env.AUTH_RATE_LIMIT_WINDOW_SECONDS,
      lockoutThreshold: env.AUTH_LOCKOUT_THRESHOLD,
      lockoutBaseSeconds: env.AUTH_LOCKOUT_BASE_SECONDS,
      lockoutMaxSeconds: env.AUTH_LOCKOUT_MAX_SECONDS,
    },
    chat: {
      rateLimitMax: env.CHAT_RATE_LIMIT_MAX,
      rateLimitWindowSeconds: env.CHAT_RATE_LIMIT_WINDOW_SECONDS,
      muteBaseSeconds: env.CHAT_MUTE_BASE_SECONDS,
      muteMaxSeconds: env.CHAT_MUTE_MAX_SECONDS,
      maxMessageLength: env.CHAT_MAX_MESSAGE_LENGTH,
    },
    redisUrl: env.REDIS_URL,
    securityAuditHotDays: env.SECURITY_AUDIT_HOT_DAYS,
    logLevel: env.LOG_LEVEL,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_SECONDS * 1000,
    gcpProject: env.GOOGLE_CLOUD_PROJECT ?? projectFromRefs(env),
    tunables: {
      MAX_REQUEST_BODY_BYTES: env.MAX_REQUEST_BODY_BYTES,
      CORS_ALLOWED_ORIGINS: env.CORS_ALLOWED_ORIGINS,
      ACCESS_TOKEN_TTL_SECONDS: env.ACCESS_TOKEN_TTL_SECONDS,
      REFRESH_TOKEN_TTL_SECONDS: env.REFRESH_TOKEN_TTL_SECONDS,
      ADMIN_REFRESH_TOKEN_TTL_SECONDS: env.ADMIN_REFRESH_TOKEN_TTL_SECONDS,
      REFRESH_REUSE_GRACE_SECONDS: env.REFRESH_REUSE_GRACE_SECONDS,
      WS_TICKET_TTL_SECONDS: env.WS_TICKET_TTL_SECONDS,
      AUTH_RATE_LIMIT_MAX: env.AUTH_RATE_LIMIT_MAX,
      AUTH_RATE_LIMIT_WINDOW_SECONDS: env.AUTH_RATE_LIMIT_WINDOW_SECONDS,
      AUTH_LOCKOUT_THRESHOLD: env.AUTH_LOCKOUT_THRESHOLD,
      AUTH_LOCKOUT_BASE_SECONDS: env.AUTH_LOCKOUT_BASE_SECONDS,
      AUTH_LOCKOUT_MAX_SECONDS: env.AUTH_LOCKOUT_MAX_SECONDS,
      CHAT_RATE_LIMIT_MAX: env.CHAT_RATE_LIMIT_MAX,
      CHAT_RATE_LIMIT_WINDOW_SECONDS: env.CHAT_RATE_LIMIT_WINDOW_SECONDS,
      CHAT_MUTE_BASE_SECONDS: env.CHAT_MUTE_BASE_SECONDS,
      CHAT_MUTE_MAX_SECONDS: env.CHAT_MUTE_MAX_SECONDS,
      CHAT_MAX_MESSAGE_LENGTH: env.CHAT_MAX_MESSAGE_LENGTH,
    },
  };
  return deepFreeze(config);
};

/** The variable a secret came from, so that errors about its value name the right one. */
const secretVariable = (env: Env, name: SecretName): string =>
  env[`${name}_SECRET_REF` as keyof Env] !== undefined ? `${name}_SECRET_REF` : name;

const projectFromRefs = (env: Env): string | undefined =>
  /^projects\/([^/]+)\//.exec(env.JWT_SECRET_SECRET_REF ?? '')?.[1];

const deepFreeze = <T>(value: T): T => {
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
};
