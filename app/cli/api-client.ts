/**
 * The typed client of the ops API (contract §7) and the public release-policy read (§6).
 *
 * One client for the `karaxas-ops` CLI, the tests and, later, a browser console or SDK: it uses
 * only `fetch`, `URL`, `URLSearchParams` and `AbortSignal` — no Node-only API — and the wire
 * schemas of app/ops/schemas.ts, the single source of truth shared with the server routes.
 *
 * - Requests are validated with the route's schema before they are sent (a bad flag fails
 *   locally, with the same messages the server would give); every method returns a promise and
 *   reports every failure as its rejection.
 * - Responses must have the route's success status and match its response schema.
 * - Anything else surfaces as an {@link OpsApiError}: the server's error envelope (code,
 *   message, requestId, status), a network failure (`connection_failed`, status 0), a timeout
 *   (`timeout`), or a response that does not match the contract (`invalid_response`).
 * - The token is sent only in the Authorization header and never appears in an error.
 */
import { z } from 'zod';
import {
  opsRoutes,
  type AdminAuditItem,
  type AdminAuditQuery,
  type CreatePolicyBody,
  type MfaResealBody,
  type PublishBody,
  type RevokeSessionsBody,
  type SecurityAuditQueryParams,
  type SecurityEventItem,
} from '../ops/schemas.js';

type Routes = typeof opsRoutes;
export type OpsRouteName = keyof Routes;
/** The parsed success body of a route. */
export type OpsResponse<N extends OpsRouteName> = z.output<Routes[N]['response']>;

/** Where a failure came from. */
export type OpsErrorSource =
  /** The server answered with an error envelope (or a non-success status). */
  | 'server'
  /** The request was refused locally, before anything was sent (invalid input). */
  | 'client'
  /** No answer: DNS, connection refused, TLS, reset, or the timeout. */
  | 'network'
  /** The server answered something that does not match the contract. */
  | 'response';

export type OpsErrorDetail = { path: string; message: string };

/** A failed ops call. `status` is 0 when no HTTP response was received (or none was sent). */
export class OpsApiError extends Error {
  override name = 'OpsApiError';
  readonly code: string;
  readonly status: number;
  readonly requestId: string | null;
  readonly source: OpsErrorSource;
  readonly details: OpsErrorDetail[] | undefined;
  readonly method: string;
  readonly path: string;

  constructor(init: {
    code: string;
    message: string;
    status: number;
    requestId: string | null;
    source: OpsErrorSource;
    method: string;
    path: string;
    details?: OpsErrorDetail[];
    cause?: unknown;
  }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.status = init.status;
    this.requestId = init.requestId;
    this.source = init.source;
    this.details = init.details;
    this.method = init.method;
    this.path = init.path;
  }

  /** True for failures to reach the server at all (connection, DNS, TLS, timeout). */
  get isConnectionError() {
    return this.source === 'network';
  }

  /** True for 401/403 answers of the ops guard. */
  get isAuthError() {
    return this.source === 'server' && (this.status === 401 || this.status === 403);
  }
}

const errorEnvelopeSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    requestId: z.string(),
    details: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
});

export type OpsClientOptions = {
  /** Base URL of the API, e.g. `https://api.karaxas.example` (a path prefix is kept). */
  baseUrl: string;
  /** `OPS_API_TOKEN` or an admin access token with `otp` in `amr`; omitted for public calls only. */
  token?: string;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Sent as `X-Request-ID` (the server keeps ids matching `^[A-Za-z0-9._:-]{1,128}$`). */
  requestId?: () => string | undefined;
  /** Extra headers on every request (e.g. a `User-Agent` where the runtime allows it). */
  headers?: Record<string, string>;
};

/** Converts a zod error into the `{path, message}` list the API uses. */
const detailsOf = (error: z.ZodError, prefix: string): OpsErrorDetail[] =>
  error.issues.map((issue) => ({ path: [prefix, ...issue.path].join('.'), message: issue.message }));

/** The path of a route with `:id` filled in (the id is validated as a UUID first). */
const idSchema = z.string().uuid();

type QueryInput = Record<string, string | number | boolean | undefined | null>;

export const createOpsClient = (options: OpsClientOptions) => {
  const doFetch = options.fetch ?? ((...args: Parameters<typeof fetch>) => fetch(...args));
  const timeoutMs = options.timeoutMs ?? 30_000;
  let base: URL;
  try {
    base = new URL(options.baseUrl);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('protocol');
  } catch (cause) {
    throw new OpsApiError({
      code: 'invalid_url',
      message: 'The API URL must be an http:// or https:// URL',
      status: 0,
      requestId: null,
      source: 'client',
      method: '-',
      path: '-',
      cause,
    });
  }
  const basePath = base.pathname.replace(/\/+$/, '');

  const clientError = (method: string, path: string, message: string, details?: OpsErrorDetail[]) =>
    new OpsApiError({ code: 'validation_failed', message, status: 0, requestId: null, source: 'client', method, path, details });

  const idPath = (name: OpsRouteName, id: string) => {
    const route = opsRoutes[name];
    if (!idSchema.safeParse(id).success) {
      throw clientError(route.method, route.path, 'The id must be a UUID', [{ path: 'params.id', message: 'Invalid uuid' }]);
    }
    return route.path.replace(':id', encodeURIComponent(id));
  };

  /** Validates `input` with `schema` (for the error messages) and returns it unchanged. */
  const check = <T>(schema: z.ZodTypeAny, input: T, where: 'query' | 'body', method: string, path: string): T => {
    const parsed = schema.safeParse(input);
    if (!parsed.success) {
      const details = detailsOf(parsed.error, where);
      throw clientError(method, path, `Invalid ${where}: ${details.map((d) => `${d.path} ${d.message}`).join('; ')}`, details);
    }
    return input;
  };

  const call = async <N extends OpsRouteName>(
    name: N,
    request: { path?: string; query?: QueryInput; body?: unknown; auth?: boolean } = {},
  ): Promise<OpsResponse<N>> => {
    const route: Routes[OpsRouteName] = opsRoutes[name];
    const path = request.path ?? route.path;
    const url = new URL(base.toString());
    url.pathname = `${basePath}${path}`;
    url.search = '';
    for (const [key, value] of Object.entries(request.query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (request.auth !== false && options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (request.body !== undefined) headers['content-type'] = 'application/json';
    const requestId = options.requestId?.();
    if (requestId !== undefined) headers['x-request-id'] = requestId;

    let response: Response;
    try {
      response = await doFetch(url.toString(), {
        method: route.method,
        headers,
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'error',
      });
    } catch (cause) {
      const timedOut = cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
      // The cause's own message may name the host; it never holds the token (only headers do).
      const reason = timedOut ? `no answer within ${timeoutMs} ms` : describeNetworkFailure(cause);
      throw new OpsApiError({
        code: timedOut ? 'timeout' : 'connection_failed',
        message: `Could not reach ${base.origin}: ${reason}`,
        status: 0,
        requestId: requestId ?? null,
        source: 'network',
        method: route.method,
        path,
        cause,
      });
    }

    const responseRequestId = response.headers.get('x-request-id') ?? requestId ?? null;
    const text = await response.text().catch(() => '');
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }

    if (response.status !== route.status) {
      const envelope = errorEnvelopeSchema.safeParse(json);
      if (envelope.success) {
        throw new OpsApiError({
          code: envelope.data.error.code,
          message: envelope.data.error.message,
          status: response.status,
          requestId: envelope.data.error.requestId,
          source: 'server',
          method: route.method,
          path,
          details: envelope.data.error.details,
        });
      }
      throw new OpsApiError({
        code: response.status >= 200 && response.status < 300 ? 'unexpected_status' : `http_${response.status}`,
        message: `${route.method} ${path} answered ${response.status} without an error envelope (is the URL the Karaxas API?)`,
        status: response.status,
        requestId: responseRequestId,
        source: response.status >= 200 && response.status < 300 ? 'response' : 'server',
        method: route.method,
        path,
      });
    }

    const parsed = route.response.safeParse(json);
    if (!parsed.success) {
      throw new OpsApiError({
        code: 'invalid_response',
        message: `${route.method} ${path} answered a body that does not match the contract: ${parsed.error.issues
          .slice(0, 3)
          .map((issue) => `${issue.path.join('.') || '(body)'} ${issue.message}`)
          .join('; ')}`,
        status: response.status,
        requestId: responseRequestId,
        source: 'response',
        method: route.method,
        path,
      });
    }
    return parsed.data as OpsResponse<N>;
  };

  const adminAudit = async (query: AdminAuditQuery = {}) =>
    call('adminAudit', { query: check(opsRoutes.adminAudit.query, query, 'query', 'GET', opsRoutes.adminAudit.path) as QueryInput });

  const securityAudit = async (query: SecurityAuditQueryParams = {}) =>
    call('securityAudit', {
      query: check(opsRoutes.securityAudit.query, query, 'query', 'GET', opsRoutes.securityAudit.path) as QueryInput,
    });

  return {
    /** The base URL in use. */
    baseUrl: base.toString(),

    /** `GET /release/policy` (public: sent without the token). */
    releasePolicy: async (query: { platform: string; version?: string }) =>
      call('releasePolicy', {
        auth: false,
        query: check(opsRoutes.releasePolicy.query, query, 'query', 'GET', opsRoutes.releasePolicy.path),
      }),

    /** `GET /ops/release/metrics`. */
    metrics: async () => call('metrics'),

    /** `GET /ops/release/admin-audit`: one page, newest first. */
    adminAudit,

    /** Every page of `GET /ops/release/admin-audit` (newest first), following `nextCursor`; stops after `maxItems`. */
    adminAuditAll: async function* (query: Omit<AdminAuditQuery, 'cursor'> = {}, maxItems = Infinity): AsyncGenerator<AdminAuditItem> {
      let cursor: string | undefined;
      let seen = 0;
      do {
        const page = await adminAudit({ ...query, limit: query.limit ?? 500, cursor });
        for (const item of page.items) {
          if (seen++ >= maxItems) return;
          yield item;
        }
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
    },

    /** `GET /ops/release/security-audit`: one page, newest first. */
    securityAudit,

    /** Every page of `GET /ops/release/security-audit` (newest first), following `nextCursor`; stops after `maxItems`. */
    securityAuditAll: async function* (
      query: Omit<SecurityAuditQueryParams, 'cursor'> = {},
      maxItems = Infinity,
    ): AsyncGenerator<SecurityEventItem> {
      let cursor: string | undefined;
      let seen = 0;
      do {
        const page = await securityAudit({ ...query, limit: query.limit ?? 500, cursor });
        for (const item of page.items) {
          if (seen++ >= maxItems) return;
          yield item;
        }
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
    },

    /** `GET /ops/release/security-audit/verify`. */
    verifySecurityAudit: async () => call('verifySecurityAudit'),

    /** `POST /ops/release/policies` → the new, inactive policy. */
    createPolicy: async (body: CreatePolicyBody) =>
      call('createPolicy', { body: check(opsRoutes.createPolicy.body, body, 'body', 'POST', opsRoutes.createPolicy.path) }),

    /** `POST /ops/release/policies/:id/activate`. */
    activatePolicy: async (id: string) => call('activatePolicy', { path: idPath('activatePolicy', id) }),

    /** `POST /ops/release/publish` → `{drainId, policyId}`. */
    publish: async (body: PublishBody) => call('publish', { body: check(opsRoutes.publish.body, body, 'body', 'POST', opsRoutes.publish.path) }),

    /** `GET /ops/release/drains/:id`. */
    drain: async (id: string) => call('drain', { path: idPath('drain', id) }),

    /** `POST /ops/sessions/revoke`: `{userId, reason}` or `{all: true, reason}`. */
    revokeSessions: async (body: RevokeSessionsBody) =>
      call('revokeSessions', { body: check(opsRoutes.revokeSessions.body, body, 'body', 'POST', opsRoutes.revokeSessions.path) }),

    /** `POST /ops/users/:id/role`. */
    setRole: async (userId: string, role: 'player' | 'admin') =>
      call('setRole', {
        path: idPath('setRole', userId),
        body: check(opsRoutes.setRole.body, { role }, 'body', 'POST', opsRoutes.setRole.path),
      }),

    /** `POST /ops/users/:id/force-password-reset`. */
    forcePasswordReset: async (userId: string) => call('forcePasswordReset', { path: idPath('forcePasswordReset', userId) }),

    /** `GET /ops/mfa/keys`: TOTP secrets per sealing key id. */
    mfaKeys: async () => call('mfaKeys'),

    /** `POST /ops/mfa/reseal`: one bounded run of the TOTP reseal (repeat while pendingReseal drops). */
    mfaReseal: async (body: MfaResealBody = {}) =>
      call('mfaReseal', { body: check(opsRoutes.mfaReseal.body, body, 'body', 'POST', opsRoutes.mfaReseal.path) }),
  };
};

export type OpsClient = ReturnType<typeof createOpsClient>;

/** A short reason for a failed fetch: undici puts the system error (ECONNREFUSED, ENOTFOUND…) in `cause`. */
const describeNetworkFailure = (error: unknown): string => {
  const cause = error instanceof Error ? (error.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  if (cause && typeof cause.code === 'string') return cause.code;
  if (cause && typeof cause.message === 'string') return cause.message.slice(0, 200);
  return error instanceof Error ? error.message.slice(0, 200) : 'request failed';
};
