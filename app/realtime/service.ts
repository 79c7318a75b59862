/**
 * Realtime rules: one-time websocket tickets and chat (validation, the shared write limit with
 * mutes, storage and cross-instance publication). The websocket transport is ./gateway.ts; the
 * HTTP routes are ./routes.ts; all SQL is in ./store.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { DatabasePool } from 'slonik';
import type { RequestMeta, SecurityAuditService } from '../audit/types.js';
import type { AuthContext } from '../auth/service.js';
import type { Config } from '../config/index.js';
import type { NotificationHub } from '../db/notifications.js';
import { AppError, type ErrorDetail } from '../http/errors.js';
import type { Logger } from '../logger.js';
import { channelNamePattern, clientMsgIdPattern, validateChatText, type ChatMessage, type ChatPage, type WsTicket } from './schemas.js';
import type { ChatLimits, ConsumedTicket, MessageRow, RealtimeStore } from './store.js';

/** Notification channel of the chat fan-out: every stored message, to every instance. */
export const CHAT_NOTIFY_CHANNEL = 'karaxas_chat';

const TICKET_PREFIX = 'kxt_';
/** `kxt_` + 32 random bytes in base64url. */
const ticketPattern = /^kxt_[A-Za-z0-9_-]{43}$/;
/** Unconsumed live tickets one session may hold; more is a client bug or abuse. */
const MAX_OUTSTANDING_TICKETS = 20;

/**
 * Refused upgrades recorded per minute and per user (a known ticket: used, expired, revoked)
 * or per client address (unknown or malformed tickets, bad origins). Beyond it they are counted, not
 * recorded one by one: a flood of bad tickets must not turn into a flood of appends to the
 * hash-chained trail (appends serialise). The next recorded event carries the count.
 */
const REJECTIONS_RECORDED_PER_MINUTE = 20;

/** A send rejected by the write limit this many times within the violation window mutes the user. */
export const CHAT_VIOLATION_THRESHOLD = 3;
export const CHAT_VIOLATION_WINDOW_SECONDS = 60;

export type SendOutcome =
  | { kind: 'sent'; message: ChatMessage; duplicate: boolean }
  | { kind: 'rate_limited'; retryAfter: number }
  | { kind: 'muted'; retryAfter: number };

export type TicketRedemption =
  | { ok: true; ticket: ConsumedTicket }
  | { ok: false; reason: 'malformed' | 'unknown' | 'used' | 'expired' | 'session_revoked' | 'session_expired' | 'raced' };

export type RealtimeDeps = {
  pool: DatabasePool;
  store: RealtimeStore;
  audit: SecurityAuditService;
  hub: NotificationHub;
  config: Pick<Config, 'tokens' | 'chat'>;
  logger: Logger;
};

/** Thrown inside the send transaction to roll it back when a concurrent retry stored the message first. */
class DuplicateSend extends Error {}

const sha256 = (value: string) => createHash('sha256').update(value).digest();

export const toChatMessage = (row: MessageRow): ChatMessage => ({
  id: row.id,
  channel: row.channel,
  userId: row.user_id,
  displayName: row.display_name,
  text: row.text,
  sentAt: row.sent_at,
  clientMsgId: row.client_msg_id,
});

/** Cursor = base64url JSON of the last item's exact (sent_at, id). Opaque to clients. */
const encodeCursor = (row: MessageRow) => Buffer.from(JSON.stringify([row.sent_at_exact, row.id])).toString('base64url');

const decodeCursor = (cursor: string): { sentAt: string; id: string } => {
  try {
    const [sentAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [unknown, unknown];
    if (
      typeof sentAt === 'string' &&
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/.test(sentAt) &&
      typeof id === 'string' &&
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)
    ) {
      return { sentAt, id };
    }
  } catch {
    // fall through
  }
  throw new AppError('validation_failed', { details: [{ path: 'query.before', message: 'Invalid cursor' }] });
};

export const createRealtimeService = (deps: RealtimeDeps) => {
  const { pool, store, audit, hub, config, logger } = deps;
  const ttlSeconds = Math.min(60, config.tokens.wsTicketTtlSeconds);
  const limits: ChatLimits = {
    max: config.chat.rateLimitMax,
    windowSeconds: config.chat.rateLimitWindowSeconds,
    muteBaseSeconds: config.chat.muteBaseSeconds,
    muteMaxSeconds: config.chat.muteMaxSeconds,
    violationThreshold: CHAT_VIOLATION_THRESHOLD,
    violationWindowSeconds: CHAT_VIOLATION_WINDOW_SECONDS,
  };

  /**
   * Mutes known to this instance, so that a muted user's further sends are refused without a
   * database round trip. The database stays the authority (another instance may have muted).
   */
  const knownMutes = new Map<string, number>();
  const mutedLocally = (userId: string): number | undefined => {
    const until = knownMutes.get(userId);
    if (until === undefined) return undefined;
    const remaining = until - Date.now();
    if (remaining <= 0) {
      knownMutes.delete(userId);
      return undefined;
    }
    return Math.ceil(remaining / 1000);
  };

  const rejectionBudgets = new Map<string, { windowStart: number; recorded: number; suppressed: number }>();
  /** Whether to record this refusal, and how many were left unrecorded before it. */
  const rejectionBudget = (meta: RequestMeta, userId?: string): { record: boolean; suppressed: number } => {
    const key = userId !== undefined ? `user:${userId}` : `ip:${meta.ip ?? 'unknown'}`;
    const now = Date.now();
    let budget = rejectionBudgets.get(key);
    if (!budget || now - budget.windowStart >= 60_000) {
      const suppressed = budget?.suppressed ?? 0;
      budget = { windowStart: now, recorded: 0, suppressed: 0 };
      rejectionBudgets.set(key, budget);
      budget.recorded += 1;
      return { record: true, suppressed };
    }
    if (budget.recorded < REJECTIONS_RECORDED_PER_MINUTE) {
      budget.recorded += 1;
      return { record: true, suppressed: 0 };
    }
    if (budget.suppressed === 0) logger.warn({ ip: meta.ip, userId }, 'websocket upgrade refusals are no longer recorded one by one this minute');
    budget.suppressed += 1;
    return { record: false, suppressed: 0 };
  };

  const service = {
    ticketTtlSeconds: ttlSeconds,

    /** Issues a one-time ticket for the caller's session. @throws {AppError} rate_limited (too many outstanding), unauthorized */
    issueTicket: (meta: RequestMeta, auth: AuthContext): Promise<WsTicket> =>
      pool.transaction(async (tx) => {
        const ticket = `${TICKET_PREFIX}${randomBytes(32).toString('base64url')}`;
        const stored = await store.insertTicket(tx, {
          ticketHash: sha256(ticket),
          userId: auth.userId,
          sessionId: auth.sessionId,
          ttlSeconds,
          maxOutstanding: MAX_OUTSTANDING_TICKETS,
        });
        if (!stored) {
          throw new AppError('rate_limited', {
            headers: {
              'Retry-After': String(ttlSeconds),
              'RateLimit-Limit': String(MAX_OUTSTANDING_TICKETS),
              'RateLimit-Remaining': '0',
              'RateLimit-Reset': String(ttlSeconds),
            },
          });
        }
        await audit.record(tx, meta, { type: 'ws_ticket_issued', userId: auth.userId, sessionId: auth.sessionId, details: { expiresIn: ttlSeconds } });
        return { ticket, expiresIn: ttlSeconds };
      }),

    /**
     * Redeems a ticket (one atomic statement); on failure records `ws_ticket_rejected` with the
     * reason. Never throws for a bad ticket.
     */
    redeemTicket: async (meta: RequestMeta, ticket: string | undefined): Promise<TicketRedemption> => {
      if (ticket === undefined || !ticketPattern.test(ticket)) {
        await service.recordTicketRejected(meta, { reason: 'malformed' });
        return { ok: false, reason: 'malformed' };
      }
      const ticketHash = sha256(ticket);
      const consumed = await store.consumeTicket(pool, ticketHash);
      if (consumed) return { ok: true, ticket: consumed };
      const diagnosis = await store.diagnoseTicket(pool, ticketHash);
      // 'valid' here means a concurrent redemption won between the two reads (it reads as used).
      const reason = diagnosis === null ? 'unknown' : diagnosis.reason === 'valid' ? 'raced' : diagnosis.reason;
      await service.recordTicketRejected(meta, { reason, userId: diagnosis?.user_id, sessionId: diagnosis?.session_id });
      return { ok: false, reason };
    },

    recordTicketRejected: async (meta: RequestMeta, rejection: { reason: string; userId?: string; sessionId?: string }) => {
      const budget = rejectionBudget(meta, rejection.userId);
      if (!budget.record) return;
      await audit
        .record(pool, meta, {
          type: 'ws_ticket_rejected',
          userId: rejection.userId ?? null,
          sessionId: rejection.sessionId ?? null,
          details: { reason: rejection.reason, ...(budget.suppressed > 0 ? { unrecordedBefore: budget.suppressed } : {}) },
        })
        .catch((error: unknown) => logger.warn({ err: error }, 'could not record ws_ticket_rejected'));
    },

    recordOriginRejected: async (meta: RequestMeta, origin: string) => {
      const budget = rejectionBudget(meta);
      if (!budget.record) return;
      await audit
        .record(pool, meta, {
          type: 'ws_origin_rejected',
          details: { origin: origin.slice(0, 256), ...(budget.suppressed > 0 ? { unrecordedBefore: budget.suppressed } : {}) },
        })
        .catch((error: unknown) => logger.warn({ err: error }, 'could not record ws_origin_rejected'));
    },

    /** Field problems of a send, or undefined when it is valid (text normalised in place by {@link sendMessage}). */
    validateSend: (input: { channel: unknown; text: unknown; clientMsgId?: unknown }): ErrorDetail[] => {
      const details: ErrorDetail[] = [];
      if (typeof input.channel !== 'string' || !channelNamePattern.test(input.channel)) {
        details.push({ path: 'channel', message: 'Invalid channel name' });
      }
      const text = validateChatText(input.text, config.chat.maxMessageLength);
      if (!text.ok) details.push({ path: 'text', message: text.message });
      if (input.clientMsgId !== undefined && input.clientMsgId !== null) {
        if (typeof input.clientMsgId !== 'string' || !clientMsgIdPattern.test(input.clientMsgId)) {
          details.push({ path: 'clientMsgId', message: 'Invalid clientMsgId' });
        }
      }
      return details;
    },

    /**
     * Stores and publishes one message, within the sender's write limit. A repeated
     * `clientMsgId` returns the stored message (`duplicate`) without counting or publishing again.
     * @throws {AppError} validation_failed
     */
    sendMessage: async (
      meta: RequestMeta,
      sender: { userId: string; sessionId: string },
      input: { channel: string; text: string; clientMsgId?: string | null },
    ): Promise<SendOutcome> => {
      const details = service.validateSend(input);
      if (details.length > 0) throw new AppError('validation_failed', { details });
      const text = (validateChatText(input.text, config.chat.maxMessageLength) as { text: string }).text;
      const clientMsgId = input.clientMsgId ?? null;

      if (clientMsgId !== null) {
        const existing = await store.findMessageByClientId(pool, sender.userId, clientMsgId);
        if (existing) return { kind: 'sent', message: toChatMessage(existing), duplicate: true };
      }
      const localMute = mutedLocally(sender.userId);
      if (localMute !== undefined) return { kind: 'muted', retryAfter: localMute };

      let outcome: SendOutcome;
      try {
        outcome = await pool.transaction(async (tx): Promise<SendOutcome> => {
          // Locks the user's limit row: this user's sends are serialised on every instance.
          const attempt = await store.attemptChatWrite(tx, sender.userId, limits);
          const retryAfter = Math.max(1, Math.ceil(attempt.retry_after_ms / 1000));
          if (attempt.outcome === 'muted' && !attempt.just_muted) return { kind: 'muted', retryAfter };
          if (attempt.outcome === 'rate_limited' || attempt.outcome === 'muted') {
            await audit.record(tx, meta, {
              type: 'chat_rate_limited',
              userId: sender.userId,
              sessionId: sender.sessionId,
              details: { channel: input.channel, violations: attempt.violations, retryAfter },
            });
            if (attempt.just_muted) {
              await audit.record(tx, meta, {
                type: 'chat_muted',
                userId: sender.userId,
                sessionId: sender.sessionId,
                details: { muteSeconds: attempt.mute_seconds, muteLevel: attempt.mute_level },
              });
              return { kind: 'muted', retryAfter };
            }
            return { kind: 'rate_limited', retryAfter };
          }
          const row = await store.insertMessage(tx, { channel: input.channel, userId: sender.userId, text, clientMsgId });
          // No row: a concurrent retry of this clientMsgId won (roll back the count), or the user is gone.
          if (!row) throw clientMsgId === null ? new AppError('unauthorized') : new DuplicateSend();
          const message = toChatMessage(row);
          await hub.publish(tx, CHAT_NOTIFY_CHANNEL, JSON.stringify(message));
          return { kind: 'sent', message, duplicate: false };
        });
      } catch (error) {
        if (!(error instanceof DuplicateSend) || clientMsgId === null) throw error;
        const existing = await store.findMessageByClientId(pool, sender.userId, clientMsgId);
        if (!existing) throw new AppError('unauthorized');
        return { kind: 'sent', message: toChatMessage(existing), duplicate: true };
      }
      if (outcome.kind === 'muted') knownMutes.set(sender.userId, Date.now() + outcome.retryAfter * 1000);
      return outcome;
    },

    /**
     * History, newest first. `before` is the previous page's `nextCursor`.
     * @throws {AppError} validation_failed
     */
    listMessages: async (channel: string, query: { before?: string; limit?: number }): Promise<ChatPage> => {
      if (!channelNamePattern.test(channel)) {
        throw new AppError('validation_failed', { details: [{ path: 'params.channel', message: 'Invalid channel name' }] });
      }
      const limit = query.limit ?? 50;
      const rows = await store.listMessages(pool, {
        channel,
        before: query.before === undefined ? undefined : decodeCursor(query.before),
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      return {
        items: page.map(toChatMessage),
        nextCursor: rows.length > limit && page.length > 0 ? encodeCursor(page[page.length - 1]!) : null,
      };
    },

    /** Messages of `channels` stored after `since` (ISO), oldest first; for resync after a listener outage. */
    messagesSince: async (channels: readonly string[], since: string, limit = 500) =>
      channels.length === 0 ? [] : (await store.messagesSince(pool, { channels, since, limit })).map(toChatMessage),

    /** Which of these sessions are no longer active (revoked, expired, deleted). */
    inactiveSessions: (sessionIds: readonly string[]) => store.inactiveSessions(pool, sessionIds),

    /** Periodic cleanup of expired tickets and idle limit rows, and of this instance's mute cache. */
    sweep: async () => {
      const now = Date.now();
      for (const [userId, until] of knownMutes) if (until <= now) knownMutes.delete(userId);
      for (const [key, budget] of rejectionBudgets) if (now - budget.windowStart >= 60_000 && budget.suppressed === 0) rejectionBudgets.delete(key);
      await store.sweep(pool);
    },
  };
  return service;
};

export type RealtimeService = ReturnType<typeof createRealtimeService>;

/** Parses a {@link CHAT_NOTIFY_CHANNEL} payload; undefined when malformed. */
export const parseChatNotification = (payload: string): ChatMessage | undefined => {
  try {
    const value = JSON.parse(payload) as Partial<ChatMessage>;
    if (
      typeof value.id === 'string' &&
      typeof value.channel === 'string' &&
      typeof value.userId === 'string' &&
      typeof value.displayName === 'string' &&
      typeof value.text === 'string' &&
      typeof value.sentAt === 'string' &&
      (value.clientMsgId === null || typeof value.clientMsgId === 'string')
    ) {
      return value as ChatMessage;
    }
  } catch {
    // fall through
  }
  return undefined;
};
