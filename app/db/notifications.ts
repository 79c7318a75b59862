/**
 * A notification hub over PostgreSQL LISTEN/NOTIFY: one dedicated connection per process that
 * LISTENs on every subscribed channel and dispatches to in-process handlers.
 *
 * - Publishing goes through the caller's transaction (`SELECT pg_notify(...)`), so a
 *   notification is delivered if and only if that transaction commits, in commit order.
 * - NOTIFY payloads are limited to 8000 bytes. Larger payloads are stored in
 *   `notification_payloads` and the notification carries `ref:<id>`; listeners read the body
 *   before dispatching. Deliveries stay in arrival order (a queue serialises the reads).
 * - When the connection is lost (a database restart, a failover, a network cut) the hub
 *   reconnects with exponential backoff, LISTENs again on every channel and emits
 *   `reconnected`: notifications sent while it was away are lost, so consumers resync from
 *   the database then. `isConnected()` lets consumers fail closed meanwhile.
 *
 * Used by the realtime gateway (chat fan-out, session revocation) and meant for the release
 * drain and the in-memory revocation cache.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { endWithin, TCP_KEEPALIVE_INITIAL_DELAY_MS } from './driver.js';
import { tlsOptionsFor } from './tls.js';

/** Channel of the `user_sessions` revocation trigger (migration 0005). */
export const SESSION_REVOKED_CHANNEL = 'karaxas_session_revoked';

const sessionRevokedSchema = z.object({
  sessionIds: z.array(z.string().uuid()).nullable().transform((ids) => ids ?? []),
  userIds: z.array(z.string().uuid()).nullable().transform((ids) => ids ?? []),
});
export type SessionRevokedNotification = z.output<typeof sessionRevokedSchema>;

/** Parses a {@link SESSION_REVOKED_CHANNEL} payload; undefined when it is malformed. */
export const parseSessionRevoked = (payload: string): SessionRevokedNotification | undefined => {
  try {
    const parsed = sessionRevokedSchema.safeParse(JSON.parse(payload));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
};

/** Payloads up to this many UTF-8 bytes go inline; larger ones by reference. */
export const MAX_INLINE_PAYLOAD_BYTES = 7_500;
const REF_PREFIX = 'ref:';
const channelPattern = /^[a-z_][a-z0-9_]{0,62}$/;

export type NotificationHandler = (payload: string) => void;

export type HubEvent = 'connected' | 'disconnected' | 'reconnected';

export interface NotificationHub {
  /** Opens the listening connection. Resolves once it is listening, or after the first failed attempt (retries continue in the background). */
  start(): Promise<void>;
  /**
   * Registers a handler; resolves once the LISTEN is active (immediately when disconnected: it
   * is issued on reconnection). Returns the function that removes the handler.
   */
  subscribe(channel: string, handler: NotificationHandler): Promise<() => Promise<void>>;
  /**
   * Queues a notification in `connection`'s transaction: delivered to every listener (this
   * process included) if and only if that transaction commits.
   */
  publish(connection: CommonQueryMethods, channel: string, payload: string): Promise<void>;
  /** True while the listening connection is up and every channel is LISTENed. */
  isConnected(): boolean;
  /** `connected` (every time), `disconnected`, `reconnected` (after a loss). Returns an unsubscribe. */
  on(event: HubEvent, listener: () => void): () => void;
  /** Stops listening and reconnecting. Idempotent. */
  close(): Promise<void>;
}

export type NotificationHubOptions = {
  database: Config['database'];
  logger: Logger;
  /** First reconnection delay; doubles up to `maxBackoffMs`. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** How often the idle connection is checked with a trivial query (a dead peer can look alive). */
  healthCheckIntervalMs?: number;
};

export const createNotificationHub = (options: NotificationHubOptions): NotificationHub => {
  const { database, logger } = options;
  const minBackoff = options.minBackoffMs ?? 100;
  const maxBackoff = options.maxBackoffMs ?? 2_000;
  const healthCheckInterval = options.healthCheckIntervalMs ?? 10_000;
  const ssl = tlsOptionsFor(database);

  const handlers = new Map<string, Set<NotificationHandler>>();
  const events = new EventEmitter();
  events.setMaxListeners(0);

  let client: pg.Client | undefined;
  let connected = false;
  let everConnected = false;
  let closed = false;
  let attempt = 0;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let connecting: Promise<void> | undefined;
  let delivery: Promise<void> = Promise.resolve();

  const dispatch = (channel: string, payload: string) => {
    for (const handler of handlers.get(channel) ?? []) {
      try {
        handler(payload);
      } catch (error) {
        logger.error({ err: error, channel }, 'notification handler failed');
      }
    }
  };

  const fetchReference = async (owner: pg.Client, id: string): Promise<string | undefined> => {
    const { rows } = await owner.query<{ payload: string }>('SELECT payload FROM notification_payloads WHERE id = $1', [id]);
    return rows[0]?.payload;
  };

  const onNotification = (owner: pg.Client) => (message: pg.Notification) => {
    const { channel } = message;
    const payload = message.payload ?? '';
    if (!handlers.has(channel)) return;
    if (!payload.startsWith(REF_PREFIX)) {
      delivery = delivery.then(() => dispatch(channel, payload));
      return;
    }
    const id = payload.slice(REF_PREFIX.length);
    const body = /^\d{1,19}$/.test(id) ? fetchReference(owner, id) : Promise.resolve(undefined);
    body.catch(() => undefined);
    delivery = delivery.then(async () => {
      try {
        const text = await body;
        if (text === undefined) logger.warn({ channel }, 'notification body by reference not found');
        else dispatch(channel, text);
      } catch (error) {
        logger.warn({ err: error, channel }, 'could not read a notification body by reference');
      }
    });
  };

  const emit = (event: HubEvent) => {
    for (const listener of events.listeners(event) as Array<() => void>) {
      try {
        listener();
      } catch (error) {
        logger.error({ err: error, event }, 'notification hub listener failed');
      }
    }
  };

  const listen = (target: pg.Client, channel: string) => target.query(`LISTEN ${target.escapeIdentifier(channel)}`);

  const scheduleReconnect = () => {
    if (closed || reconnectTimer !== undefined || connecting !== undefined) return;
    const base = Math.min(maxBackoff, minBackoff * 2 ** Math.min(attempt, 16));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    attempt += 1;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      void connect();
    }, delay);
    reconnectTimer.unref();
  };

  const lost = (owner: pg.Client, error?: unknown) => {
    if (client !== owner) return;
    client = undefined;
    const wasConnected = connected;
    connected = false;
    owner.removeAllListeners('notification');
    void endWithin(owner, database.connectTimeoutMs);
    if (wasConnected) {
      logger.warn({ err: error }, 'notification listener disconnected; reconnecting');
      emit('disconnected');
    }
    scheduleReconnect();
  };

  const connect = (): Promise<void> =>
    (connecting ??= (async () => {
      if (closed) return;
      const candidate = new pg.Client({
        connectionString: database.connectionUri,
        ...(ssl === false ? {} : { ssl }),
        connectionTimeoutMillis: database.connectTimeoutMs,
        application_name: 'karaxas-notify',
        // This connection idles for as long as no notification arrives: keepalive notices a
        // vanished peer (and keeps idle-flow timeouts of the network path away) between the
        // health checks, whose query_timeout catches a peer that is there but does not answer.
        // Without an initial delay Node leaves the OS default (two hours on Linux).
        keepAlive: true,
        keepAliveInitialDelayMillis: TCP_KEEPALIVE_INITIAL_DELAY_MS,
        query_timeout: 5_000,
      });
      candidate.on('error', (error) => lost(candidate, error));
      candidate.on('end', () => lost(candidate));
      candidate.on('notification', onNotification(candidate));
      try {
        client = candidate;
        await candidate.connect();
        for (const channel of handlers.keys()) await listen(candidate, channel);
        if (closed || client !== candidate) {
          await endWithin(candidate, database.connectTimeoutMs);
          return;
        }
        connected = true;
        attempt = 0;
        const again = everConnected;
        everConnected = true;
        logger.debug({ channels: [...handlers.keys()] }, 'notification listener connected');
        emit('connected');
        if (again) {
          logger.info('notification listener reconnected');
          emit('reconnected');
        }
      } catch (error) {
        if (client === candidate) client = undefined;
        candidate.removeAllListeners('notification');
        await endWithin(candidate, database.connectTimeoutMs);
        logger.debug({ err: error }, 'notification listener could not connect');
        connecting = undefined;
        scheduleReconnect();
      }
    })().finally(() => {
      connecting = undefined;
    }));

  const healthCheck = setInterval(() => {
    const current = client;
    if (!current || !connected) return;
    current.query('SELECT 1').catch((error: unknown) => lost(current, error));
  }, healthCheckInterval);
  healthCheck.unref();

  const payloadSweep = setInterval(() => {
    const current = client;
    if (!current || !connected) return;
    current
      .query("DELETE FROM notification_payloads WHERE created_at < now() - interval '10 minutes'")
      .catch((error: unknown) => logger.debug({ err: error }, 'notification payload sweep failed'));
  }, 60_000);
  payloadSweep.unref();

  const hub: NotificationHub = {
    start: async () => {
      await connect();
    },

    subscribe: async (channel, handler) => {
      if (!channelPattern.test(channel)) throw new TypeError(`invalid notification channel name: ${channel}`);
      let set = handlers.get(channel);
      const first = set === undefined;
      if (!set) {
        set = new Set();
        handlers.set(channel, set);
      }
      set.add(handler);
      const current = client;
      if (first && current && connected) {
        try {
          await listen(current, channel);
        } catch (error) {
          // The connection is going away; the reconnection LISTENs on every channel.
          lost(current, error);
        }
      }
      return async () => {
        const registered = handlers.get(channel);
        if (!registered?.delete(handler) || registered.size > 0) return;
        handlers.delete(channel);
        const active = client;
        // A failure (query_timeout: a frozen or unreachable server) leaves the UNLISTEN in flight
        // and everything after it queued behind: the connection is given up, as for LISTEN.
        if (active && connected) await active.query(`UNLISTEN ${active.escapeIdentifier(channel)}`).catch((error: unknown) => lost(active, error));
      };
    },

    publish: async (connection, channel, payload) => {
      if (!channelPattern.test(channel)) throw new TypeError(`invalid notification channel name: ${channel}`);
      if (Buffer.byteLength(payload, 'utf8') <= MAX_INLINE_PAYLOAD_BYTES && !payload.startsWith(REF_PREFIX)) {
        await connection.query(sql.unsafe`SELECT pg_notify(${channel}, ${payload})`);
        return;
      }
      const id = await connection.oneFirst(
        sql.type(z.object({ id: z.coerce.string() }))`
          INSERT INTO notification_payloads (channel, payload) VALUES (${channel}, ${payload}) RETURNING id::text AS id`,
      );
      await connection.query(sql.unsafe`SELECT pg_notify(${channel}, ${`${REF_PREFIX}${id}`})`);
    },

    isConnected: () => connected,

    on: (event, listener) => {
      events.on(event, listener);
      return () => events.off(event, listener);
    },

    close: async () => {
      if (closed) return;
      closed = true;
      clearInterval(healthCheck);
      clearInterval(payloadSweep);
      if (reconnectTimer) clearTimeout(reconnectTimer);
      reconnectTimer = undefined;
      await connecting?.catch(() => undefined);
      const current = client;
      client = undefined;
      connected = false;
      if (current) {
        current.removeAllListeners('notification');
        // Bounded: a frozen server never acknowledges the goodbye, and shutdown must not wait on it.
        await endWithin(current, database.connectTimeoutMs);
      }
      await delivery.catch(() => undefined);
    },
  };
  return hub;
};
