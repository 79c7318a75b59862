/**
 * Ops authentication (contract §7): `Authorization: Bearer <OPS_API_TOKEN>`, or an admin access
 * token whose session was established with a second factor (`otp` in `amr`).
 *
 * - The ops token is compared in constant time: both sides are hashed with SHA-256 first and
 *   the digests compared with timingSafeEqual, so neither content nor length leaks.
 * - Failures answer 401 `unauthorized` (no/unknown token) or 403 `forbidden` (a valid token that
 *   is not an admin's) / 403 `mfa_required` (an admin session without otp), and record
 *   `ops_auth_failed` — throttled per client IP (and globally) so that failures cannot be used to
 *   flood the append-only table; suppressed failures are counted in the next recorded event.
 * - The token is never logged or recorded: only the failure reason, method and path are.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import type { RequestMeta, SecurityAuditService } from '../audit/types.js';
import type { AuthService } from '../auth/service.js';
import { AppError } from '../http/errors.js';
import { requestMeta } from '../http/request-meta.js';
import type { AppContext, AppState } from '../http/route.js';
import type { Logger } from '../logger.js';
import { OPS_TOKEN_ACTOR } from './schemas.js';

/** Who made an ops call; `actor` is what admin_action_audit records. */
export type OpsCaller =
  | { kind: 'ops-token'; actor: typeof OPS_TOKEN_ACTOR }
  | { kind: 'admin'; actor: string; userId: string; sessionId: string };

export type OpsAuthFailure = 'missing_token' | 'invalid_token' | 'not_admin' | 'mfa_required';

export type OpsGuardDeps = {
  opsApiToken: string;
  auth: Pick<AuthService, 'authenticate'>;
  audit: Pick<SecurityAuditService, 'record'>;
  pool: Parameters<SecurityAuditService['record']>[0];
  logger: Logger;
  /** Recorded failures per client IP per window (default 20 per minute). */
  perIpLimit?: number;
  /** Recorded failures per window over all IPs (default 600 per minute). */
  globalLimit?: number;
  windowMs?: number;
};

const callers = new WeakMap<AppContext, OpsCaller>();

/** The caller established by the ops guard. */
export const opsCallerOf = (ctx: AppContext): OpsCaller => {
  const caller = callers.get(ctx);
  if (caller === undefined) throw new Error('route is missing the ops guard');
  return caller;
};

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/** Constant-time equality of two secrets of any length. */
export const secretEquals = (presented: string, expected: string): boolean => timingSafeEqual(digest(presented), digest(expected));

/** Most IPs tracked at once; beyond it, the oldest windows are dropped. */
const MAX_TRACKED_IPS = 10_000;

/**
 * Decides which ops_auth_failed events are written: at most `perIp` per IP and `global` overall
 * per window. Returns the number of failures suppressed since the last recorded one for that IP
 * (to be carried in the recorded event), or undefined when this one is suppressed.
 */
export const createFailureThrottle = (options: { perIp: number; global: number; windowMs: number; now?: () => number }) => {
  const now = options.now ?? Date.now;
  const byIp = new Map<string, { windowStart: number; recorded: number; suppressed: number }>();
  let globalWindow = { start: 0, recorded: 0 };
  return {
    admit: (ip: string): number | undefined => {
      const time = now();
      if (time - globalWindow.start >= options.windowMs) globalWindow = { start: time, recorded: 0 };
      let entry = byIp.get(ip);
      if (!entry || time - entry.windowStart >= options.windowMs) {
        const suppressed = entry?.suppressed ?? 0;
        byIp.delete(ip);
        entry = { windowStart: time, recorded: 0, suppressed };
        byIp.set(ip, entry);
        if (byIp.size > MAX_TRACKED_IPS) {
          const oldest = byIp.keys().next().value;
          if (oldest !== undefined) byIp.delete(oldest);
        }
      }
      if (entry.recorded >= options.perIp || globalWindow.recorded >= options.global) {
        entry.suppressed += 1;
        return undefined;
      }
      entry.recorded += 1;
      globalWindow.recorded += 1;
      const suppressed = entry.suppressed;
      entry.suppressed = 0;
      return suppressed;
    },
    get trackedIps() {
      return byIp.size;
    },
  };
};

/**
 * The credentials of `Authorization: Bearer …` (scheme case-insensitive). Wider than the
 * token68 syntax access tokens use: the ops token is whatever Secret Manager holds (≥ 32
 * characters), and it must still be accepted when it holds other visible characters.
 */
export const opsBearer = (header: string | undefined): string | undefined => {
  const match = /^Bearer +([\x21-\x7e]+) *$/i.exec(header ?? '');
  return match?.[1];
};

/** JWT compact serialisation: three base64url segments. */
const looksLikeJwt = (token: string) => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);

export const createOpsGuard = (deps: OpsGuardDeps): Middleware<AppState> => {
  const { opsApiToken, auth, audit, pool, logger } = deps;
  const throttle = createFailureThrottle({
    perIp: deps.perIpLimit ?? 20,
    global: deps.globalLimit ?? 600,
    windowMs: deps.windowMs ?? 60_000,
  });

  const fail = async (ctx: AppContext, reason: OpsAuthFailure, userId: string | null = null): Promise<never> => {
    const meta: RequestMeta = requestMeta(ctx);
    const suppressed = throttle.admit(meta.ip ?? 'unknown');
    if (suppressed !== undefined) {
      await audit
        .record(pool, meta, {
          type: 'ops_auth_failed',
          userId,
          details: { reason, method: ctx.method, path: ctx.path.slice(0, 200), ...(suppressed > 0 ? { suppressedSinceLast: suppressed } : {}) },
        })
        .catch((error: unknown) => logger.warn({ err: error }, 'could not record ops_auth_failed'));
    }
    ctx.state.log.info({ opsAuthFailure: reason }, 'ops authentication failed');
    switch (reason) {
      case 'missing_token':
      case 'invalid_token':
        throw new AppError('unauthorized', { headers: { 'WWW-Authenticate': 'Bearer' } });
      case 'not_admin':
        throw new AppError('forbidden');
      case 'mfa_required':
        throw new AppError('mfa_required');
    }
  };

  return async (ctx, next) => {
    const token = opsBearer(ctx.get('authorization'));
    if (token === undefined) return fail(ctx, 'missing_token');
    // Always compared, whatever the token looks like: the time spent does not depend on it.
    if (secretEquals(token, opsApiToken)) {
      callers.set(ctx, { kind: 'ops-token', actor: OPS_TOKEN_ACTOR });
      return next();
    }
    if (!looksLikeJwt(token)) return fail(ctx, 'invalid_token');
    let session;
    try {
      session = await auth.authenticate(token);
    } catch (error) {
      if (error instanceof AppError && error.code === 'unauthorized') return fail(ctx, 'invalid_token');
      throw error;
    }
    if (session.role !== 'admin') return fail(ctx, 'not_admin', session.userId);
    if (!session.amr.includes('otp')) return fail(ctx, 'mfa_required', session.userId);
    callers.set(ctx, { kind: 'admin', actor: session.userId, userId: session.userId, sessionId: session.sessionId });
    return next();
  };
};
