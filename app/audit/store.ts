/**
 * All SQL of the security-event trail. The schema, the hash chain and the immutability rules
 * live in app/db/migrations/0002_security_event_audit.sql; this module appends, walks the chain,
 * pages and counts. Rules (scrubbing, limits, cursors) belong to ./service.ts.
 */
import { createHash } from 'node:crypto';
import { sql, type DatabasePool, type FragmentSqlToken } from 'slonik';
import { z } from 'zod';
import { securityEventTypes, type ChainVerification, type Queryable, type SecurityEventType } from './types.js';

/** The anchor of an empty, never-archived chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** Rows hashed per round trip while walking the chain; memory stays bounded by this. */
export const VERIFY_BATCH_SIZE = 10_000;

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** What the service hands over for one append; everything else is set by the insert trigger. */
export type SecurityEventRowInput = {
  eventType: SecurityEventType;
  userId: string | null;
  sessionId: string | null;
  /** An address PostgreSQL's `inet` accepts, or null. */
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  /** Already scrubbed (see scrubDetails in ./service.ts). */
  details: JsonObject;
};

/** A keyset position: the row's created_at with microseconds (UTC, `…SS.ffffffZ`) and its id. */
export type SecurityAuditKeyset = { createdAt: string; id: string };

export type SecurityAuditListFilter = {
  eventType?: SecurityEventType;
  userId?: string;
  /** Inclusive lower bound (ISO-8601). */
  since?: string;
  /** Exclusive upper bound (ISO-8601). */
  until?: string;
  /** Rows strictly older than this position, in (created_at, id) order. */
  after?: SecurityAuditKeyset;
  limit: number;
};

const eventTypeSchema = z.enum(securityEventTypes);

const insertedRow = z.object({ id: z.string().uuid(), seq: z.bigint(), created_at: z.string() });
export type InsertedSecurityEvent = z.infer<typeof insertedRow>;

const eventRow = z.object({
  id: z.string().uuid(),
  seq: z.bigint(),
  event_type: eventTypeSchema,
  user_id: z.string().uuid().nullable(),
  session_id: z.string().uuid().nullable(),
  ip: z.string().nullable(),
  user_agent: z.string().nullable(),
  request_id: z.string().nullable(),
  details: z.record(z.unknown()),
  /** ISO-8601 with milliseconds (the pool's timestamptz parser). */
  created_at: z.string(),
  /** The same instant with microseconds, for keyset cursors. */
  created_at_exact: z.string(),
});
export type SecurityEventRow = z.infer<typeof eventRow>;

const countsRow = z.object({ event_type: eventTypeSchema, total: z.bigint(), last1h: z.number(), last24h: z.number() });
export type SecurityEventCountsRow = z.infer<typeof countsRow>;

const chainStateRow = z.object({
  anchor_seq: z.bigint(),
  anchor_hash: z.string(),
  archived_rows: z.bigint(),
  head_seq: z.bigint(),
  head_id: z.string().uuid().nullable(),
  head_hash: z.string(),
});
export type SecurityAuditChainState = z.infer<typeof chainStateRow>;

const verifyBatchRow = z.object({
  checked: z.number(),
  last_seq: z.bigint().nullable(),
  last_hash: z.string().nullable(),
  broken_id: z.string().uuid().nullable(),
  broken_position: z.number().nullable(),
});

/** created_at as text with microseconds in UTC; also the format inside the canonical hash text. */
const exactTimestamp = (column: FragmentSqlToken) =>
  sql.fragment`to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** The smallest bigint: the walk starts below any seq, so rows inserted out of band are seen too. */
const MIN_BIGINT = -(2n ** 63n);

/**
 * The fields of the canonical text, as PostgreSQL renders them (select `seq::text`, `id::text`,
 * `ip::text` — inet text keeps the mask —, `details::text` and created_at with microseconds).
 */
export type CanonicalEventFields = {
  seq: string;
  id: string;
  eventType: string;
  userId: string | null;
  sessionId: string | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  detailsText: string;
  createdAtExact: string;
  prevHash: string;
};

/**
 * The canonical text of a row, byte for byte what the SQL function `security_event_canonical`
 * produces: jsonb renders an array of strings and nulls as `["a", null, …]` (", " between
 * elements, only `"`, `\` and control characters escaped — the same escapes as JSON.stringify).
 * For verifying an exported archive outside the database.
 */
export const canonicalEventText = (fields: CanonicalEventFields): string =>
  `[${[
    'karaxas.security_event.v1',
    fields.seq,
    fields.id,
    fields.eventType,
    fields.userId,
    fields.sessionId,
    fields.ip,
    fields.userAgent,
    fields.requestId,
    fields.detailsText,
    fields.createdAtExact,
    fields.prevHash,
  ]
    .map((value) => (value === null ? 'null' : JSON.stringify(value)))
    .join(', ')}]`;

/** The row hash as the insert trigger computes it (lower-hex SHA-256 of the UTF-8 canonical text). */
export const eventHash = (fields: CanonicalEventFields): string =>
  createHash('sha256').update(canonicalEventText(fields), 'utf8').digest('hex');

const windowStart = {
  h1: sql.fragment`now() - interval '1 hour'`,
  h24: sql.fragment`now() - interval '24 hours'`,
};
/** The end of the minute (UTC, as the trigger buckets) that a window's start falls in. */
const boundaryEnd = (start: FragmentSqlToken) => sql.fragment`date_trunc('minute', ${start}, 'UTC') + interval '1 minute'`;

/**
 * The metrics counts from the per-minute counters (migration 0008). For each window
 * [now() - w, now()]: the buckets of the minutes after the one the window starts in (wholly
 * inside it) plus a count(*) of the raw rows of that boundary minute from the window's start on,
 * a range scan of at most one minute of rows. That equals `count(*) WHERE event_type = … AND
 * created_at >= now() - w`, whatever the last day's volume: one pass over the bucket table (at most
 * 48 hours × the event types, pruned by the trigger) and one over the rows of two minutes.
 *
 * The bounds on security_event_audit are expressions of now(), which the planner evaluates when it
 * estimates: the estimates stay those of one minute of rows however big the table is (bounds it
 * cannot see make it assume a fixed share of the table, whose cost grows with the table until JIT
 * compilation kicks in — a second per call), and nothing runs once per row of the never-analysed
 * counter table.
 *
 * `buckets_exact` is false when an archive cut reached into the window: the buckets still count
 * the archived rows. Archived rows are a seq prefix and seq order is created_at order, so the first
 * row left in the table tells; with everything archived, false too. See `countsByType`.
 *
 * Minutes are UTC minutes; `interval '24 hours'`, not '1 day', so the session's daylight-saving
 * rules play no part. Exported for the tests' plan checks and the bench's raw-pg baseline.
 */
export const countsByTypeQuery = sql.type(countsRow.extend({ buckets_exact: z.boolean() }))`
  WITH minutes AS MATERIALIZED (
    -- (SELECT …): computed once, not per bucket row (the time zone makes date_trunc cost).
    SELECT n.event_type,
           sum(n.count) FILTER (WHERE n.minute >= (SELECT ${boundaryEnd(windowStart.h1)})) AS after1h,
           sum(n.count) AS after24h
      FROM security_event_counts_by_minute n
     WHERE n.minute >= (SELECT ${boundaryEnd(windowStart.h24)})
     GROUP BY n.event_type
  ), edges AS MATERIALIZED (
    SELECT e.event_type,
           count(*) FILTER (WHERE e.created_at >= ${windowStart.h1} AND e.created_at < ${boundaryEnd(windowStart.h1)}) AS in1h,
           count(*) FILTER (WHERE e.created_at >= ${windowStart.h24} AND e.created_at < ${boundaryEnd(windowStart.h24)}) AS in24h
      FROM security_event_audit e
     WHERE (e.created_at >= ${windowStart.h1} AND e.created_at < ${boundaryEnd(windowStart.h1)})
        OR (e.created_at >= ${windowStart.h24} AND e.created_at < ${boundaryEnd(windowStart.h24)})
     GROUP BY e.event_type
  ), cut AS MATERIALIZED (
    SELECT a.last_seq = 0
           OR coalesce((SELECT r.created_at FROM security_event_audit r WHERE r.seq > a.last_seq ORDER BY r.seq LIMIT 1)
                         < ${boundaryEnd(windowStart.h24)}, false) AS buckets_exact
      FROM security_event_audit_anchor a
     WHERE a.singleton
  )
  SELECT c.event_type, c.total,
         (coalesce(m.after1h, 0) + coalesce(x.in1h, 0))::int AS last1h,
         (coalesce(m.after24h, 0) + coalesce(x.in24h, 0))::int AS last24h,
         (SELECT buckets_exact FROM cut) AS buckets_exact
    FROM security_event_counts c
    LEFT JOIN minutes m ON m.event_type = c.event_type
    LEFT JOIN edges x ON x.event_type = c.event_type
   ORDER BY c.event_type`;

/**
 * The windows by their definition: count(*) of the rows since now() - w, range scans over the
 * (event_type, created_at) index, costing the rows of the window. Only for the rare case where an
 * archive cut reached into the last 24 hours (`archive-security-audit --hot-days 0` or a recent
 * `--before`; the default keeps SECURITY_AUDIT_HOT_DAYS ≥ 1 day), until the cut is a day old.
 */
const countsByTypeCountStarQuery = sql.type(countsRow)`
  SELECT c.event_type, c.total,
         (SELECT count(*) FROM security_event_audit a
           WHERE a.event_type = c.event_type AND a.created_at >= now() - interval '1 hour')::int AS last1h,
         (SELECT count(*) FROM security_event_audit a
           WHERE a.event_type = c.event_type AND a.created_at >= now() - interval '24 hours')::int AS last24h
    FROM security_event_counts c
   ORDER BY c.event_type`;

export const createSecurityAuditStore = (pool: DatabasePool) => ({
  pool,

  /**
   * Appends one row on `connection` (the caller's transaction). The insert trigger takes the chain
   * lock, which is held until that transaction ends.
   * @throws CheckIntegrityConstraintViolationError for an unknown event type or oversized fields.
   * @throws InvalidInputError for a malformed user or session id.
   * @throws the database error with SQLSTATE 40001 when `connection` is a REPEATABLE READ or
   *   SERIALIZABLE transaction whose snapshot predates another append (retry the transaction;
   *   slonik's `transaction()` does so by itself).
   */
  insert: (connection: Queryable, row: SecurityEventRowInput) =>
    connection.one(sql.type(insertedRow)`
      INSERT INTO security_event_audit (event_type, user_id, session_id, ip, user_agent, request_id, details)
      VALUES (
        ${row.eventType}, ${row.userId}::uuid, ${row.sessionId}::uuid, ${row.ip}::inet,
        ${row.userAgent}, ${row.requestId}, ${sql.jsonb(row.details)}
      )
      RETURNING id, seq, created_at`),

  /**
   * Walks the chain in seq order from the archive anchor to the head recorded by the insert
   * trigger, `batchSize` rows per query. Hashes are recomputed in the database, so one summary row
   * per batch reaches Node and memory stays flat however long the chain is. A row is broken when
   * its stored hash differs from the recomputed one, or its prev_hash differs from the previous
   * row's hash (the anchor's for the first row).
   *
   * Each batch is its own short statement rather than one long snapshot: a snapshot held for the
   * whole walk (tens of seconds at millions of rows) would keep the head and counter rows from
   * being pruned and slow every append meanwhile. This is still exact: every row up to the head
   * read at the start has committed and rows only ever leave from the start of the chain, so the
   * only thing that can change under the walk is an archive cut overtaking it — which shows as a
   * break with a moved anchor, and the walk starts again from the new anchor.
   *
   * Also broken: the chain ending before the head (rows cut from the end — `firstBrokenId` is the
   * recorded head's id, a row no longer in the table), or a row beyond the head (inserted without
   * the trigger).
   *
   * `checked` counts the rows walked, up to and including the first broken one (the walk stops there).
   */
  verifyChain: async ({ batchSize = VERIFY_BATCH_SIZE }: { batchSize?: number } = {}): Promise<ChainVerification> => {
    const readState = () =>
      pool.one(sql.type(chainStateRow)`
        SELECT a.last_seq AS anchor_seq, a.last_hash AS anchor_hash, a.archived_rows,
               h.last_seq AS head_seq, h.last_id AS head_id, h.last_hash AS head_hash
          FROM security_event_audit_anchor a, security_event_audit_head h`);

    const walk = async (state: SecurityAuditChainState): Promise<ChainVerification> => {
      let afterSeq = MIN_BIGINT;
      let previousHash = state.anchor_hash;
      let lastSeq = state.anchor_seq;
      let checked = 0;
      for (;;) {
        const batch = await pool.one(sql.type(verifyBatchRow)`
          WITH batch AS MATERIALIZED (
            SELECT id, seq, prev_hash, hash,
                   security_event_hash(seq, id, event_type, user_id, session_id, ip, user_agent,
                                       request_id, details, created_at, prev_hash) AS recomputed
              FROM security_event_audit
             WHERE seq > ${afterSeq} AND seq <= ${state.head_seq}
             ORDER BY seq
             LIMIT ${batchSize}
          ), chained AS MATERIALIZED (
            SELECT id, seq, hash,
                   row_number() OVER (ORDER BY seq) AS position,
                   hash <> recomputed OR prev_hash <> coalesce(lag(hash) OVER (ORDER BY seq), ${previousHash}) AS broken
              FROM batch
          )
          SELECT (SELECT count(*) FROM chained)::int AS checked,
                 (SELECT seq FROM chained ORDER BY seq DESC LIMIT 1) AS last_seq,
                 (SELECT hash FROM chained ORDER BY seq DESC LIMIT 1) AS last_hash,
                 (SELECT id FROM chained WHERE broken ORDER BY seq LIMIT 1) AS broken_id,
                 (SELECT position FROM chained WHERE broken ORDER BY seq LIMIT 1)::int AS broken_position`);
        if (batch.broken_id !== null) {
          return { ok: false, checked: checked + (batch.broken_position ?? batch.checked), firstBrokenId: batch.broken_id };
        }
        checked += batch.checked;
        if (batch.last_seq === null || batch.last_hash === null) break;
        afterSeq = batch.last_seq;
        lastSeq = batch.last_seq;
        previousHash = batch.last_hash;
        if (batch.checked < batchSize) break;
      }
      if (lastSeq !== state.head_seq || previousHash !== state.head_hash) return { ok: false, checked, firstBrokenId: state.head_id };
      // One statement, one snapshot: an appender moves the head in the same transaction as its row,
      // so a row beyond the current head came in with the trigger disabled.
      const stray = await pool.maybeOneFirst(sql.type(z.object({ id: z.string().uuid() }))`
        SELECT id FROM security_event_audit
         WHERE seq > (SELECT last_seq FROM security_event_audit_head)
         ORDER BY seq LIMIT 1`);
      return stray === null ? { ok: true, checked, firstBrokenId: null } : { ok: false, checked, firstBrokenId: stray };
    };

    for (let attempt = 0; ; attempt += 1) {
      const state = await readState();
      const result = await walk(state);
      if (result.ok || attempt === 2) return result;
      const now = await readState();
      if (now.anchor_seq === state.anchor_seq) return result;
    }
  },

  /** One page, newest first; callers ask for one row more than they show to learn whether more exist. */
  list: (filter: SecurityAuditListFilter) => {
    const conditions: FragmentSqlToken[] = [];
    if (filter.eventType !== undefined) conditions.push(sql.fragment`event_type = ${filter.eventType}`);
    if (filter.userId !== undefined) conditions.push(sql.fragment`user_id = ${filter.userId}::uuid`);
    if (filter.since !== undefined) conditions.push(sql.fragment`created_at >= ${filter.since}::timestamptz`);
    if (filter.until !== undefined) conditions.push(sql.fragment`created_at < ${filter.until}::timestamptz`);
    if (filter.after !== undefined) {
      // A row comparison, which the (…, created_at DESC, id DESC) indexes serve as one range scan.
      conditions.push(sql.fragment`(created_at, id) < (${filter.after.createdAt}::timestamptz, ${filter.after.id}::uuid)`);
    }
    const where = conditions.length > 0 ? sql.join(conditions, sql.fragment` AND `) : sql.fragment`TRUE`;
    return pool.any(sql.type(eventRow)`
      SELECT id, seq, event_type, user_id, session_id, host(ip) AS ip, user_agent, request_id, details,
             created_at, ${exactTimestamp(sql.fragment`created_at`)} AS created_at_exact
        FROM security_event_audit
       WHERE ${where}
       ORDER BY created_at DESC, id DESC
       LIMIT ${filter.limit}`);
  },

  /**
   * Per event type that ever occurred: all-time total (counter table, archived rows included) and
   * the rows of the last hour / 24 hours, from the per-minute counters at a cost independent of the
   * volume ({@link countsByTypeQuery}); by count(*) while an archive cut lies within the last day.
   */
  countsByType: async (): Promise<SecurityEventCountsRow[]> => {
    const rows = await pool.any(countsByTypeQuery);
    if (rows.every((row) => row.buckets_exact)) return rows.map(({ buckets_exact: _, ...counts }) => counts);
    return [...(await pool.any(countsByTypeCountStarQuery))];
  },

  /** The archive anchor and the chain head. */
  chainState: () =>
    pool.one(sql.type(chainStateRow)`
      SELECT a.last_seq AS anchor_seq, a.last_hash AS anchor_hash, a.archived_rows,
             h.last_seq AS head_seq, h.last_id AS head_id, h.last_hash AS head_hash
        FROM security_event_audit_anchor a, security_event_audit_head h`),

  /**
   * Deletes the rows up to `throughSeq` through `archive_security_events`, which checks that they
   * are exactly `expectedCount` rows ending in a row with hash `expectedLastHash`, chained intact
   * from the anchor, and then moves the anchor. Call only after the export was verified.
   * @returns the number of rows deleted.
   * @throws the database error, SQLSTATE 22000 with a message naming the mismatch, having deleted
   *   nothing; 42501 when the connecting role may not execute the routine.
   */
  archiveThrough: async (throughSeq: bigint, expectedCount: bigint, expectedLastHash: string): Promise<bigint> =>
    pool.oneFirst(sql.type(z.object({ deleted: z.bigint() }))`
      SELECT archive_security_events(${throughSeq}, ${expectedCount}, ${expectedLastHash}) AS deleted`),
});

export type SecurityAuditStore = ReturnType<typeof createSecurityAuditStore>;
