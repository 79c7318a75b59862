/**
 * The platform middleware every request passes through, in this order:
 * request context → access log → error envelope → secure headers → CORS → body size guard → routes.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import cors from '@koa/cors';
import type { Middleware } from 'koa';
import helmet from 'koa-helmet';
import {
  BackendTerminatedError,
  BackendTerminatedUnexpectedlyError,
  CheckIntegrityConstraintViolationError,
  ConnectionError,
  SlonikError,
  StatementTimeoutError,
  UniqueIntegrityConstraintViolationError,
} from 'slonik';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { AppError, constraintErrors, errorRegistry, type ErrorCode } from './errors.js';
import type { AppContext, AppState } from './route.js';

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/** The inbound id when it matches the contract's pattern, otherwise a fresh one. */
export const acceptRequestId = (inbound: string | undefined): string =>
  inbound !== undefined && requestIdPattern.test(inbound) ? inbound : randomUUID();

const normaliseIp = (address: string | undefined): string => {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
};

/**
 * The client address. Behind GCP's external load balancer X-Forwarded-For ends with
 * `<client>, <load balancer>`; entries further left are whatever the client sent and are ignored.
 */
export const clientIpOf = (
  forwardedFor: string | undefined,
  socketAddress: string | undefined,
  proxy: { trustProxy: boolean; trustedProxyHops: number },
): string => {
  if (proxy.trustProxy && forwardedFor) {
    const entries = forwardedFor
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry.length > 0);
    const candidate = entries[Math.max(entries.length - proxy.trustedProxyHops, 0)];
    if (candidate !== undefined && isIP(normaliseIp(candidate)) !== 0) return normaliseIp(candidate);
  }
  return normaliseIp(socketAddress);
};

/** `X-Cloud-Trace-Context: TRACE/SPAN;o=1` or W3C `traceparent` → Cloud Logging correlation fields. */
const traceFields = (ctx: AppContext, project: string | undefined): Record<string, string> => {
  const cloud = /^([0-9a-f]{32})\/(\d+)/i.exec(ctx.get('x-cloud-trace-context'));
  const w3c = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/i.exec(ctx.get('traceparent'));
  const match = cloud ?? w3c;
  if (!match || project === undefined) return {};
  return {
    'logging.googleapis.com/trace': `projects/${project}/traces/${match[1]!.toLowerCase()}`,
    'logging.googleapis.com/spanId': match[2]!,
  };
};

export const requestContext =
  (config: Config, logger: Logger): Middleware<AppState> =>
  async (ctx, next) => {
    const requestId = acceptRequestId(ctx.get('x-request-id') || undefined);
    ctx.state.requestId = requestId;
    ctx.set('X-Request-ID', requestId);
    ctx.state.clientIp = clientIpOf(ctx.get('x-forwarded-for') || undefined, ctx.req.socket.remoteAddress, config.http);
    ctx.state.log = logger.child({ requestId, ...traceFields(ctx, config.gcpProject) });
    await next();
  };

/** One line per request in Cloud Logging's `httpRequest` shape. The query string is never logged. */
export const accessLog = (): Middleware<AppState> => async (ctx, next) => {
  const started = process.hrtime.bigint();
  try {
    await next();
  } finally {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const status = ctx.status;
    const level = status >= 500 ? 'error' : status >= 400 ? 'warn' : 'info';
    ctx.state.log[level](
      {
        httpRequest: {
          requestMethod: ctx.method,
          requestUrl: ctx.path,
          status,
          userAgent: ctx.get('user-agent').slice(0, 256) || undefined,
          remoteIp: ctx.state.clientIp,
          latency: `${seconds.toFixed(6)}s`,
          responseSize: ctx.response.length,
        },
      },
      `${ctx.method} ${ctx.path} ${status}`,
    );
  }
};

/** Maps database failures that mean "try again later" to 503 rather than 500. */
const isDatabaseUnavailable = (error: unknown): boolean => {
  const code = (error as { code?: string } | undefined)?.code;
  if (code !== undefined && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', '57P01', '57P02', '57P03', '08006', '08001', '08003'].includes(code)) {
    return true;
  }
  if (error instanceof SlonikError) {
    // By class: slonik's error classes do not set `name` (it stays "Error"), so a connect
    // timeout (ConnectionError "timeout expired", no code) used to fall through to a 500.
    // BackendTerminatedError includes app/db/driver.ts's ClientQueryTimeoutError (no answer from
    // a frozen or unreachable server).
    if (
      error instanceof ConnectionError ||
      error instanceof BackendTerminatedError ||
      error instanceof BackendTerminatedUnexpectedlyError ||
      error instanceof StatementTimeoutError
    ) {
      return true;
    }
    return error.cause !== undefined && isDatabaseUnavailable(error.cause);
  }
  return false;
};

/** Converts anything thrown into an {@link AppError}; unknown errors become internal_error. */
export const toAppError = (error: unknown): AppError => {
  if (error instanceof AppError) return error;
  if (error instanceof UniqueIntegrityConstraintViolationError || error instanceof CheckIntegrityConstraintViolationError) {
    const code = error.constraint === null ? undefined : constraintErrors[error.constraint];
    if (code !== undefined) return new AppError(code, { cause: error });
  }
  if (isDatabaseUnavailable(error)) return new AppError('service_unavailable', { headers: { 'Retry-After': '2' }, cause: error });
  return new AppError('internal_error', { cause: error });
};

/**
 * Writes every failure as the contract's envelope. Causes are logged with the request id and
 * never sent: the body holds only the registry code, its message and the request id.
 */
export const errorEnvelope = (): Middleware<AppState> => async (ctx, next) => {
  try {
    await next();
    if (ctx.body === undefined || ctx.body === null) {
      if (ctx.status === 404) throw new AppError('not_found');
      if (ctx.status === 405 || ctx.status === 501) throw new AppError('method_not_allowed');
    }
  } catch (thrown) {
    const error = toAppError(thrown);
    if (error.status >= 500) {
      ctx.state.log.error({ err: error.cause ?? error, errorCode: error.code }, 'request failed');
    } else if (error.cause !== undefined) {
      ctx.state.log.debug({ err: error.cause, errorCode: error.code }, 'request rejected');
    }
    for (const [name, value] of Object.entries(error.headers)) ctx.set(name, value);
    ctx.status = error.status;
    ctx.body = {
      error: {
        code: error.code,
        message: errorRegistry[error.code] ? error.message : errorRegistry.internal_error.message,
        requestId: ctx.state.requestId,
        ...(error.details ? { details: error.details } : {}),
      },
    };
  }
};

export const permissionsPolicy = [
  'accelerometer=()',
  'camera=()',
  'display-capture=()',
  'geolocation=()',
  'gyroscope=()',
  'magnetometer=()',
  'microphone=()',
  'payment=()',
  'usb=()',
  'interest-cohort=()',
].join(', ');

/**
 * Secure response headers (contract §1). HSTS only on HTTPS requests; with TRUST_PROXY Koa's
 * `ctx.secure` honours the load balancer's X-Forwarded-Proto, without it the header is ignored.
 */
export const secureHeaders = (): Middleware<AppState> => {
  const base = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: false,
    crossOriginResourcePolicy: { policy: 'same-site' },
  }) as unknown as Middleware<AppState>;
  const helmetHeaders = recordHeaderWrites(base);
  return async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Permissions-Policy', permissionsPolicy);
    if (ctx.secure) ctx.set('Strict-Transport-Security', 'max-age=63072000; includeSubDomains');
    if (helmetHeaders === undefined) {
      await base(ctx, next);
      return;
    }
    for (const [name, value] of helmetHeaders) {
      if (value === undefined) ctx.res.removeHeader(name);
      else ctx.res.setHeader(name, value);
    }
    await next();
  };
};

/**
 * The header writes a middleware makes on a request-less response, when it makes them at once
 * and they cannot depend on the request (helmet with these options: static values only). Replaying
 * them costs a few setHeader calls instead of helmet's promise and its chain of a dozen
 * middlewares per request. Undefined (run the middleware itself) if it did not write synchronously.
 */
const recordHeaderWrites = (middleware: Middleware<AppState>): Array<[string, string | number | readonly string[] | undefined]> | undefined => {
  const writes: Array<[string, string | number | readonly string[] | undefined]> = [];
  const res = {
    setHeader: (name: string, value: string | number | readonly string[]) => void writes.push([name, value]),
    removeHeader: (name: string) => void writes.push([name, undefined]),
    getHeader: () => undefined,
  };
  const req = { headers: {}, method: 'GET', url: '/', socket: {} };
  try {
    void Promise.resolve(middleware({ req, res } as never, async () => undefined)).catch(() => undefined);
  } catch {
    return undefined;
  }
  return writes.some(([, value]) => value !== undefined) ? writes : undefined;
};

/** CORS for the listed origins only; others get no CORS headers at all (never `*`). */
export const corsAllowlist = (origins: readonly string[]): Middleware<AppState> => {
  const allowed = new Set(origins);
  const handle = cors({
    origin: (ctx) => {
      const origin = ctx.get('origin');
      return allowed.has(origin) ? origin : '';
    },
    allowMethods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowHeaders: ['Authorization', 'Content-Type', 'X-Request-ID', 'X-Client-Platform', 'X-Client-Version'],
    exposeHeaders: ['X-Request-ID', 'Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'X-Min-Supported-Version'],
    maxAge: 600,
    credentials: false,
    keepHeadersOnError: true,
  }) as unknown as Middleware<AppState>;
  // Most requests carry no listed Origin: what @koa/cors does for them (Vary: Origin, nothing
  // else), without its per-request async machinery.
  return (ctx, next) => {
    if (allowed.has(ctx.get('origin'))) return handle(ctx, next);
    ctx.vary('Origin');
    return next();
  };
};

/**
 * Rejects a declared body larger than the limit before a byte of it is read. Chunked bodies
 * have no length up front; the JSON reader enforces the same limit while streaming.
 */
export const bodySizeGuard =
  (maxBytes: number): Middleware<AppState> =>
  async (ctx, next) => {
    const declared = ctx.get('content-length');
    if (declared !== '' && (!/^\d+$/.test(declared) || Number(declared) > maxBytes)) {
      throw new AppError('payload_too_large', { headers: { Connection: 'close' } });
    }
    await next();
  };

/**
 * Writes the contract's error envelope, with a request id and the secure headers, straight to a
 * socket and closes it: for the paths that never reach Koa (requests Node's parser rejects,
 * refused websocket upgrades).
 */
export const writeRawError = (
  socket: Duplex,
  code: ErrorCode,
  options: { requestId?: string; secure?: boolean; headers?: Record<string, string> } = {},
) => {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const requestId = options.requestId ?? randomUUID();
  const { status, message } = errorRegistry[code];
  const body = JSON.stringify({ error: { code, message, requestId } });
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `X-Request-ID: ${requestId}`,
    'Cache-Control: no-store',
    'X-Content-Type-Options: nosniff',
    'X-Frame-Options: DENY',
    'Referrer-Policy: no-referrer',
    `Permissions-Policy: ${permissionsPolicy}`,
    ...(options.secure ? ['Strict-Transport-Security: max-age=63072000; includeSubDomains'] : []),
    ...Object.entries(options.headers ?? {}).map(([name, value]) => `${name}: ${value}`),
    'Connection: close',
    '',
    body,
  ];
  socket.end(lines.join('\r\n'), () => socket.destroy());
  // A peer that never reads must not keep the socket open.
  setTimeout(() => socket.destroy(), 2_000).unref();
};

/**
 * Requests Node's HTTP parser rejects (malformed headers, oversized header blocks, clients too
 * slow to send them) never reach Koa; they still get the envelope (see {@link writeRawError}).
 */
export const writeClientError = (error: NodeJS.ErrnoException, socket: Duplex) => {
  if (error.code === 'ECONNRESET' && !socket.readable) {
    socket.destroy();
    return;
  }
  const timedOut = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' || error.code === 'HPE_HEADER_TIMEOUT';
  writeRawError(socket, timedOut ? 'request_timeout' : 'bad_request');
};
