/**
 * All SQL of the ops feature: the append-only admin action trail (contract §7, §8) and the reads
 * the ops metrics need beyond the security-event counters. The schema is in
 * app/db/migrations/0006_release_ops.sql.
 */
import { sql, type CommonQueryMethods, type DatabasePool, type FragmentSqlToken } from 'slonik';
import { z } from 'zod';

type Queryable = CommonQueryMethods;

export type JsonObject = { [key: string]: unknown };

/** What one mutating ops call leaves behind. */
export type AdminActionInput = {
  actor: string;
  action: string;
  target: string | null;
  details: JsonObject;
  requestId: string | null;
  /** An address PostgreSQL's `inet` accepts, or null. */
  ip: string | null;
};

const adminActionRow = z.object({
  id: z.string().uuid(),
  actor: z.string(),
  action: z.string(),
  target: z.string().nullable(),
  details: z.record(z.unknown()),
  request_id: z.string().nullable(),
  ip: z.string().nullable(),
  created_at: z.string(),
  /** created_at with microseconds (UTC), for keyset cursors. */
  created_at_exact: z.string(),
});
export type AdminActionRow = z.infer<typeof adminActionRow>;

/** A keyset position: created_at with microseconds (`…SS.ffffffZ`) and the id. */
export type Keyset = { createdAt: string; id: string };

export type AdminActionFilter = {
  action?: string;
  actor?: string;
  /** Inclusive (ISO-8601). */
  since?: string;
  /** Exclusive (ISO-8601). */
  until?: string;
  /** Rows strictly older than this position. */
  after?: Keyset;
  limit: number;
};

const adminActionColumns = sql.fragment`
  id, actor, action, target, details, request_id, host(ip) AS ip, created_at,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at_exact`;

export const createOpsStore = (pool: DatabasePool) => ({
  pool,

  /** Appends one admin action on `db` (the transaction of the change it describes). */
  insertAdminAction: (db: Queryable, action: AdminActionInput) =>
    db.one(sql.type(adminActionRow)`
      INSERT INTO admin_action_audit (actor, action, target, details, request_id, ip)
      VALUES (${action.actor}, ${action.action}, ${action.target}, ${sql.jsonb(action.details as never)},
              ${action.requestId}, ${action.ip}::inet)
      RETURNING ${adminActionColumns}`),

  /**
   * One page newest first; callers ask for one row more than they show. Each filter combination
   * is one range scan of a (filter, created_at DESC, id DESC) index.
   */
  listAdminActions: (filter: AdminActionFilter) => {
    const conditions: FragmentSqlToken[] = [];
    if (filter.action !== undefined) conditions.push(sql.fragment`action = ${filter.action}`);
    if (filter.actor !== undefined) conditions.push(sql.fragment`actor = ${filter.actor}`);
    if (filter.since !== undefined) conditions.push(sql.fragment`created_at >= ${filter.since}::timestamptz`);
    if (filter.until !== undefined) conditions.push(sql.fragment`created_at < ${filter.until}::timestamptz`);
    if (filter.after !== undefined) {
      conditions.push(sql.fragment`(created_at, id) < (${filter.after.createdAt}::timestamptz, ${filter.after.id}::uuid)`);
    }
    const where = conditions.length > 0 ? sql.join(conditions, sql.fragment` AND `) : sql.fragment`TRUE`;
    return pool.any(sql.type(adminActionRow)`
      SELECT ${adminActionColumns}
        FROM admin_action_audit
       WHERE ${where}
       ORDER BY created_at DESC, id DESC
       LIMIT ${filter.limit}`);
  },

  /** Active sessions: an index-only range over the partial index of unrevoked sessions. */
  countActiveSessions: () =>
    pool.oneFirst(sql.type(z.object({ active: z.number() }))`
      SELECT count(*)::int AS active FROM user_sessions WHERE revoked_at IS NULL AND expires_at > now()`),
});

export type OpsStore = ReturnType<typeof createOpsStore>;
