/**
 * The SDK's realtime connection (contract §5): one websocket per client, kept alive across
 * restarts and network loss.
 *
 * - Connecting: a fresh single-use ticket (`POST /auth/ws-ticket`, through the client's
 *   single-flight refresh) for every attempt, then `GET /ws?ticket=`.
 * - Reconnecting: on 1006 (network loss, refused upgrade), 1012 (service restart), a connect or
 *   keepalive timeout, or any other close the server did not mean as final — after a jittered
 *   exponential backoff ({@link backoffDelay}); the attempt counter resets once a connection has
 *   stayed up for a while.
 * - Final closes: 4001 (session revoked: the client signs out) and 4000 (release drain: update
 *   required). The SDK does not reconnect after them; `connect()` starts again explicitly.
 * - Channels are remembered and re-joined on every new socket; sends that were not confirmed are
 *   sent again after the re-join with the same `clientMsgId` (the server stores each
 *   `clientMsgId` once per user, so a retry never duplicates a message).
 * - Incoming messages are de-duplicated by id and by `(userId, clientMsgId)`; after a re-join the
 *   latest page of the channel's history is read and the messages missed meanwhile are delivered
 *   with `replayed: true`.
 * - Keepalive: an application `ping` every `pingIntervalMs`; no frame within `pongTimeoutMs`
 *   means a dead connection, which is dropped and replaced.
 *
 * Uses only `WebSocket` (injectable constructor), `setTimeout`/`setInterval` and
 * `crypto.getRandomValues` when present.
 */
import { clientError, KaraxasError } from './errors.js';
import {
  channelNamePattern,
  chatMessageSchema,
  clientMsgIdPattern,
  MAX_FRAME_BYTES,
  serverFrameSchema,
  type ChatMessage,
  type ChatPage,
  type ClientFrame,
  type ErrorFrame,
  type ReleaseDrainFrame,
} from './schemas.js';

// ---------------------------------------------------------------------------------------------
// The WebSocket the SDK needs (browsers, `ws`, undici and most engine runtimes provide it)

/** A handler type checked bivariantly, so that runtimes with richer event types fit. */
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'];

export type WebSocketLike = {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
};

/** `new WebSocket(url)`: the global one in browsers, `ws`'s in Node, or an engine's. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

const OPEN = 1;

/** Close codes the SDK acts on (contract §5, §6). */
export const CloseCode = {
  normal: 1000,
  abnormal: 1006,
  messageTooBig: 1009,
  serviceRestart: 1012,
  releaseDrain: 4000,
  sessionRevoked: 4001,
} as const;

// ---------------------------------------------------------------------------------------------
// Options, state, events

export type RealtimeOptions = {
  /** First reconnect delay ceiling (default 500 ms); doubles per failed attempt. */
  initialDelayMs?: number;
  /** Largest reconnect delay ceiling (default 30 s). */
  maxDelayMs?: number;
  /** A connection that stayed open this long resets the backoff (default 5 s). */
  stableAfterMs?: number;
  /** Handshake deadline (default 10 s). */
  connectTimeoutMs?: number;
  /** Application ping period (default 25 s; 0 disables). */
  pingIntervalMs?: number;
  /** No frame this long after a ping drops the connection (default 10 s). */
  pongTimeoutMs?: number;
  /** A send not confirmed within this long is rejected with `send_timeout` (default 30 s). */
  sendTimeoutMs?: number;
  /** Messages read from the history after a re-join to fill the gap (default 50, max 100; 0 disables). */
  catchUpLimit?: number;
  /** Message ids remembered for de-duplication (default 5000). */
  dedupeMemory?: number;
  /** Random source for the jitter (default Math.random). */
  random?: () => number;
};

export type RealtimeState = 'closed' | 'connecting' | 'open' | 'reconnecting';

/** Why the connection stopped for good (until `connect()` is called again). */
export type RealtimeStopReason = 'client' | 'signed_out' | 'session_revoked' | 'update_required';

export type ChatErrorEvent = Omit<ErrorFrame, 'type'>;

export type RealtimeEvents = {
  /** The connection state changed. */
  connectionState: { state: RealtimeState; previous: RealtimeState };
  /** A socket opened (channels are being re-joined). */
  connected: { reconnect: boolean };
  /** A socket closed. `willReconnect` false: stopped (see `stopReason`). */
  disconnected: { code: number; reason: string; willReconnect: boolean; stopReason: RealtimeStopReason | null };
  /** The next attempt is scheduled. */
  reconnecting: { attempt: number; delayMs: number; error: KaraxasError | null };
  /** The server confirmed a join; `rejoin` when the channel had been joined on an earlier socket. */
  joined: { channel: string; rejoin: boolean };
  /** A chat message, once per message. `replayed`: read from the history after a re-join. */
  message: { message: ChatMessage; replayed: boolean; own: boolean };
  /** An error frame not tied to a pending send or join (e.g. the frame budget's rate_limited). */
  chatError: ChatErrorEvent;
  /** The answer to the keepalive ping. */
  pong: { rttMs: number };
};

export type RealtimeDeps = {
  WebSocket: () => WebSocketConstructor;
  /** A fresh ticket (through the client's authenticated request path). */
  fetchTicket: () => Promise<string>;
  webSocketUrl: (ticket: string) => string;
  history: (channel: string, limit: number) => Promise<ChatPage>;
  currentUserId: () => string | null;
  emit: <K extends keyof RealtimeEvents>(event: K, payload: RealtimeEvents[K]) => void;
  /** Warnings (catch-up failure, unparseable frame). */
  warn: (code: string, message: string, cause?: unknown) => void;
  /** 4001: the session is gone. */
  onSessionRevoked: () => void;
  /** A `release.drain` frame (4000 follows after its grace period). */
  onDrain: (frame: ReleaseDrainFrame) => void;
  /** 4000 without a drain frame before it on that socket. */
  onDrainClose: () => void;
};

/** Ticket errors after which reconnecting cannot help. */
const FINAL_TICKET_ERRORS: Record<string, RealtimeStopReason> = {
  not_signed_in: 'signed_out',
  invalid_refresh_token: 'signed_out',
  refresh_token_reused: 'signed_out',
  client_update_required: 'update_required',
};

/**
 * The delay before reconnect attempt `attempt` (0-based): "equal jitter" — half the exponential
 * ceiling plus a random share of the other half, so clients disconnected together by a restart
 * do not come back together, and no attempt is immediate.
 */
export const backoffDelay = (attempt: number, initialDelayMs: number, maxDelayMs: number, random: () => number = Math.random): number => {
  const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
};

/** 128 random bits as 32 hex characters, from `crypto.getRandomValues` when the runtime has it. */
export const newClientMsgId = (): string => {
  const bytes = new Uint8Array(16);
  const webCrypto = (globalThis as { crypto?: { getRandomValues?: (array: Uint8Array) => Uint8Array } }).crypto;
  if (typeof webCrypto?.getRandomValues === 'function') webCrypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  let hex = '';
  for (const byte of bytes) hex += byte.toString(16).padStart(2, '0');
  return hex;
};

/** UTF-8 length of a string, without TextEncoder (not every engine has it). */
const utf8Length = (text: string): number => {
  let length = 0;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x80) length += 1;
    else if (code < 0x800) length += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      length += 4;
      i += 1;
    } else length += 3;
  }
  return length;
};

const textOf = (data: unknown): string | null => {
  if (typeof data === 'string') return data;
  const Decoder = (globalThis as { TextDecoder?: new () => { decode(input: ArrayBuffer | ArrayBufferView): string } }).TextDecoder;
  if (!Decoder) return null;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return new Decoder().decode(data);
  return null;
};

/** A set that forgets its oldest entries beyond `limit`. */
class RecentSet {
  readonly #items = new Set<string>();
  constructor(readonly limit: number) {}
  has(key: string) {
    return this.#items.has(key);
  }
  add(key: string) {
    this.#items.add(key);
    if (this.#items.size > this.limit) {
      for (const old of this.#items) {
        this.#items.delete(old);
        if (this.#items.size <= this.limit) break;
      }
    }
  }
  clear() {
    this.#items.clear();
  }
}

type Deferred<T> = { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void };
const deferred = <T>(): Deferred<T> => {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Callers may drop a promise (fire-and-forget join); its rejection is not an unhandled error.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
};

type PendingSend = Deferred<ChatMessage> & {
  channel: string;
  frame: string;
  timer: ReturnType<typeof setTimeout>;
  retryTimer?: ReturnType<typeof setTimeout>;
};

type Timer = ReturnType<typeof setTimeout>;

// ---------------------------------------------------------------------------------------------

export class RealtimeConnection {
  readonly #deps: RealtimeDeps;
  readonly #options: Required<RealtimeOptions>;

  #state: RealtimeState = 'closed';
  /** True while the game wants to be connected (between connect() and a stop). */
  #wanted = false;
  #socket: WebSocketLike | null = null;
  #openedAt = 0;
  #attempt = 0;
  /** Bumped by every attempt and stop; late callbacks of older attempts compare and bail out. */
  #generation = 0;
  #retryTimer: Timer | undefined;
  #connectTimer: Timer | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #pongTimer: Timer | undefined;
  #pingSentAt = 0;
  #drainNoticed = false;
  #everOpened = false;
  #connectWaiters: Array<Deferred<void>> = [];

  /** Channels the game wants to be in. */
  readonly #channels = new Set<string>();
  /** Channels joined on some socket before (for `rejoin`). */
  readonly #everJoined = new Set<string>();
  /** Channels whose join frame went out on the current socket / were confirmed on it. */
  readonly #joinSent = new Set<string>();
  readonly #joinedNow = new Set<string>();
  readonly #joinWaiters = new Map<string, Array<Deferred<void>>>();
  readonly #pending = new Map<string, PendingSend>();
  readonly #seen: RecentSet;
  /** Newest message seen per channel, for the catch-up after a re-join. */
  readonly #lastSeen = new Map<string, number>();

  constructor(deps: RealtimeDeps, options: RealtimeOptions = {}) {
    this.#deps = deps;
    this.#options = {
      initialDelayMs: options.initialDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      stableAfterMs: options.stableAfterMs ?? 5_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      pingIntervalMs: options.pingIntervalMs ?? 25_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 10_000,
      sendTimeoutMs: options.sendTimeoutMs ?? 30_000,
      catchUpLimit: Math.min(100, Math.max(0, options.catchUpLimit ?? 50)),
      dedupeMemory: options.dedupeMemory ?? 5_000,
      random: options.random ?? Math.random,
    };
    this.#seen = new RecentSet(this.#options.dedupeMemory);
  }

  get state(): RealtimeState {
    return this.#state;
  }

  /** The channels the connection is in (or will re-join). */
  get channels(): string[] {
    return [...this.#channels];
  }

  /** A new random clientMsgId (for optimistic UI: pass it to `send`). */
  newClientMsgId(): string {
    return newClientMsgId();
  }

  /**
   * Connects (a no-op when already connected or connecting). Resolves once a socket is open —
   * after as many reconnect attempts as it takes — and rejects when the connection is stopped
   * first (signed out, revoked, update required, `disconnect()`).
   */
  connect(): Promise<void> {
    if (this.#state === 'open') return Promise.resolve();
    try {
      this.#deps.WebSocket();
    } catch (error) {
      return Promise.reject(error);
    }
    const waiter = deferred<void>();
    this.#connectWaiters.push(waiter);
    if (!this.#wanted) {
      this.#wanted = true;
      this.#attempt = 0;
      void this.#open();
    }
    return waiter.promise;
  }

  /** Closes the socket and stops reconnecting. Channels are kept: `connect()` re-joins them. */
  disconnect(): void {
    this.stop('client');
  }

  /**
   * Joins `channel` (remembered across reconnects). Resolves when the server confirmed it — on
   * the current socket, or on the next one when not connected.
   */
  join(channel: string): Promise<void> {
    if (!channelNamePattern.test(channel)) {
      return Promise.reject(clientError('validation_failed', 'Invalid channel name', [{ path: 'channel', message: 'Invalid channel name' }]));
    }
    this.#channels.add(channel);
    if (this.#joinedNow.has(channel)) return Promise.resolve();
    const waiter = deferred<void>();
    const waiters = this.#joinWaiters.get(channel) ?? [];
    waiters.push(waiter);
    this.#joinWaiters.set(channel, waiters);
    if (this.#state === 'open' && !this.#joinSent.has(channel)) {
      this.#joinSent.add(channel);
      this.#sendFrame({ type: 'chat.join', channel });
    }
    return waiter.promise;
  }

  /** Leaves `channel` (no longer re-joined). */
  leave(channel: string): void {
    if (!this.#channels.delete(channel)) return;
    this.#everJoined.delete(channel);
    this.#lastSeen.delete(channel);
    this.#rejectJoin(channel, clientError('not_joined', `Left ${channel}`));
    if (this.#state === 'open' && this.#joinSent.has(channel)) this.#sendFrame({ type: 'chat.leave', channel });
    this.#joinSent.delete(channel);
    this.#joinedNow.delete(channel);
  }

  /**
   * Sends a chat message to a joined channel. Resolves with the stored message once the server
   * echoed it (the same message again for a repeated `clientMsgId`); a send made while
   * reconnecting goes out after the re-join. Rejects with the server's error (`rate_limited`,
   * `muted` with `retryAfter`, `validation_failed`), `send_timeout`, or `connection_closed`.
   */
  send(channel: string, text: string, options: { clientMsgId?: string } = {}): Promise<ChatMessage> {
    if (!this.#channels.has(channel)) return Promise.reject(clientError('not_joined', `Join ${channel} before sending to it`));
    const clientMsgId = options.clientMsgId ?? newClientMsgId();
    if (!clientMsgIdPattern.test(clientMsgId)) {
      return Promise.reject(
        clientError('validation_failed', 'Invalid clientMsgId', [{ path: 'clientMsgId', message: 'must be 1-64 characters: A-Z, a-z, 0-9, ".", "_", ":", "-"' }]),
      );
    }
    const existing = this.#pending.get(clientMsgId);
    if (existing) return existing.promise;
    const frame = JSON.stringify({ type: 'chat.send', channel, text, clientMsgId } satisfies ClientFrame);
    if (utf8Length(frame) > MAX_FRAME_BYTES) {
      return Promise.reject(clientError('frame_too_large', `A frame is at most ${MAX_FRAME_BYTES} bytes; the message is too long`));
    }
    if (!this.#wanted) return Promise.reject(clientError('connection_closed', 'Not connected: call connect() first'));
    const pending: PendingSend = {
      ...deferred<ChatMessage>(),
      channel,
      frame,
      timer: setTimeout(() => {
        this.#pending.delete(clientMsgId);
        pending.reject(clientError('send_timeout', `The server did not confirm the message within ${this.#options.sendTimeoutMs} ms`));
      }, this.#options.sendTimeoutMs),
    };
    this.#pending.set(clientMsgId, pending);
    if (this.#state === 'open') this.#sendRaw(frame);
    return pending.promise;
  }

  /** Stops for good (until `connect()`): closes the socket, rejects what is pending. */
  stop(reason: RealtimeStopReason, closed?: { code: number; reason: string }): void {
    const wasActive = this.#wanted || this.#socket !== null;
    this.#wanted = false;
    this.#generation += 1;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const socket = this.#socket;
    this.#detach();
    if (socket && !closed) {
      try {
        socket.close(CloseCode.normal, reason);
      } catch {
        // already closing
      }
    }
    const error =
      reason === 'session_revoked'
        ? new KaraxasError({ code: 'session_revoked', message: 'The session was revoked', source: 'server', status: 0 })
        : reason === 'update_required'
          ? new KaraxasError({ code: 'client_update_required', message: 'This client version must be updated', source: 'server', status: 0 })
          : reason === 'signed_out'
            ? clientError('not_signed_in', 'Signed out')
            : clientError('connection_closed', 'Disconnected');
    for (const waiter of this.#connectWaiters.splice(0)) waiter.reject(error);
    for (const channel of [...this.#joinWaiters.keys()]) this.#rejectJoin(channel, error);
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      clearTimeout(pending.retryTimer);
      pending.reject(error);
      this.#pending.delete(id);
    }
    if (reason === 'signed_out' || reason === 'session_revoked') {
      // Another account may sign in next: forget this one's channels and history.
      this.#channels.clear();
      this.#everJoined.clear();
      this.#lastSeen.clear();
      this.#seen.clear();
    }
    if (wasActive) {
      this.#deps.emit('disconnected', {
        code: closed?.code ?? CloseCode.normal,
        reason: closed?.reason ?? reason,
        willReconnect: false,
        stopReason: reason,
      });
    }
    this.#setState('closed');
  }

  // ---- internals ----------------------------------------------------------------------------

  #setState(state: RealtimeState) {
    const previous = this.#state;
    if (previous === state) return;
    this.#state = state;
    this.#deps.emit('connectionState', { state, previous });
  }

  async #open(): Promise<void> {
    const generation = ++this.#generation;
    this.#setState('connecting');
    let ticket: string;
    try {
      ticket = await this.#deps.fetchTicket();
    } catch (error) {
      if (generation !== this.#generation || !this.#wanted) return;
      const karaxasError =
        error instanceof KaraxasError
          ? error
          : new KaraxasError({ code: 'connection_failed', message: 'Could not get a websocket ticket', source: 'network', cause: error });
      const final = FINAL_TICKET_ERRORS[karaxasError.code];
      if (final) {
        this.stop(final);
        return;
      }
      this.#scheduleReconnect(karaxasError, (karaxasError.retryAfter ?? 0) * 1000);
      return;
    }
    if (generation !== this.#generation || !this.#wanted) return;

    let socket: WebSocketLike;
    try {
      const Constructor = this.#deps.WebSocket();
      socket = new Constructor(this.#deps.webSocketUrl(ticket));
    } catch (error) {
      this.#scheduleReconnect(
        error instanceof KaraxasError ? error : new KaraxasError({ code: 'connection_failed', message: 'Could not open a websocket', source: 'network', cause: error }),
      );
      return;
    }
    this.#socket = socket;
    this.#drainNoticed = false;
    this.#joinSent.clear();
    this.#joinedNow.clear();
    this.#connectTimer = setTimeout(() => {
      if (this.#socket === socket && this.#state !== 'open') this.#drop(socket, 'connect_timeout');
    }, this.#options.connectTimeoutMs);

    socket.onopen = () => {
      if (this.#socket !== socket) return;
      this.#onOpen(socket);
    };
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      this.#onFrame(event.data);
    };
    socket.onerror = () => {
      // A close event follows (1006 for a refused upgrade or a lost connection).
    };
    socket.onclose = (event) => {
      if (this.#socket !== socket) return;
      this.#onClose(event.code, event.reason ?? '');
    };
  }

  #onOpen(socket: WebSocketLike) {
    clearTimeout(this.#connectTimer);
    const reconnect = this.#everOpened;
    this.#everOpened = true;
    this.#openedAt = Date.now();
    this.#setState('open');
    this.#deps.emit('connected', { reconnect });
    // Frames are handled in order per connection: joins first, then the unconfirmed sends.
    for (const channel of this.#channels) {
      this.#joinSent.add(channel);
      this.#sendFrame({ type: 'chat.join', channel });
    }
    for (const pending of this.#pending.values()) this.#sendRaw(pending.frame);
    this.#startKeepalive(socket);
    for (const waiter of this.#connectWaiters.splice(0)) waiter.resolve();
  }

  #onClose(code: number, reason: string) {
    const openedFor = this.#state === 'open' ? Date.now() - this.#openedAt : 0;
    this.#detach();
    if (code === CloseCode.sessionRevoked) {
      this.stop('session_revoked', { code, reason });
      this.#deps.onSessionRevoked();
      return;
    }
    if (code === CloseCode.releaseDrain) {
      const noticed = this.#drainNoticed;
      this.stop('update_required', { code, reason });
      if (!noticed) this.#deps.onDrainClose();
      return;
    }
    if (!this.#wanted) {
      this.#setState('closed');
      return;
    }
    if (openedFor >= this.#options.stableAfterMs) this.#attempt = 0;
    this.#deps.emit('disconnected', { code, reason, willReconnect: true, stopReason: null });
    this.#scheduleReconnect(null);
  }

  /** Gives up on a socket that is not answering (connect or keepalive timeout): as a 1006. */
  #drop(socket: WebSocketLike, why: string) {
    const terminate = (socket as { terminate?: () => void }).terminate;
    try {
      if (typeof terminate === 'function') terminate.call(socket);
      else socket.close(CloseCode.normal, why);
    } catch {
      // ignore
    }
    if (this.#socket === socket) this.#onClose(CloseCode.abnormal, why);
  }

  /** Forgets the current socket: no more callbacks from it, timers stopped. */
  #detach() {
    const socket = this.#socket;
    this.#socket = null;
    clearTimeout(this.#connectTimer);
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pongTimer);
    this.#pingTimer = undefined;
    this.#pongTimer = undefined;
    this.#joinSent.clear();
    this.#joinedNow.clear();
    if (socket) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
      // Keep a no-op error handler: some runtimes report unhandled socket errors loudly.
      socket.onerror = () => undefined;
    }
  }

  #scheduleReconnect(error: KaraxasError | null, minimumDelayMs = 0) {
    if (!this.#wanted) return;
    const attempt = this.#attempt;
    this.#attempt += 1;
    const delayMs = Math.max(minimumDelayMs, backoffDelay(attempt, this.#options.initialDelayMs, this.#options.maxDelayMs, this.#options.random));
    this.#setState('reconnecting');
    this.#deps.emit('reconnecting', { attempt: attempt + 1, delayMs, error });
    clearTimeout(this.#retryTimer);
    const generation = this.#generation;
    this.#retryTimer = setTimeout(() => {
      if (generation !== this.#generation || !this.#wanted) return;
      void this.#open();
    }, delayMs);
  }

  #startKeepalive(socket: WebSocketLike) {
    if (this.#options.pingIntervalMs <= 0) return;
    this.#pingTimer = setInterval(() => {
      if (this.#socket !== socket || this.#pongTimer !== undefined) return;
      this.#pingSentAt = Date.now();
      this.#sendFrame({ type: 'ping' });
      this.#pongTimer = setTimeout(() => {
        if (this.#socket === socket) this.#drop(socket, 'keepalive_timeout');
      }, this.#options.pongTimeoutMs);
    }, this.#options.pingIntervalMs);
  }

  #sendFrame(frame: ClientFrame) {
    this.#sendRaw(JSON.stringify(frame));
  }

  #sendRaw(text: string) {
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN) return;
    try {
      socket.send(text);
    } catch {
      // The close event follows; unconfirmed sends go out again after the reconnect.
    }
  }

  #rejectJoin(channel: string, error: unknown) {
    for (const waiter of this.#joinWaiters.get(channel) ?? []) waiter.reject(error);
    this.#joinWaiters.delete(channel);
  }

  #onFrame(data: unknown) {
    // Any frame proves the connection alive.
    if (this.#pongTimer !== undefined) {
      clearTimeout(this.#pongTimer);
      this.#pongTimer = undefined;
    }
    const text = textOf(data);
    let json: unknown;
    try {
      json = text === null ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    const parsed = serverFrameSchema.safeParse(json);
    if (!parsed.success) {
      const type = (json as { type?: unknown } | undefined)?.type;
      // Frame types added later are ignored; a malformed known frame is worth a warning.
      if (typeof type !== 'string' || ['chat.message', 'chat.joined', 'chat.left', 'pong', 'error', 'release.drain'].includes(type)) {
        this.#deps.warn('invalid_frame', 'The server sent a frame that does not match the contract');
      }
      return;
    }
    const frame = parsed.data;
    switch (frame.type) {
      case 'chat.message': {
        const { type: _type, ...message } = frame;
        this.#onMessage(message, false);
        return;
      }
      case 'chat.joined': {
        if (!this.#channels.has(frame.channel)) return;
        this.#joinedNow.add(frame.channel);
        const rejoin = this.#everJoined.has(frame.channel);
        this.#everJoined.add(frame.channel);
        for (const waiter of this.#joinWaiters.get(frame.channel) ?? []) waiter.resolve();
        this.#joinWaiters.delete(frame.channel);
        this.#deps.emit('joined', { channel: frame.channel, rejoin });
        if (rejoin) void this.#catchUp(frame.channel);
        return;
      }
      case 'chat.left':
        return;
      case 'pong':
        this.#deps.emit('pong', { rttMs: Math.max(0, Date.now() - this.#pingSentAt) });
        return;
      case 'release.drain':
        this.#drainNoticed = true;
        this.#deps.onDrain(frame);
        return;
      case 'error':
        this.#onErrorFrame(frame);
        return;
    }
  }

  #onErrorFrame(frame: ErrorFrame) {
    const { type: _type, ...event } = frame;
    const pending = frame.clientMsgId === undefined ? undefined : this.#pending.get(frame.clientMsgId);
    const clientMsgId = frame.clientMsgId;
    if (pending && clientMsgId !== undefined) {
      if (frame.code === 'service_unavailable') {
        // The server could not store it right now: the same clientMsgId again shortly.
        clearTimeout(pending.retryTimer);
        pending.retryTimer = setTimeout(() => {
          if (this.#pending.get(clientMsgId) === pending && this.#state === 'open') this.#sendRaw(pending.frame);
        }, (frame.retryAfter ?? 1) * 1000);
        return;
      }
      clearTimeout(pending.timer);
      clearTimeout(pending.retryTimer);
      this.#pending.delete(clientMsgId);
      pending.reject(
        new KaraxasError({
          code: frame.code,
          message: frame.message ?? `The server refused the message (${frame.code})`,
          source: 'server',
          details: frame.details,
          retryAfter: frame.retryAfter ?? null,
        }),
      );
      return;
    }
    if (frame.channel !== undefined && frame.code === 'too_many_channels') {
      this.#channels.delete(frame.channel);
      this.#rejectJoin(frame.channel, new KaraxasError({ code: frame.code, message: 'Too many channels on one connection', source: 'server' }));
    }
    this.#deps.emit('chatError', event);
  }

  #onMessage(message: ChatMessage, replayed: boolean) {
    // Confirm the pending send first: a repeated clientMsgId is answered with the stored message again.
    const me = this.#deps.currentUserId();
    const own = me !== null && message.userId === me;
    if ((own || me === null) && message.clientMsgId !== null) {
      const pending = this.#pending.get(message.clientMsgId);
      if (pending) {
        clearTimeout(pending.timer);
        clearTimeout(pending.retryTimer);
        this.#pending.delete(message.clientMsgId);
        pending.resolve(message);
      }
    }
    const clientKey = message.clientMsgId === null ? null : `${message.userId}:${message.clientMsgId}`;
    if (this.#seen.has(message.id) || (clientKey !== null && this.#seen.has(clientKey))) return;
    this.#seen.add(message.id);
    if (clientKey !== null) this.#seen.add(clientKey);
    const sentAt = Date.parse(message.sentAt);
    if (sentAt > (this.#lastSeen.get(message.channel) ?? 0)) this.#lastSeen.set(message.channel, sentAt);
    this.#deps.emit('message', { message, replayed, own });
  }

  /** After a re-join: the messages of `channel` stored since the newest one seen. */
  async #catchUp(channel: string) {
    const since = this.#lastSeen.get(channel);
    if (since === undefined || this.#options.catchUpLimit === 0) return;
    const generation = this.#generation;
    try {
      const page = await this.#deps.history(channel, this.#options.catchUpLimit);
      if (generation !== this.#generation || !this.#channels.has(channel)) return;
      const missed = page.items
        .filter((message) => chatMessageSchema.safeParse(message).success && Date.parse(message.sentAt) >= since)
        .reverse();
      for (const message of missed) this.#onMessage(message, true);
    } catch (error) {
      this.#deps.warn('catch_up_failed', `Could not read the messages of ${channel} missed while reconnecting`, error);
    }
  }
}
