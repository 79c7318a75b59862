/**
 * The environment schema (contract §9). Parsed once at boot; nothing else reads the environment.
 */
import { z } from 'zod';
import { boolSetting, intSetting, tunableRefinements, tunableSchemas } from './tunables.js';

/** Secret Manager version name: `projects/P/secrets/S/versions/V`. */
export const secretRefPattern = /^projects\/[a-z0-9-]{1,63}\/secrets\/[A-Za-z0-9_-]{1,255}\/versions\/(\d+|latest)$/;

const secretRef = z
  .string()
  .regex(secretRefPattern, 'must be a Secret Manager version name: projects/P/secrets/S/versions/V')
  .optional();

const optionalText = z
  .string()
  .transform((value) => (value.trim() === '' ? undefined : value))
  .optional();

/** The secrets the service needs, by the name of their plain-env fallback variable. */
export const secretNames = [
  'JWT_SECRET',
  'JWT_SECRET_PREVIOUS',
  'OPS_API_TOKEN',
  'DB_PASSWORD',
  'TOTP_ENCRYPTION_KEY',
  'TOTP_ENCRYPTION_KEY_PREVIOUS',
] as const;
export type SecretName = (typeof secretNames)[number];

export const sslModes = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof sslModes)[number];

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    /** Set by Cloud Run on every instance; its presence means "deployed". */
    K_SERVICE: optionalText,
    PORT: intSetting(1, 65_535, 8080),
    HOST: z.string().default('0.0.0.0'),

    DATABASE_URL: optionalText.pipe(
      z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// connection string')
        .optional(),
    ),
    DB_HOST: optionalText,
    DB_PORT: intSetting(1, 65_535, 5432),
    DB_NAME: optionalText,
    DB_USER: optionalText,
    DB_SSLMODE: z.enum(sslModes).default('require'),
    DB_SSL_ROOT_CERT: optionalText,
    DB_POOL_SIZE: intSetting(1, 200, 10),
    DB_STATEMENT_TIMEOUT_MS: intSetting(100, 600_000, 15_000),
    DB_CONNECT_TIMEOUT_MS: intSetting(100, 60_000, 5_000),

    JWT_SECRET_SECRET_REF: secretRef,
    JWT_SECRET_PREVIOUS_SECRET_REF: secretRef,
    OPS_API_TOKEN_SECRET_REF: secretRef,
    DB_PASSWORD_SECRET_REF: secretRef,
    TOTP_ENCRYPTION_KEY_SECRET_REF: secretRef,
    /** Decrypt-only during a TOTP key rotation. */
    TOTP_ENCRYPTION_KEY_PREVIOUS_SECRET_REF: secretRef,
    ALLOW_PLAIN_ENV_SECRETS: boolSetting(false),
    /** The explicit override contract §9 requires before plain secrets are read in production. */
    FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION: boolSetting(false),
    JWT_SECRET: optionalText,
    JWT_SECRET_PREVIOUS: optionalText,
    OPS_API_TOKEN: optionalText,
    DB_PASSWORD: optionalText,
    TOTP_ENCRYPTION_KEY: optionalText,
    TOTP_ENCRYPTION_KEY_PREVIOUS: optionalText,
    /** For tests and local emulators only: `host:port` of a Secret Manager gRPC endpoint (plaintext). */
    SECRET_MANAGER_EMULATOR_HOST: optionalText.pipe(
      z
        .string()
        .regex(/^(\[[0-9a-fA-F:.]+\]|[^:[\]\s/]+):\d{1,5}$/, 'must be host:port')
        .optional(),
    ),

    TRUST_PROXY: boolSetting(false),
    TRUSTED_PROXY_HOPS: intSetting(1, 10, 2),
    JWT_ISSUER: z.string().min(1).default('karaxas-backend'),
    JWT_AUDIENCE: z.string().min(1).default('karaxas-game'),

    ARGON2_MEMORY_KIB: intSetting(19_456, 1_048_576, 19_456),
    ARGON2_TIME_COST: intSetting(2, 10, 2),
    ARGON2_PARALLELISM: intSetting(1, 16, 1),

    REDIS_URL: optionalText.pipe(
      z
        .string()
        .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
        .optional(),
    ),
    SECURITY_AUDIT_HOT_DAYS: intSetting(1, 3_650, 180),
    LOG_LEVEL: z.enum(logLevels).default('info'),
    SHUTDOWN_TIMEOUT_SECONDS: intSetting(1, 600, 8),
    /** Project id used to build Cloud Logging trace names; Cloud Run sets GOOGLE_CLOUD_PROJECT. */
    GOOGLE_CLOUD_PROJECT: optionalText,

    ...tunableSchemas,
  })
  .superRefine((env, ctx) => {
    for (const rule of tunableRefinements) {
      if (!rule.check(env)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [rule.variable], message: rule.message });
    }
    const deployed = env.NODE_ENV === 'production' || env.K_SERVICE !== undefined;
    if (env.DATABASE_URL === undefined && env.DB_HOST === undefined && deployed) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['DATABASE_URL'],
        message: 'is required in production (or DB_HOST, DB_NAME, DB_USER and a DB password)',
      });
    }
    if (env.DATABASE_URL !== undefined && env.DB_HOST !== undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['DB_HOST'], message: 'conflicts with DATABASE_URL; set one of them' });
    }
    if (env.DB_HOST !== undefined) {
      for (const name of ['DB_NAME', 'DB_USER'] as const) {
        if (env[name] === undefined) {
          ctx.addIssue({ code: z.ZodIssueCode.custom, path: [name], message: 'is required when DB_HOST is set' });
        }
      }
    }
    if ((env.DB_SSLMODE === 'verify-ca' || env.DB_SSLMODE === 'verify-full') && env.DB_SSL_ROOT_CERT === undefined) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['DB_SSL_ROOT_CERT'],
        message: `is required with DB_SSLMODE=${env.DB_SSLMODE}`,
      });
    }
    if (deployed && env.SECRET_MANAGER_EMULATOR_HOST !== undefined) {
      // A plaintext, unauthenticated endpoint would bypass Secret Manager's IAM entirely.
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['SECRET_MANAGER_EMULATOR_HOST'],
        message: 'is for local emulators and tests only; refused in production',
      });
    }
    if (deployed && env.DB_SSLMODE === 'disable') {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['DB_SSLMODE'],
        message: 'must not be "disable" in production',
      });
    }
  });

export type Env = z.output<typeof envSchema>;
