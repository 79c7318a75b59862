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

const CENSOR = '[REDACTED]';
const secretKeySet: ReadonlySet<string> = new Set(secretKeys);
const serializeError = pino.stdSerializers.err as (value: unknown) => unknown;
const serializers: Record<string, (value: unknown) => unknown> = { err: serializeError, error: serializeError };

/** Where a level-3 key sits: under `req.headers` the `x-ops-token` header is a credential too. */
type Under = 'top' | 'req' | 'req.headers' | 'other';

/**
 * Exactly the redaction {@link redactPaths} describes, in one walk instead of one per path: a
 * secret key at the top level or one or two levels down (`key`, `*.key`, `*.*.key`, arrays
 * included) and `req.headers["x-ops-token"]` are censored. pino's own `redact` option walks the
 * object once per path (45 of them) and cost more than the rest of a request; this copies on write
 * (the caller's objects are never modified) and returns the same object when nothing matched.
 * Like pino, a top-level key whose value is undefined is left out rather than censored.
 */
const redactLevel = (value: object, level: number, under: Under): object => {
  let copy: Record<string, unknown> | undefined;
  const source = value as Record<string, unknown>;
  for (const key in source) {
    const current = source[key];
    let next = current;
    if (secretKeySet.has(key) || (under === 'req.headers' && key === 'x-ops-token')) {
      if (level === 1 && current === undefined) continue;
      next = CENSOR;
    } else if (level < 3 && typeof current === 'object' && current !== null && !ArrayBuffer.isView(current)) {
      const below: Under = level === 1 && key === 'req' ? 'req' : under === 'req' && key === 'headers' ? 'req.headers' : 'other';
      next = redactLevel(current, level + 1, below);
    }
    if (next !== current) {
      copy ??= (Array.isArray(value) ? [...value] : Object.assign(Object.create(Object.getPrototypeOf(value) as object | null) as object, value)) as Record<string, unknown>;
      copy[key] = next;
    }
  }
  return copy ?? value;
};

/** The serializers (errors) first, as pino would apply them, then the redaction. */
const serializeAndRedact = (object: Record<string, unknown>): Record<string, unknown> => {
  // pino hands the root's (absent) base bindings over as undefined.
  if (typeof object !== 'object' || object === null) return object;
  let serialized = object;
  for (const key in serializers) {
    if (object[key] !== undefined && Object.prototype.hasOwnProperty.call(object, key)) {
      if (serialized === object) serialized = { ...object };
      serialized[key] = serializers[key]!(object[key]);
    }
  }
  return redactLevel(serialized, 1, 'top') as Record<string, unknown>;
};

/**
 * stdout, buffered: lines are written (synchronously) once 4 KiB have accumulated, and at the
 * latest every 100 ms — one write per dozen or so lines under load instead of one blocking write
 * per line, which cost as much as the rest of a small request. Whatever is buffered is written
 * when the process exits (a crash that skips 'exit', e.g. SIGKILL, loses at most 100 ms of lines).
 */
let stdout: DestinationStream | undefined;
const standardOutput = () => {
  if (stdout) return stdout;
  const stream = pino.destination({ dest: 1, sync: true, minLength: 4_096, periodicFlush: 100 });
  process.on('exit', () => {
    try {
      stream.flushSync();
    } catch {
      // stdout is gone: nothing left to tell.
    }
  });
  return (stdout = stream);
};

/** pino's own serializers must not run again on what {@link serializeAndRedact} produced. */
const alreadySerialized = (value: unknown) => value;

/**
 * @param destination where lines go (stdout by default; tests pass a capture stream).
 */
export const createLogger = (config: Pick<Config, 'logLevel'>, destination?: DestinationStream): Logger => {
  const logger = pino(
    {
      level: config.logLevel,
      messageKey: 'message',
      base: undefined,
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      formatters: {
        level: (label) => ({ severity: severityByLevel[label] ?? 'DEFAULT' }),
        // Serializers and redaction (see redactLevel) of every line.
        log: serializeAndRedact,
      },
      serializers: { err: alreadySerialized, error: alreadySerialized },
    },
    destination ?? standardOutput(),
  );
  // A child's bindings are rendered once, when it is created (pino's bindings formatter only sees
  // the root's): they go through the same serializers and redaction there. Children inherit this.
  const pinoChild = logger.child;
  logger.child = function child(this: Logger, bindings: Record<string, unknown>, options?: unknown) {
    return pinoChild.call(this, serializeAndRedact(bindings), options as never);
  } as typeof logger.child;
  return logger;
};
