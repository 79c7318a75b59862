/**
 * Sessions known to be active, kept in memory so that an authenticated request needs no
 * database round trip for its revocation check — without ever trusting stale state.
 *
 * What is cached: only sessions a database lookup found active (never "known revoked"), with
 * their expiry, user, role and amr. A session revoked before it was looked up is therefore
 * never served from memory; a session revoked after it was cached is evicted by the
 * `karaxas_session_revoked` notification that the `user_sessions` trigger sends on every path
 * that sets `revoked_at` (or deletes the row). Role and amr never change on a session row; the
 * expiry only ever grows (refresh), so a cached one is at worst earlier than the real one.
 *
 * When the memory is trusted (otherwise every lookup goes to the database — fail closed):
 * - the notification listener is connected, and has been since the entry was cached: losing
 *   the connection clears everything (notifications sent meanwhile are lost);
 * - a heartbeat sent on this instance's own channel (through the pool, so through the same
 *   server-side notification queue as revocations) came back recently. PostgreSQL delivers
 *   notifications in commit order, so receiving a heartbeat sent at time T proves every
 *   revocation committed before T has been applied here. Requiring one sent within
 *   `maxStalenessMs` bounds how long a revocation can go unseen, even when the listener's
 *   connection silently stalls or its deliveries back up — the bound the contract promises
 *   (effective on every instance within one second).
 *
 * Races: a lookup that was in flight while a revocation of that session (or any connection
 * change) arrived is not cached, since its row may predate the revocation.
 *
 * Read-your-writes on the revoking instance: the notification arrives only after the revoking
 * transaction commits — usually before its HTTP answer is sent, but not always. So the auth service
 * also reports every revocation it makes, inside the transaction ({@link RevocationCache.revoking}):
 * those sessions are evicted at once and not cached again for {@link RevocationCacheOptions.pendingMs}
 * (a session revoked and committed is never found active again; one whose transaction rolls back
 * is merely read from the database meanwhile). A client that is told "revoked" is therefore
 * refused on its very next request to this instance; other instances follow within the bound.
 *
 * Heartbeats run only while the cache is in use (requests seen in the last `idleAfterMs`), so an
 * idle instance sends nothing; the first request after a pause goes to the database.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { CommonQueryMethods } from 'slonik';
import { parseSessionRevoked, SESSION_REVOKED_CHANNEL, type NotificationHub } from '../db/notifications.js';
import type { Logger } from '../logger.js';
import type { Role, SessionRow } from './store.js';

/** What authentication needs from an active session. */
export type KnownSession = { userId: string; role: Role; amr: readonly string[] };

/** State captured before a database lookup; see {@link RevocationCache.remember}. */
export type LookupMark = { readonly generation: number; readonly revocations: number };

export interface RevocationCache {
  /** The session when it is known active and the memory is trusted right now; otherwise undefined (ask the database). */
  get(sessionId: string): KnownSession | undefined;
  /** Call before the database lookup whose result may be cached. */
  mark(): LookupMark;
  /** Caches a session the lookup started at `mark` found active, unless anything may have changed since. */
  remember(mark: LookupMark, session: Pick<SessionRow, 'id' | 'user_id' | 'role' | 'amr' | 'expires_at'>): void;
  /**
   * Reports a revocation this process is making, inside its transaction: the sessions (or, with
   * `'all'`, every session) are evicted now and not cached again while the transaction may still
   * be committing.
   */
  revoking(target: { sessionIds: readonly string[] } | 'all'): void;
  /** Subscribes to the revocation and heartbeat channels. */
  start(): Promise<void>;
  close(): Promise<void>;
  /** Counters, for tests and diagnostics. */
  stats(): { hits: number; misses: number; size: number; trusted: boolean; evictions: number; clears: number };
}

export type RevocationCacheOptions = {
  hub: NotificationHub;
  /** Where heartbeats are published (any connection of the same database). */
  pool: CommonQueryMethods;
  logger: Logger;
  /** Oldest heartbeat (by send time) that still makes the memory trusted. Must stay below 1 s. */
  maxStalenessMs?: number;
  heartbeatIntervalMs?: number;
  /** Heartbeats stop after this long without a lookup. */
  idleAfterMs?: number;
  maxEntries?: number;
  /** A session this close to its expiry is asked about again (clock differences with the database). */
  expiryMarginMs?: number;
  /**
   * How long a session reported by {@link RevocationCache.revoking} is not cached: longer than any
   * revoking transaction (they are single statements plus an audit row) plus notification latency.
   */
  pendingMs?: number;
};

type Entry = KnownSession & { expiresAt: number };

export const createRevocationCache = (options: RevocationCacheOptions): RevocationCache => {
  const { hub, pool, logger } = options;
  const maxStalenessMs = options.maxStalenessMs ?? 750;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 200;
  const idleAfterMs = options.idleAfterMs ?? 10_000;
  const maxEntries = options.maxEntries ?? 100_000;
  const expiryMarginMs = options.expiryMarginMs ?? 5_000;
  const pendingMs = options.pendingMs ?? 30_000;
  const heartbeatChannel = `karaxas_revocation_heartbeat_${randomBytes(8).toString('hex')}`;

  const entries = new Map<string, Entry>();
  /** Bumped on every change of the listening connection: lookups across it are not cached. */
  let generation = 0;
  /** Bumped on every revocation notification. */
  let revocations = 0;
  /** sessionId → `revocations` value of its latest revocation notification (recent ones only). */
  const recentlyRevoked = new Map<string, number>();
  /** Revocation numbers at or below this are no longer in `recentlyRevoked`. */
  let forgottenUpTo = 0;

  /** sessionId → until when (performance.now()) it is not cached: revoked by this process. */
  const pending = new Map<string, number>();
  /** Nothing is cached before this time: this process revoked every session. */
  let pendingAllUntil = Number.NEGATIVE_INFINITY;

  let sequence = 0;
  const sentAt = new Map<number, number>();
  /** Send time of the newest heartbeat that came back, on this listener connection. */
  let confirmedAt = Number.NEGATIVE_INFINITY;
  let lastUse = Number.NEGATIVE_INFINITY;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const counters = { hits: 0, misses: 0, evictions: 0, clears: 0 };
  const cleanups: Array<() => void | Promise<void>> = [];

  const trusted = () => hub.isConnected() && performance.now() - confirmedAt <= maxStalenessMs;

  const clear = () => {
    generation += 1;
    confirmedAt = Number.NEGATIVE_INFINITY;
    sentAt.clear();
    if (entries.size > 0) counters.clears += 1;
    entries.clear();
  };

  const onRevoked = (payload: string) => {
    const notification = parseSessionRevoked(payload);
    if (!notification) {
      // Cannot tell what was revoked: forget everything.
      logger.warn('malformed session revocation notification; revocation cache cleared');
      clear();
      return;
    }
    revocations += 1;
    for (const sessionId of notification.sessionIds) {
      if (entries.delete(sessionId)) counters.evictions += 1;
      recentlyRevoked.set(sessionId, revocations);
    }
    // A user-wide notification names every session, but be conservative about the user ids too.
    if (notification.userIds.length > 0) {
      const users = new Set(notification.userIds);
      for (const [sessionId, entry] of entries) {
        if (users.has(entry.userId)) {
          entries.delete(sessionId);
          counters.evictions += 1;
        }
      }
    }
    if (recentlyRevoked.size > 10_000) {
      // Lookups last milliseconds; anything marked before the forgotten ones is simply not cached.
      for (const [sessionId, number] of recentlyRevoked) {
        recentlyRevoked.delete(sessionId);
        forgottenUpTo = Math.max(forgottenUpTo, number);
        if (recentlyRevoked.size <= 5_000) break;
      }
    }
  };

  const onHeartbeat = (payload: string) => {
    const number = Number(payload);
    const sent = sentAt.get(number);
    if (sent === undefined) return;
    for (const key of sentAt.keys()) {
      if (key > number) break;
      sentAt.delete(key);
    }
    if (sent > confirmedAt) confirmedAt = sent;
  };

  const beat = () => {
    if (closed || !hub.isConnected()) return;
    sequence += 1;
    sentAt.set(sequence, performance.now());
    // Unanswered heartbeats of a stalled connection must not pile up.
    if (sentAt.size > 100) sentAt.delete(sentAt.keys().next().value as number);
    hub.publish(pool, heartbeatChannel, String(sequence)).catch((error: unknown) => logger.debug({ err: error }, 'revocation heartbeat failed'));
  };

  const ensureHeartbeat = () => {
    if (timer !== undefined || closed) return;
    beat();
    timer = setInterval(() => {
      if (performance.now() - lastUse > idleAfterMs) {
        clearInterval(timer);
        timer = undefined;
        return;
      }
      beat();
    }, heartbeatIntervalMs);
    timer.unref();
  };

  return {
    get: (sessionId) => {
      lastUse = performance.now();
      ensureHeartbeat();
      const entry = entries.get(sessionId);
      if (entry === undefined || !trusted()) {
        counters.misses += 1;
        return undefined;
      }
      if (entry.expiresAt - expiryMarginMs <= Date.now()) {
        entries.delete(sessionId);
        counters.misses += 1;
        return undefined;
      }
      counters.hits += 1;
      return entry;
    },

    mark: () => ({ generation, revocations }),

    remember: (mark, session) => {
      if (closed || mark.generation !== generation || !trusted()) return;
      const now = performance.now();
      if (now < pendingAllUntil) return;
      const pendingUntil = pending.get(session.id);
      if (pendingUntil !== undefined) {
        if (now < pendingUntil) return;
        pending.delete(session.id);
      }
      if (mark.revocations !== revocations) {
        if (mark.revocations < forgottenUpTo) return;
        const revokedAt = recentlyRevoked.get(session.id);
        if (revokedAt !== undefined && revokedAt > mark.revocations) return;
      }
      const expiresAt = Date.parse(session.expires_at);
      if (!Number.isFinite(expiresAt)) return;
      if (entries.size >= maxEntries && !entries.has(session.id)) {
        // Oldest first (insertion order).
        entries.delete(entries.keys().next().value as string);
      }
      entries.set(session.id, { userId: session.user_id, role: session.role, amr: [...session.amr], expiresAt });
    },

    revoking: (target) => {
      const now = performance.now();
      const until = now + pendingMs;
      if (target === 'all' || pending.size + target.sessionIds.length > maxEntries) {
        pendingAllUntil = until;
        pending.clear();
        if (entries.size > 0) counters.clears += 1;
        entries.clear();
        return;
      }
      for (const [sessionId, expires] of pending) {
        // Insertion order is expiry order: stop at the first one still pending.
        if (expires > now) break;
        pending.delete(sessionId);
      }
      for (const sessionId of target.sessionIds) {
        pending.delete(sessionId);
        pending.set(sessionId, until);
        if (entries.delete(sessionId)) counters.evictions += 1;
      }
    },

    start: async () => {
      cleanups.push(hub.on('disconnected', clear), hub.on('connected', clear), hub.on('reconnected', clear));
      const unsubscribe = await Promise.all([hub.subscribe(SESSION_REVOKED_CHANNEL, onRevoked), hub.subscribe(heartbeatChannel, onHeartbeat)]);
      for (const off of unsubscribe) cleanups.push(off);
    },

    close: async () => {
      closed = true;
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      clear();
      for (const cleanup of cleanups.splice(0)) await cleanup();
    },

    stats: () => ({ ...counters, size: entries.size, trusted: trusted() }),
  };
};
