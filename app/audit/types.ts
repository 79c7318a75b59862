/**
 * The security-event trail's public types (contract §8). Other features record events through
 * the audit service, inside their own transaction, so that an event (and its log line) exists if
 * and only if the change it describes committed.
 */
import type { CommonQueryMethods } from 'slonik';

export const securityEventTypes = [
  'user_registered',
  'login_succeeded',
  'login_failed',
  'account_locked',
  'rate_limited',
  'mfa_enrolled',
  'mfa_enabled',
  'mfa_disabled',
  'mfa_failed',
  'mfa_replay_rejected',
  'recovery_code_used',
  'refresh_rotated',
  'refresh_token_grace_reuse',
  'refresh_token_reuse_detected',
  'session_revoked',
  'session_bulk_revocation',
  'logout',
  'ws_ticket_issued',
  'ws_ticket_rejected',
  'ws_origin_rejected',
  'chat_rate_limited',
  'chat_muted',
  'password_reset_forced',
  'password_changed',
  'ops_auth_failed',
  'role_changed',
  'recovery_codes_regenerated',
] as const;

export type SecurityEventType = (typeof securityEventTypes)[number];

/** Who/where a request came from; carried from the HTTP layer into services. */
export type RequestMeta = {
  requestId: string;
  ip: string | null;
  userAgent: string | null;
};

export type SecurityEventInput = {
  type: SecurityEventType;
  userId?: string | null;
  sessionId?: string | null;
  /** Free-form context; keys that look like credentials are removed before storage. */
  details?: Record<string, unknown>;
};

export type SecurityEvent = {
  id: string;
  eventType: SecurityEventType;
  userId: string | null;
  sessionId: string | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
  createdAt: string;
};

export type ChainVerification = { ok: boolean; checked: number; firstBrokenId: string | null };

/** Any slonik connection: the pool, a pooled connection or a transaction. */
export type Queryable = CommonQueryMethods;

export type SecurityAuditService = {
  /**
   * Appends one event using `connection`, which should be the caller's transaction.
   * Appending serialises with other appenders until that transaction ends (the hash chain
   * must not fork), so call it last in the transaction. The event's log line follows the
   * transaction's COMMIT, and never comes for a transaction that rolled back; `connection`
   * must therefore come from the commit-hooks pool (app/db/after-commit.ts).
   */
  record: (connection: Queryable, meta: RequestMeta, event: SecurityEventInput) => Promise<void>;
  /** Walks the hash chain from the archive anchor and reports the first broken row. */
  verifyChain: () => Promise<ChainVerification>;
};

/** Filters of the ops security-audit query (contract §7 `GET /ops/release/security-audit`). */
export type SecurityAuditQuery = {
  eventType?: SecurityEventType;
  userId?: string;
  /** Inclusive lower bound on created_at. */
  since?: string | Date;
  /** Exclusive upper bound on created_at. */
  until?: string | Date;
  /** 1 to 500; 50 when absent. */
  limit?: number;
  /** The `nextCursor` of the previous page (opaque). */
  cursor?: string;
};

/** A page, newest first; `nextCursor` is null on the last page. */
export type SecurityEventPage = { items: SecurityEvent[]; nextCursor: string | null };

/** Per event type: rows of the last hour / 24 hours, and the all-time total (archived rows included). */
export type SecurityEventCounts = Record<SecurityEventType, { last1h: number; last24h: number; total: number }>;

/** The read side the ops API uses, next to {@link SecurityAuditService}. */
export type SecurityAuditQueries = {
  list: (query: SecurityAuditQuery) => Promise<SecurityEventPage>;
  countsByType: () => Promise<SecurityEventCounts>;
};
