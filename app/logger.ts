/**
 * Structured JSON logs in Cloud Logging's shape: `severity`, `message`, `time`, and per request
 * `logging.googleapis.com/trace` plus the request id. Credentials are redacted by key wherever
 * they appear in a logged object; request bodies and query strings are never logged at all.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from './config/index.js';

export type { Logger } from 'pino';

const severityByLevel: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

/** Keys whose values are credentials, at the top level and one level down. */
const secretKeys = [
  'authorization',
  'cookie',
  'set-cookie',
  'password',
  'newPassword',
  'currentPassword',
  'token',
  'accessToken',
  'refreshToken',
  'mfaToken',
  'ticket',
  'secret',
  'recoveryCodes',
  'opsApiToken',
  'connectionUri',
];

export const redactPaths = [
  ...secretKeys,
  ...secretKeys.map((key) => `*.${key}`),
  ...secretKeys.map((key) => `*.*.${key}`),
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-ops-token"]',
];

/**
 * @param destination where lines go (stdout by default; tests pass a capture stream).
 */
export const createLogger = (config: Pick<Config, 'logLevel'>, destination?: DestinationStream): Logger =>
  pino(
    {
      level: config.logLevel,
      messageKey: 'message',
      base: undefined,
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      formatters: {
        level: (label) => ({ severity: severityByLevel[label] ?? 'DEFAULT' }),
      },
      redact: { paths: redactPaths, censor: '[REDACTED]' },
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
    },
    destination,
  );
