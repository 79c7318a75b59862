/**
 * The websocket gateway: `GET /ws?ticket=` on the API's HTTP server (the `ws` package in
 * `noServer` mode), the connection registry, chat frames, and the cross-instance fan-out.
 *
 * Upgrade: path → draining → handshake headers → Origin (CORS_ALLOWED_ORIGINS; none is fine) →
 * the ticket, consumed atomically BEFORE the handshake completes. Failures get the contract's
 * JSON envelope as a plain HTTP response (X-Request-ID, security headers) and the socket is
 * destroyed. Authorization headers and `token` query parameters are never looked at.
 *
 * Fan-out: a message is stored and NOTIFYed in one transaction; every instance (the sender's
 * included) delivers it from its LISTEN connection to its local members of the channel, so each
 * member gets it exactly once, in commit order (a connection's sends are processed one at a time,
 * so per sender that is send order).
 *
 * Revocation: the `user_sessions` trigger notifies every revocation; sockets of those sessions
 * close with 4001 on every instance. While the listener is down, sessions are polled instead
 * (fail closed), and after it is back every local session is checked once.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import semver from 'semver';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { RequestMeta } from '../audit/types.js';
import type { Config } from '../config/index.js';
import { parseSessionRevoked, SESSION_REVOKED_CHANNEL, type NotificationHub } from '../db/notifications.js';
import { AppError, type ErrorCode } from '../http/errors.js';
import { acceptRequestId, clientIpOf, writeRawError } from '../http/middleware.js';
import { clientPlatforms, type ClientPlatform } from '../http/request-meta.js';
import type { Logger } from '../logger.js';
import { channelNamePattern, MAX_FRAME_BYTES, type ChatMessage, type ServerFrame } from './schemas.js';
import { CHAT_NOTIFY_CHANNEL, parseChatNotification, type RealtimeService } from './service.js';

/** Close codes (RFC 6455 §7.4 and the application range). */
export const CloseCodes = {
  normal: 1000,
  unsupportedData: 1003,
  policyViolation: 1008,
  messageTooBig: 1009,
  internalError: 1011,
  serviceRestart: 1012,
  /** Release drain (contract §6): update the client. */
  releaseDrain: 4000,
  /** The session was revoked (logout, revocation, reuse detection). */
  sessionRevoked: 4001,
} as const;

/** Channels one connection may be in. */
export const MAX_CHANNELS_PER_CONNECTION = 32;
/** Frames a connection may have waiting behind a slow one (a chat send in flight). */
const MAX_PENDING_FRAMES = 64;
/** Per-connection frame budget: a burst of this many, refilled at this many per second. */
const FRAME_BURST = 500;
const FRAME_RATE_PER_SECOND = 500;

/** A server → client frame (the wire schema: ./schemas.ts `serverFrameSchema`). */
export type { ServerFrame };

export type Connection = {
  /** Random id of this socket. */
  readonly id: string;
  readonly ws: WebSocket;
  readonly userId: string;
  readonly sessionId: string;
  readonly role: 'player' | 'admin';
  readonly displayName: string;
  /** From X-Client-Platform / X-Client-Version of the upgrade request, else what the session was opened with. */
  readonly platform: ClientPlatform | null;
  readonly version: string | null;
  readonly meta: RequestMeta;
  readonly connectedAt: Date;
  readonly channels: Set<string>;
  alive: boolean;
  closing: boolean;
  pending: number;
  queue: Promise<void>;
  tokens: number;
  refilledAt: number;
};

const addTo = <K, V>(index: Map<K, Set<V>>, key: K, value: V) => {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(value);
};
const removeFrom = <K, V>(index: Map<K, Set<V>>, key: K, value: V) => {
  const set = index.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) index.delete(key);
};

/** Live connections of this instance, indexed by session, user, channel and platform. */
export class ConnectionRegistry {
  readonly #all = new Set<Connection>();
  readonly #bySession = new Map<string, Set<Connection>>();
  readonly #byUser = new Map<string, Set<Connection>>();
  readonly #byChannel = new Map<string, Set<Connection>>();
  readonly #byPlatform = new Map<ClientPlatform | null, Set<Connection>>();

  get size() {
    return this.#all.size;
  }

  add(connection: Connection) {
    this.#all.add(connection);
    addTo(this.#bySession, connection.sessionId, connection);
    addTo(this.#byUser, connection.userId, connection);
    addTo(this.#byPlatform, connection.platform, connection);
    for (const channel of connection.channels) addTo(this.#byChannel, channel, connection);
  }

  remove(connection: Connection) {
    if (!this.#all.delete(connection)) return;
    removeFrom(this.#bySession, connection.sessionId, connection);
    removeFrom(this.#byUser, connection.userId, connection);
    removeFrom(this.#byPlatform, connection.platform, connection);
    for (const channel of connection.channels) removeFrom(this.#byChannel, channel, connection);
  }

  has(connection: Connection) {
    return this.#all.has(connection);
  }

  join(connection: Connection, channel: string) {
    connection.channels.add(channel);
    if (this.#all.has(connection)) addTo(this.#byChannel, channel, connection);
  }

  leave(connection: Connection, channel: string) {
    connection.channels.delete(channel);
    removeFrom(this.#byChannel, channel, connection);
  }

  all(): Connection[] {
    return [...this.#all];
  }
  forSession(sessionId: string): Connection[] {
    return [...(this.#bySession.get(sessionId) ?? [])];
  }
  forUser(userId: string): Connection[] {
    return [...(this.#byUser.get(userId) ?? [])];
  }
  inChannel(channel: string): ReadonlySet<Connection> {
    return this.#byChannel.get(channel) ?? new Set();
  }
  channels(): string[] {
    return [...this.#byChannel.keys()];
  }
  sessionIds(): string[] {
    return [...this.#bySession.keys()];
  }

  /**
   * Connections of `platform` (all platforms when undefined) matching `filter`. For the release
   * drain: `select({ platform: 'ios', versionBelow: '2.0.0' })` also selects connections without a
   * valid version (treated as too old, like the login gate does).
   */
  select(criteria: { platform?: ClientPlatform | null; versionBelow?: string; filter?: (connection: Connection) => boolean }): Connection[] {
    const pool = criteria.platform === undefined ? this.#all : (this.#byPlatform.get(criteria.platform) ?? new Set<Connection>());
    const selected: Connection[] = [];
    for (const connection of pool) {
      if (criteria.versionBelow !== undefined) {
        const below = connection.version === null || !semver.valid(connection.version) || semver.lt(connection.version, criteria.versionBelow);
        if (!below) continue;
      }
      if (criteria.filter && !criteria.filter(connection)) continue;
      selected.push(connection);
    }
    return selected;
  }
}

export type GatewayDeps = {
  config: Pick<Config, 'http'>;
  logger: Logger;
  realtime: RealtimeService;
  hub: NotificationHub;
  /** True once the service is shutting down: new upgrades are refused. */
  isDraining?: () => boolean;
  /** Ping period; a peer that has not answered the previous ping by the next one is dropped. */
  heartbeatIntervalMs?: number;
  /** A socket whose unsent bytes exceed this is a slow reader and is terminated. */
  maxBufferedBytes?: number;
  /** Session polling period while the notification listener is down. */
  revocationPollMs?: number;
};

const header = (req: IncomingMessage, name: string): string | undefined => {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/** X-Client-Platform / X-Client-Version of the upgrade request, as `clientInfo` reads them for HTTP. */
const clientInfoOf = (req: IncomingMessage): { platform: ClientPlatform | null; version: string | null } => {
  const platform = (header(req, 'x-client-platform') ?? '').toLowerCase();
  const version = header(req, 'x-client-version') ?? '';
  return {
    platform: (clientPlatforms as readonly string[]).includes(platform) ? (platform as ClientPlatform) : null,
    version: version.length <= 64 && semver.valid(version) ? semver.clean(version) : null,
  };
};

const asPlatform = (value: string | null): ClientPlatform | null =>
  value !== null && (clientPlatforms as readonly string[]).includes(value) ? (value as ClientPlatform) : null;

export const createRealtimeGateway = (deps: GatewayDeps) => {
  const { config, logger, realtime, hub } = deps;
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 30_000;
  const maxBufferedBytes = deps.maxBufferedBytes ?? 1024 * 1024;
  const revocationPollMs = deps.revocationPollMs ?? 500;
  const allowedOrigins = new Set(config.http.corsAllowedOrigins);
  const registry = new ConnectionRegistry();
  const requestIds = new WeakMap<IncomingMessage, string>();

  let closing = false;
  const isDraining = () => closing || (deps.isDraining?.() ?? false);

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_BYTES,
    perMessageDeflate: false,
    clientTracking: false,
  });
  wss.on('headers', (headers, req) => {
    const requestId = requestIds.get(req);
    if (requestId !== undefined) headers.push(`X-Request-ID: ${requestId}`);
  });
  wss.on('error', (error) => logger.warn({ err: error }, 'websocket server error'));

  // ---- sending and closing ------------------------------------------------------------------

  /**
   * Sends a serialised frame (a Buffer is sent as a text frame without re-encoding: fan-out
   * encodes once for every member). A reader that lets more than `maxBufferedBytes` pile up is
   * terminated.
   */
  const sendRaw = (connection: Connection, data: string | Buffer) => {
    const { ws } = connection;
    if (ws.readyState !== WebSocket.OPEN || connection.closing) return;
    ws.send(data, { binary: false });
    if (ws.bufferedAmount > maxBufferedBytes) {
      logger.warn({ connectionId: connection.id, userId: connection.userId, buffered: ws.bufferedAmount }, 'slow websocket reader terminated');
      terminate(connection);
    }
  };
  const send = (connection: Connection, frame: ServerFrame) => sendRaw(connection, JSON.stringify(frame));

  const close = (connection: Connection, code: number, reason: string) => {
    if (connection.closing) return;
    connection.closing = true;
    registry.remove(connection);
    try {
      connection.ws.close(code, reason);
    } catch {
      connection.ws.terminate();
    }
  };

  const terminate = (connection: Connection) => {
    connection.closing = true;
    registry.remove(connection);
    connection.ws.terminate();
  };

  // ---- revocation ---------------------------------------------------------------------------

  /** Sessions revoked recently, for sockets whose upgrade raced with the revocation. */
  const recentlyRevoked = new Map<string, number>();
  const REVOKED_MEMORY_MS = 120_000;

  const closeSessions = (sessionIds: Iterable<string>, code: number = CloseCodes.sessionRevoked, reason = 'session_revoked') => {
    let closed = 0;
    const now = Date.now();
    for (const sessionId of sessionIds) {
      if (code === CloseCodes.sessionRevoked) recentlyRevoked.set(sessionId, now + REVOKED_MEMORY_MS);
      for (const connection of registry.forSession(sessionId)) {
        close(connection, code, reason);
        closed += 1;
      }
    }
    if (closed > 0) logger.info({ closed, code }, 'websockets closed for revoked sessions');
    return closed;
  };

  let checkingSessions: Promise<void> | undefined;
  /** Closes local sockets whose session is no longer active (the database decides). */
  const checkLocalSessions = () =>
    (checkingSessions ??= (async () => {
      try {
        const sessionIds = registry.sessionIds();
        for (let offset = 0; offset < sessionIds.length; offset += 1000) {
          const inactive = await realtime.inactiveSessions(sessionIds.slice(offset, offset + 1000));
          closeSessions(inactive);
        }
      } catch (error) {
        logger.warn({ err: error }, 'could not check websocket sessions');
      }
    })().finally(() => {
      checkingSessions = undefined;
    }));

  // ---- chat fan-out -------------------------------------------------------------------------

  /** Ids of recently delivered messages, so a resync never delivers one twice. */
  const delivered = new Set<string>();
  const DELIVERED_MEMORY = 20_000;
  /** When the listener was lost (this instance's clock); the resync reads from a little before. */
  let disconnectedAt: number | undefined;
  /** While a resync reads the backlog, live messages wait here so that delivery order holds. */
  let held: ChatMessage[] | undefined;

  const deliver = (message: ChatMessage) => {
    if (delivered.has(message.id)) return;
    delivered.add(message.id);
    if (delivered.size > DELIVERED_MEMORY) {
      for (const id of delivered) {
        delivered.delete(id);
        if (delivered.size <= DELIVERED_MEMORY * 0.9) break;
      }
    }
    const members = registry.inChannel(message.channel);
    if (members.size === 0) return;
    const frame = Buffer.from(JSON.stringify({ type: 'chat.message', ...message }));
    for (const connection of [...members]) sendRaw(connection, frame);
  };

  const onChatNotification = (message: ChatMessage) => {
    if (held) held.push(message);
    else deliver(message);
  };

  /**
   * After a listener outage: the messages stored meanwhile for the local channels (from 10 s
   * before the loss, for clock skew and commits in flight), then the live ones that arrived
   * during the read, then a check of every local session (revocations may have been missed).
   */
  const resync = async () => {
    const since = new Date((disconnectedAt ?? Date.now()) - 10_000).toISOString();
    disconnectedAt = undefined;
    held = [];
    try {
      for (const message of await realtime.messagesSince(registry.channels(), since)) deliver(message);
    } catch (error) {
      logger.warn({ err: error }, 'chat resync after listener reconnection failed');
    } finally {
      const live = held;
      held = undefined;
      for (const message of live) deliver(message);
    }
    await checkLocalSessions();
  };

  const subscriptions: Array<Promise<() => Promise<void>>> = [
    hub.subscribe(CHAT_NOTIFY_CHANNEL, (payload) => {
      const message = parseChatNotification(payload);
      if (message) onChatNotification(message);
      else logger.warn('malformed chat notification ignored');
    }),
    hub.subscribe(SESSION_REVOKED_CHANNEL, (payload) => {
      const notification = parseSessionRevoked(payload);
      if (notification) closeSessions(notification.sessionIds);
      else logger.warn('malformed session revocation notification ignored');
    }),
  ];
  let resyncing: Promise<void> = Promise.resolve();
  const offReconnected = hub.on('reconnected', () => {
    resyncing = resyncing.then(resync);
  });
  const offDisconnected = hub.on('disconnected', () => {
    disconnectedAt ??= Date.now();
  });

  // Fail closed: while revocations cannot be heard, ask the database.
  const revocationPoll = setInterval(() => {
    if (!hub.isConnected() && registry.size > 0) void checkLocalSessions();
  }, revocationPollMs);
  revocationPoll.unref();

  // Heartbeat, expiry of the revocation memory, and a periodic session check (expired sessions).
  let beats = 0;
  const heartbeat = setInterval(() => {
    for (const connection of registry.all()) {
      if (!connection.alive) {
        logger.debug({ connectionId: connection.id }, 'websocket peer missed its pong; terminated');
        terminate(connection);
        continue;
      }
      connection.alive = false;
      try {
        connection.ws.ping();
      } catch {
        terminate(connection);
      }
    }
    const now = Date.now();
    for (const [sessionId, until] of recentlyRevoked) if (until <= now) recentlyRevoked.delete(sessionId);
    beats += 1;
    if (beats * heartbeatIntervalMs >= 60_000) {
      beats = 0;
      void checkLocalSessions();
    }
  }, heartbeatIntervalMs);
  heartbeat.unref();

  // ---- frames -------------------------------------------------------------------------------

  const errorFrame = (code: string, extra: Omit<Extract<ServerFrame, { type: 'error' }>, 'type' | 'code'> = {}): ServerFrame => ({
    type: 'error',
    code,
    ...extra,
  });

  const takeToken = (connection: Connection): boolean => {
    const now = Date.now();
    connection.tokens = Math.min(FRAME_BURST, connection.tokens + ((now - connection.refilledAt) / 1000) * FRAME_RATE_PER_SECOND);
    connection.refilledAt = now;
    if (connection.tokens < 1) return false;
    connection.tokens -= 1;
    return true;
  };

  const handleSend = async (connection: Connection, frame: Record<string, unknown>) => {
    const clientMsgId = typeof frame.clientMsgId === 'string' ? frame.clientMsgId : undefined;
    const echoId = clientMsgId !== undefined && clientMsgId.length <= 64 ? { clientMsgId } : {};
    const details = realtime.validateSend({ channel: frame.channel, text: frame.text, clientMsgId: frame.clientMsgId });
    if (details.length > 0) {
      send(connection, errorFrame('validation_failed', { ...echoId, details }));
      return;
    }
    const channel = frame.channel as string;
    if (!connection.channels.has(channel)) {
      send(connection, errorFrame('not_joined', { ...echoId, channel }));
      return;
    }
    try {
      const outcome = await realtime.sendMessage(
        connection.meta,
        { userId: connection.userId, sessionId: connection.sessionId },
        { channel, text: frame.text as string, clientMsgId: clientMsgId ?? null },
      );
      switch (outcome.kind) {
        case 'sent':
          // A new message reaches this connection through the fan-out like every member's copy;
          // a retried clientMsgId gets the stored message again, to this connection only.
          if (outcome.duplicate) send(connection, { type: 'chat.message', ...outcome.message });
          break;
        case 'rate_limited':
        case 'muted':
          send(connection, errorFrame(outcome.kind, { ...echoId, retryAfter: outcome.retryAfter }));
          break;
      }
    } catch (error) {
      if (error instanceof AppError && error.status < 500) {
        send(connection, errorFrame(error.code, { ...echoId, ...(error.details ? { details: error.details } : {}) }));
        if (error.code === 'unauthorized') close(connection, CloseCodes.sessionRevoked, 'session_revoked');
        return;
      }
      logger.warn({ err: error, connectionId: connection.id }, 'chat send failed');
      send(connection, errorFrame('service_unavailable', { ...echoId, retryAfter: 2 }));
    }
  };

  const handleFrame = async (connection: Connection, data: RawData, isBinary: boolean) => {
    if (isBinary) {
      send(connection, errorFrame('unsupported_frame', { message: 'Frames are JSON text.' }));
      return;
    }
    let frame: unknown;
    try {
      const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
      frame = JSON.parse(text);
    } catch {
      send(connection, errorFrame('invalid_json'));
      return;
    }
    if (typeof frame !== 'object' || frame === null || Array.isArray(frame) || typeof (frame as { type?: unknown }).type !== 'string') {
      send(connection, errorFrame('validation_failed', { details: [{ path: 'type', message: 'Expected an object with a string type' }] }));
      return;
    }
    const body = frame as Record<string, unknown>;
    switch (body.type) {
      case 'ping':
        send(connection, { type: 'pong' });
        return;
      case 'chat.join': {
        if (typeof body.channel !== 'string' || !channelNamePattern.test(body.channel)) {
          send(connection, errorFrame('validation_failed', { details: [{ path: 'channel', message: 'Invalid channel name' }] }));
          return;
        }
        if (!connection.channels.has(body.channel) && connection.channels.size >= MAX_CHANNELS_PER_CONNECTION) {
          send(connection, errorFrame('too_many_channels', { channel: body.channel }));
          return;
        }
        registry.join(connection, body.channel);
        send(connection, { type: 'chat.joined', channel: body.channel });
        return;
      }
      case 'chat.leave': {
        if (typeof body.channel !== 'string' || !channelNamePattern.test(body.channel)) {
          send(connection, errorFrame('validation_failed', { details: [{ path: 'channel', message: 'Invalid channel name' }] }));
          return;
        }
        registry.leave(connection, body.channel);
        send(connection, { type: 'chat.left', channel: body.channel });
        return;
      }
      case 'chat.send':
        await handleSend(connection, body);
        return;
      default:
        send(connection, errorFrame('unknown_type'));
    }
  };

  const onMessage = (connection: Connection, data: RawData, isBinary: boolean) => {
    connection.alive = true;
    if (connection.closing) return;
    if (!takeToken(connection)) {
      send(connection, errorFrame('rate_limited', { retryAfter: 1 }));
      return;
    }
    if (connection.pending >= MAX_PENDING_FRAMES) {
      close(connection, CloseCodes.policyViolation, 'too_many_pending_frames');
      return;
    }
    connection.pending += 1;
    connection.queue = connection.queue
      .then(() => (connection.closing ? undefined : handleFrame(connection, data, isBinary)))
      .catch((error: unknown) => {
        logger.error({ err: error, connectionId: connection.id }, 'websocket frame handling failed');
        send(connection, errorFrame('internal_error'));
      })
      .finally(() => {
        connection.pending -= 1;
      });
  };

  // ---- upgrade ------------------------------------------------------------------------------

  const rejectUpgrade = (
    req: IncomingMessage,
    socket: Duplex,
    code: ErrorCode,
    requestId: string,
    extraHeaders: Record<string, string> = {},
  ) => {
    const secure =
      (socket as Duplex & { encrypted?: boolean }).encrypted === true ||
      (config.http.trustProxy && (header(req, 'x-forwarded-proto') ?? '').split(',')[0]?.trim() === 'https');
    writeRawError(socket, code, { requestId, secure, headers: extraHeaders });
  };

  const isValidHandshake = (req: IncomingMessage) => {
    const key = header(req, 'sec-websocket-key') ?? '';
    const version = header(req, 'sec-websocket-version');
    return (
      req.method === 'GET' &&
      (header(req, 'upgrade') ?? '').toLowerCase() === 'websocket' &&
      /^[+/0-9A-Za-z]{22}==$/.test(key) &&
      (version === '13' || version === '8')
    );
  };

  const onConnection = (
    ws: WebSocket,
    meta: RequestMeta,
    ticket: { user_id: string; session_id: string; role: 'player' | 'admin'; display_name: string; client_platform: string | null; client_version: string | null },
    client: { platform: ClientPlatform | null; version: string | null },
  ) => {
    const connection: Connection = {
      id: randomUUID(),
      ws,
      userId: ticket.user_id,
      sessionId: ticket.session_id,
      role: ticket.role,
      displayName: ticket.display_name,
      platform: client.platform ?? asPlatform(ticket.client_platform),
      version: client.version ?? (ticket.client_version !== null && semver.valid(ticket.client_version) ? ticket.client_version : null),
      meta,
      connectedAt: new Date(),
      channels: new Set(),
      alive: true,
      closing: false,
      pending: 0,
      queue: Promise.resolve(),
      tokens: FRAME_BURST,
      refilledAt: Date.now(),
    };
    ws.on('error', (error: Error & { code?: string }) => {
      // Oversized frames (1009), invalid UTF-8 (1007) and protocol errors: ws closes the socket itself.
      logger.debug({ err: error, code: error.code, connectionId: connection.id }, 'websocket protocol error');
    });
    ws.on('close', (code) => {
      connection.closing = true;
      registry.remove(connection);
      logger.debug({ connectionId: connection.id, code }, 'websocket closed');
    });
    ws.on('pong', () => {
      connection.alive = true;
    });
    ws.on('message', (data, isBinary) => onMessage(connection, data, isBinary));

    if (closing) {
      close(connection, CloseCodes.serviceRestart, 'service_restart');
      return;
    }
    registry.add(connection);
    if (recentlyRevoked.has(connection.sessionId)) {
      close(connection, CloseCodes.sessionRevoked, 'session_revoked');
      return;
    }
    logger.debug({ connectionId: connection.id, userId: connection.userId, sessionId: connection.sessionId }, 'websocket connected');
  };

  const handleUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const requestId = acceptRequestId(header(req, 'x-request-id'));
    const ip = clientIpOf(header(req, 'x-forwarded-for'), req.socket.remoteAddress, config.http);
    const meta: RequestMeta = {
      requestId,
      ip: ip === 'unknown' ? null : ip,
      userAgent: (header(req, 'user-agent') ?? '').slice(0, 512) || null,
    };
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      rejectUpgrade(req, socket, 'bad_request', requestId);
      return;
    }
    if (url.pathname !== '/ws') {
      rejectUpgrade(req, socket, 'not_found', requestId);
      return;
    }
    if (isDraining()) {
      rejectUpgrade(req, socket, 'service_unavailable', requestId, { 'Retry-After': '1' });
      return;
    }
    if (!isValidHandshake(req)) {
      rejectUpgrade(req, socket, 'bad_request', requestId);
      return;
    }
    const origin = header(req, 'origin');
    if (origin !== undefined && !allowedOrigins.has(origin)) {
      await realtime.recordOriginRejected(meta, origin);
      rejectUpgrade(req, socket, 'origin_not_allowed', requestId);
      return;
    }
    // Only `ticket` authenticates; an Authorization header or a `token` parameter is ignored.
    const tickets = url.searchParams.getAll('ticket');
    const redemption = await realtime.redeemTicket(meta, tickets.length === 1 ? tickets[0] : undefined);
    if (!redemption.ok) {
      rejectUpgrade(req, socket, 'invalid_ws_ticket', requestId);
      return;
    }
    if (!socket.readable || !socket.writable) {
      socket.destroy();
      return;
    }
    requestIds.set(req, requestId);
    const client = clientInfoOf(req);
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, meta, redemption.ticket, client));
  };

  const upgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    handleUpgrade(req, socket, head).catch((error: unknown) => {
      logger.error({ err: error }, 'websocket upgrade failed');
      rejectUpgrade(req, socket, 'service_unavailable', acceptRequestId(header(req, 'x-request-id')), { 'Retry-After': '2' });
    });
  };

  const gateway = {
    registry,
    /** Resolves once the hub subscriptions are registered (and LISTENing when connected). */
    ready: Promise.all(subscriptions).then(() => undefined),

    /** Serves `/ws` upgrades of `server`. */
    attach: (server: Server) => {
      server.on('upgrade', upgradeListener);
    },

    send,
    /** Sends a ready-serialised frame (one JSON.stringify for many recipients). */
    sendRaw,
    close,
    closeSessions,

    /** Closes every socket with 1012 (clients reconnect to another instance) and stops. */
    shutdown: async (graceMs = 1_000) => {
      if (closing) return;
      // The upgrade listener stays: late upgrades on kept-alive connections get 503.
      closing = true;
      clearInterval(heartbeat);
      clearInterval(revocationPoll);
      offReconnected();
      offDisconnected();
      const sockets = registry.all();
      const closed = Promise.all(
        sockets.map(
          (connection) =>
            new Promise<void>((resolve) => {
              if (connection.ws.readyState === WebSocket.CLOSED) return resolve();
              connection.ws.once('close', () => resolve());
              close(connection, CloseCodes.serviceRestart, 'service_restart');
            }),
        ),
      );
      const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([closed, timer]);
      for (const connection of sockets) if (connection.ws.readyState !== WebSocket.CLOSED) connection.ws.terminate();
      for (const unsubscribe of await Promise.all(subscriptions.map((s) => s.catch(() => async () => undefined)))) {
        await unsubscribe().catch(() => undefined);
      }
    },
  };
  return gateway;
};

export type RealtimeGateway = ReturnType<typeof createRealtimeGateway>;
