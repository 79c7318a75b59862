/**
 * All SQL of the realtime feature: websocket tickets, chat messages, the chat write limit.
 * Schema and the rate-limit routine: app/db/migrations/0005_realtime.sql.
 */
import { sql, type CommonQueryMethods, type DatabasePool } from 'slonik';
import { z } from 'zod';

type Queryable = CommonQueryMethods;

const roleSchema = z.enum(['player', 'admin']);

const consumedTicketRow = z.object({
  user_id: z.string().uuid(),
  session_id: z.string().uuid(),
  role: roleSchema,
  display_name: z.string(),
  client_platform: z.string().nullable(),
  client_version: z.string().nullable(),
});
export type ConsumedTicket = z.infer<typeof consumedTicketRow>;

const ticketDiagnosisRow = z.object({
  user_id: z.string().uuid(),
  session_id: z.string().uuid(),
  reason: z.enum(['used', 'expired', 'session_revoked', 'session_expired', 'valid']),
});

const messageRow = z.object({
  id: z.string().uuid(),
  channel: z.string(),
  user_id: z.string().uuid(),
  display_name: z.string(),
  text: z.string(),
  client_msg_id: z.string().nullable(),
  sent_at: z.string(),
  /** sent_at with microseconds, for keyset cursors (ISO strings from the type parser keep milliseconds only). */
  sent_at_exact: z.string(),
});
export type MessageRow = z.infer<typeof messageRow>;

const rateLimitRow = z.object({
  outcome: z.enum(['allowed', 'rate_limited', 'muted']),
  retry_after_ms: z.number(),
  just_muted: z.boolean(),
  mute_seconds: z.number().nullable(),
  mute_level: z.number(),
  violations: z.number(),
});
export type RateLimitAttempt = z.infer<typeof rateLimitRow>;

const messageColumns = sql.fragment`
  id, channel, user_id, display_name, text, client_msg_id, sent_at,
  to_char(sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS sent_at_exact`;

export type ChatLimits = {
  max: number;
  windowSeconds: number;
  muteBaseSeconds: number;
  muteMaxSeconds: number;
  violationThreshold: number;
  violationWindowSeconds: number;
};

export const createRealtimeStore = (pool: DatabasePool) => ({
  pool,

  /**
   * Stores a ticket unless the session already has `maxOutstanding` unconsumed live tickets.
   * Returns false when the cap was hit (or the session is no longer active).
   */
  insertTicket: async (
    db: Queryable,
    ticket: { ticketHash: Buffer; userId: string; sessionId: string; ttlSeconds: number; maxOutstanding: number },
  ): Promise<boolean> => {
    const result = await db.query(sql.unsafe`
      INSERT INTO ws_tickets (ticket_hash, user_id, session_id, expires_at)
      SELECT ${sql.binary(ticket.ticketHash)}, ${ticket.userId}, ${ticket.sessionId}, now() + make_interval(secs => ${ticket.ttlSeconds})
      WHERE (
        SELECT count(*) FROM ws_tickets
        WHERE session_id = ${ticket.sessionId} AND consumed_at IS NULL AND expires_at > now()
      ) < ${ticket.maxOutstanding}`);
    return result.rowCount === 1;
  },

  /**
   * The one atomic redemption: marks the ticket consumed only if it is unused, unexpired and
   * its session is neither revoked nor expired. Concurrent redemptions (any instance) queue on
   * the ticket row; the first commits, the others re-check `consumed_at` and get no row.
   */
  consumeTicket: (db: Queryable, ticketHash: Buffer) =>
    db.maybeOne(sql.type(consumedTicketRow)`
      UPDATE ws_tickets t SET consumed_at = now()
      FROM user_sessions s, users u
      WHERE t.ticket_hash = ${sql.binary(ticketHash)}
        AND t.consumed_at IS NULL
        AND t.expires_at > now()
        AND s.id = t.session_id
        AND s.user_id = t.user_id
        AND s.revoked_at IS NULL
        AND s.expires_at > now()
        AND u.id = t.user_id
      RETURNING t.user_id, t.session_id, s.role, u.display_name, s.client_platform, s.client_version`),

  /** Why a redemption failed, for the audit trail (only on the failure path). */
  diagnoseTicket: (db: Queryable, ticketHash: Buffer) =>
    db.maybeOne(sql.type(ticketDiagnosisRow)`
      SELECT t.user_id, t.session_id,
        CASE
          WHEN s.revoked_at IS NOT NULL THEN 'session_revoked'
          WHEN t.consumed_at IS NOT NULL THEN 'used'
          WHEN t.expires_at <= now() THEN 'expired'
          WHEN s.expires_at <= now() THEN 'session_expired'
          ELSE 'valid'
        END AS reason
      FROM ws_tickets t JOIN user_sessions s ON s.id = t.session_id
      WHERE t.ticket_hash = ${sql.binary(ticketHash)}`),

  /** Among `sessionIds`, those that are revoked, expired or gone. */
  inactiveSessions: async (db: Queryable, sessionIds: readonly string[]): Promise<string[]> => {
    if (sessionIds.length === 0) return [];
    const rows = await db.any(sql.type(z.object({ id: z.string().uuid() }))`
      SELECT wanted.id FROM unnest(${sql.array([...sessionIds], 'uuid')}) AS wanted (id)
      LEFT JOIN user_sessions s ON s.id = wanted.id
      WHERE s.id IS NULL OR s.revoked_at IS NOT NULL OR s.expires_at <= now()`);
    return rows.map((row) => row.id);
  },

  /** The whole write-limit decision for one attempt; locks the user's row until the transaction ends. */
  attemptChatWrite: (db: Queryable, userId: string, limits: ChatLimits) =>
    db.one(sql.type(rateLimitRow)`
      SELECT outcome, retry_after_ms::int AS retry_after_ms, just_muted, mute_seconds, mute_level, violations
      FROM chat_rate_limit_attempt(
        ${userId}, ${limits.max}, ${limits.windowSeconds}, ${limits.muteBaseSeconds}, ${limits.muteMaxSeconds},
        ${limits.violationThreshold}, ${limits.violationWindowSeconds})`),

  findMessageByClientId: (db: Queryable, userId: string, clientMsgId: string) =>
    db.maybeOne(sql.type(messageRow)`
      SELECT ${messageColumns} FROM chat_messages WHERE user_id = ${userId} AND client_msg_id = ${clientMsgId}`),

  /** Inserts a message with the sender's current display name; null when the user is gone or the clientMsgId was already used. */
  insertMessage: (db: Queryable, message: { channel: string; userId: string; text: string; clientMsgId: string | null }) =>
    db.maybeOne(sql.type(messageRow)`
      INSERT INTO chat_messages (channel, user_id, display_name, text, client_msg_id)
      SELECT ${message.channel}, u.id, u.display_name, ${message.text}, ${message.clientMsgId}
      FROM users u WHERE u.id = ${message.userId}
      ON CONFLICT (user_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING
      RETURNING ${messageColumns}`),

  /** Newest first, strictly older than `before` in (sent_at, id) order. */
  listMessages: (db: Queryable, query: { channel: string; before?: { sentAt: string; id: string }; limit: number }) =>
    db.any(sql.type(messageRow)`
      SELECT ${messageColumns} FROM chat_messages
      WHERE channel = ${query.channel}
        ${query.before ? sql.fragment`AND (sent_at, id) < (${query.before.sentAt}::timestamptz, ${query.before.id}::uuid)` : sql.fragment``}
      ORDER BY sent_at DESC, id DESC
      LIMIT ${query.limit}`),

  /** Messages of `channels` sent after `since` (resynchronisation after a listener outage), oldest first. */
  messagesSince: (db: Queryable, query: { channels: readonly string[]; since: string; limit: number }) =>
    db.any(sql.type(messageRow)`
      SELECT ${messageColumns} FROM chat_messages
      WHERE channel = ANY(${sql.array([...query.channels], 'text')}) AND sent_at > ${query.since}::timestamptz
      ORDER BY sent_at, id
      LIMIT ${query.limit}`),

  /** Housekeeping: expired tickets and idle rate-limit rows. */
  sweep: async (db: Queryable) => {
    await db.query(sql.unsafe`DELETE FROM ws_tickets WHERE expires_at < now() - interval '10 minutes'`);
    await db.query(sql.unsafe`
      DELETE FROM chat_rate_limits
      WHERE updated_at < now() - interval '1 day' AND (muted_until IS NULL OR muted_until < now())`);
  },
});

export type RealtimeStore = ReturnType<typeof createRealtimeStore>;
