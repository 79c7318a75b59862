/**
 * The ops API's rules (contract §7): the admin action trail, the audit queries and metrics, and
 * the incident actions (revoke sessions, change a role, force a password reset).
 *
 * Every mutating call writes exactly one admin_action_audit row in the transaction of the change
 * ({@link createAdminAuditRecorder}); security events describing the change are appended last in
 * that transaction (the security-event chain lock is held until commit).
 */
import { isIP } from 'node:net';
import type { DatabasePool } from 'slonik';
import { InvalidSecurityAuditQueryError, scrubDetails } from '../audit/service.js';
import type { Queryable, RequestMeta, SecurityAuditQueries, SecurityAuditService } from '../audit/types.js';
import type { AuthService, RevocationReason } from '../auth/service.js';
import { toPublicUser } from '../auth/service.js';
import type { Role } from '../auth/store.js';
import { AppError } from '../http/errors.js';
import type { MfaService } from '../mfa/service.js';
import type { OpsCaller } from './guard.js';
import type {
  AdminAction,
  AdminAuditItem,
  MfaKeys,
  MfaReseal,
  OpsMetrics,
  SecurityEventItem,
} from './schemas.js';
import type { AdminActionRow, Keyset, OpsStore } from './store.js';
import { z } from 'zod';

// ---------------------------------------------------------------------------------------------
// The admin action trail

export type AdminActionRecord = {
  action: AdminAction | (string & {});
  target: string | null;
  details?: Record<string, unknown>;
};

const normaliseIp = (ip: string | null): string | null => {
  if (!ip) return null;
  const address = ip.trim().replace(/%.*$/, '');
  return isIP(address) === 0 ? null : address;
};

/** Writes the one admin_action_audit row of a mutating ops call, inside its transaction. */
export const createAdminAuditRecorder = (store: Pick<OpsStore, 'insertAdminAction'>) => ({
  record: (tx: Queryable, caller: Pick<OpsCaller, 'actor'>, meta: RequestMeta, record: AdminActionRecord) =>
    store.insertAdminAction(tx, {
      actor: caller.actor,
      action: record.action,
      target: record.target === null ? null : record.target.slice(0, 200),
      details: scrubDetails(record.details),
      requestId: meta.requestId.slice(0, 128) || null,
      ip: normaliseIp(meta.ip),
    }),
});
export type AdminAuditRecorder = ReturnType<typeof createAdminAuditRecorder>;

// ---------------------------------------------------------------------------------------------
// Cursors (base64url of [createdAtWithMicroseconds, id]; opaque to clients)

const cursorSchema = z.tuple([z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/), z.string().uuid()]);

export const encodeAdminCursor = (keyset: Keyset) => Buffer.from(JSON.stringify([keyset.createdAt, keyset.id]), 'utf8').toString('base64url');

/** @throws {AppError} validation_failed for anything {@link encodeAdminCursor} did not produce. */
export const decodeAdminCursor = (cursor: string): Keyset => {
  try {
    const parsed = cursorSchema.safeParse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    if (parsed.success && !Number.isNaN(Date.parse(parsed.data[0]))) return { createdAt: parsed.data[0], id: parsed.data[1].toLowerCase() };
  } catch {
    // fall through
  }
  throw new AppError('validation_failed', { details: [{ path: 'query.cursor', message: 'Invalid cursor' }] });
};

const toAdminAuditItem = (row: AdminActionRow): AdminAuditItem => ({
  id: row.id,
  actor: row.actor,
  action: row.action,
  target: row.target,
  details: row.details,
  requestId: row.request_id,
  ip: row.ip,
  createdAt: row.created_at,
});

// ---------------------------------------------------------------------------------------------
// The service

export type OpsDeps = {
  pool: DatabasePool;
  store: OpsStore;
  adminAudit: AdminAuditRecorder;
  audit: SecurityAuditService & SecurityAuditQueries;
  auth: Pick<AuthService, 'revokeUserSessionsIn' | 'revokeAllSessionsIn' | 'findUserIn' | 'setRoleIn' | 'requirePasswordResetIn'>;
  /** Drains by outcome, from the release feature. */
  drainCounts: () => Promise<{ started: number; completed: number; failed: number }>;
  /** The TOTP key rotation of the MFA feature. */
  mfa: Pick<MfaService, 'sealingState' | 'resealPending'>;
};

export const createOpsService = (deps: OpsDeps) => {
  const { pool, store, adminAudit, audit, auth, drainCounts, mfa } = deps;

  const userOr404 = async (db: Queryable, userId: string) => {
    const user = await auth.findUserIn(db, userId);
    if (!user) throw new AppError('not_found');
    return user;
  };

  return {
    listAdminAudit: async (query: { action?: string; actor?: string; since?: string; until?: string; limit: number; cursor?: string }) => {
      const rows = await store.listAdminActions({
        action: query.action,
        actor: query.actor,
        since: query.since === undefined ? undefined : new Date(query.since).toISOString(),
        until: query.until === undefined ? undefined : new Date(query.until).toISOString(),
        after: query.cursor === undefined ? undefined : decodeAdminCursor(query.cursor),
        limit: query.limit + 1,
      });
      const page = rows.slice(0, query.limit);
      const last = page.at(-1);
      return {
        items: page.map(toAdminAuditItem),
        nextCursor: rows.length > query.limit && last ? encodeAdminCursor({ createdAt: last.created_at_exact, id: last.id }) : null,
      };
    },

    /** @throws {AppError} validation_failed for a bad cursor or bound. */
    listSecurityAudit: async (query: {
      event_type?: SecurityEventItem['eventType'];
      user_id?: string;
      since?: string;
      until?: string;
      limit: number;
      cursor?: string;
    }) => {
      try {
        return await audit.list({
          eventType: query.event_type,
          userId: query.user_id,
          since: query.since,
          until: query.until,
          limit: query.limit,
          cursor: query.cursor,
        });
      } catch (error) {
        if (error instanceof InvalidSecurityAuditQueryError) {
          throw new AppError('validation_failed', { details: [{ path: 'query', message: error.message }], cause: error });
        }
        throw error;
      }
    },

    verifySecurityAudit: () => audit.verifyChain(),

    /** Counters only: the event-count tables (per-minute buckets plus one boundary minute of rows per window), one small group-by. */
    metrics: async (): Promise<OpsMetrics> => {
      const [securityEvents, drains, active] = await Promise.all([audit.countsByType(), drainCounts(), store.countActiveSessions()]);
      return {
        generatedAt: new Date().toISOString(),
        securityEvents,
        auth: {
          loginFailures1h: securityEvents.login_failed.last1h,
          lockouts1h: securityEvents.account_locked.last1h,
          rateLimited1h: securityEvents.rate_limited.last1h,
        },
        drains,
        sessions: { active },
      };
    },

    /** Where the TOTP secrets are sealed (key ids are fingerprints, never key material). */
    mfaKeys: (): Promise<MfaKeys> => mfa.sealingState(),

    /**
     * Re-seals TOTP secrets still under an older key, for a few seconds at most (call again while
     * pendingReseal drops). One admin_action_audit row (`mfa.reseal`), written in the transaction
     * of the last batch.
     */
    resealMfaSecrets: async (caller: OpsCaller, meta: RequestMeta, input: { batchSize: number }): Promise<MfaReseal> => {
      const outcome = await mfa.resealPending({
        batchSize: input.batchSize,
        onFinished: (tx, result) =>
          adminAudit.record(tx, caller, meta, {
            action: 'mfa.reseal',
            // The current key's id (a fingerprint) is the target; details name the keys the
            // secrets came from by fingerprint too (no "key" in the names: the details scrubber
            // drops anything that sounds like a credential).
            target: result.currentKeyId,
            details: {
              batchSize: input.batchSize,
              batches: result.batches,
              resealed: result.resealed,
              pendingReseal: result.pendingReseal,
              unreadable: result.unreadable,
              resealedFrom: result.fromKeyIds,
            },
          }),
      });
      return {
        resealed: outcome.resealed,
        pendingReseal: outcome.pendingReseal,
        unreadable: outcome.unreadable,
        batches: outcome.batches,
        currentKeyId: outcome.currentKeyId,
      };
    },

    /**
     * Revokes one user's sessions or every session (token leak). Their websockets close on every
     * instance through the revocation trigger's notification.
     * @throws {AppError} not_found for an unknown user.
     */
    revokeSessions: (caller: OpsCaller, meta: RequestMeta, input: { userId: string; reason: string } | { all: true; reason: string }) =>
      pool.transaction(async (tx) => {
        if ('userId' in input) {
          await userOr404(tx, input.userId);
          const revoked = await auth.revokeUserSessionsIn(tx, input.userId, 'ops_revoked');
          await adminAudit.record(tx, caller, meta, {
            action: 'sessions.revoke',
            target: input.userId,
            details: { reason: input.reason, revoked: revoked.length },
          });
          await audit.record(tx, meta, {
            type: 'session_bulk_revocation',
            userId: input.userId,
            details: { reason: 'ops_revoked' satisfies RevocationReason, note: input.reason, by: caller.actor, revoked: revoked.length, sessionIds: revoked.slice(0, 50) },
          });
          return revoked.length;
        }
        const revoked = await auth.revokeAllSessionsIn(tx, 'ops_revoked_all');
        await adminAudit.record(tx, caller, meta, { action: 'sessions.revoke_all', target: '*', details: { reason: input.reason, revoked } });
        await audit.record(tx, meta, {
          type: 'session_bulk_revocation',
          userId: null,
          details: { reason: 'ops_revoked_all' satisfies RevocationReason, note: input.reason, by: caller.actor, revoked },
        });
        return revoked;
      }),

    /**
     * Sets a user's role. A change revokes the user's sessions: a session carries the role it was
     * issued with, so the new role applies from the next sign-in.
     * @throws {AppError} not_found
     */
    setRole: (caller: OpsCaller, meta: RequestMeta, userId: string, role: Role) =>
      pool.transaction(async (tx) => {
        const before = await userOr404(tx, userId);
        const changed = before.role !== role;
        const user = changed ? ((await auth.setRoleIn(tx, userId, role)) ?? before) : before;
        const revoked = changed ? await auth.revokeUserSessionsIn(tx, userId, 'role_changed') : [];
        await adminAudit.record(tx, caller, meta, {
          action: 'user.role',
          target: userId,
          details: { from: before.role, to: role, changed, revoked: revoked.length },
        });
        if (changed) {
          await audit.record(tx, meta, {
            type: 'role_changed',
            userId,
            details: { from: before.role, to: role, by: caller.actor, revoked: revoked.length },
          });
        }
        return { user: toPublicUser(user), revoked: revoked.length };
      }),

    /**
     * Requires a password reset at the next sign-in and revokes every session of the user.
     * @throws {AppError} not_found
     */
    forcePasswordReset: (caller: OpsCaller, meta: RequestMeta, userId: string) =>
      pool.transaction(async (tx) => {
        await userOr404(tx, userId);
        const user = await auth.requirePasswordResetIn(tx, userId);
        if (!user) throw new AppError('not_found');
        const revoked = await auth.revokeUserSessionsIn(tx, userId, 'password_reset_forced');
        await adminAudit.record(tx, caller, meta, { action: 'user.force_password_reset', target: userId, details: { revoked: revoked.length } });
        await audit.record(tx, meta, {
          type: 'password_reset_forced',
          userId,
          details: { by: caller.actor, revoked: revoked.length, sessionIds: revoked.slice(0, 50) },
        });
        return { user: toPublicUser(user), revoked: revoked.length };
      }),
  };
};

export type OpsService = ReturnType<typeof createOpsService>;
