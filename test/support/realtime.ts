/**
 * Websocket helpers for the realtime tests: real `ws` clients against real services.
 */
import { WebSocket, type ClientOptions } from 'ws';
import type { Api, TokenPair } from './api.js';

export type Frame = { type: string; [key: string]: unknown };

/** The outcome of an upgrade attempt: an open socket, or the HTTP response that refused it. */
export type UpgradeResult =
  | { ok: true; socket: TestSocket; headers: Record<string, string | string[] | undefined> }
  | { ok: false; status: number; body: string; headers: Record<string, string | string[] | undefined> };

/** A connected client that collects frames and lets a test wait for the ones it expects. */
export class TestSocket {
  readonly frames: Frame[] = [];
  /** Frames (in arrival order) with the time they arrived (performance.now()). */
  readonly arrivals: Array<{ frame: Frame; at: number }> = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  closeInfo: { code: number; reason: string } | undefined;
  readonly #waiters = new Set<() => void>();

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '<binary>' : data.toString();
      let frame: Frame;
      try {
        frame = JSON.parse(text) as Frame;
      } catch {
        frame = { type: '<unparseable>', text };
      }
      this.frames.push(frame);
      this.arrivals.push({ frame, at: performance.now() });
      for (const wake of [...this.#waiters]) wake();
    });
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const wake of [...this.#waiters]) wake();
        resolve(this.closeInfo);
      });
    });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(frame: unknown) {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /**
   * Resolves with the first not-yet-taken frame matching `predicate` (removing it from `frames`);
   * rejects after `timeoutMs` or when the socket closes first.
   */
  take(predicate: (frame: Frame) => boolean, timeoutMs = 2_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const index = this.frames.findIndex(predicate);
        if (index >= 0) {
          cleanup();
          resolve(this.frames.splice(index, 1)[0]!);
          return true;
        }
        if (this.closeInfo) {
          cleanup();
          reject(new Error(`socket closed (${this.closeInfo.code} ${this.closeInfo.reason}) before the expected frame arrived`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching frame within ${timeoutMs} ms; have ${JSON.stringify(this.frames).slice(0, 500)}`));
      }, timeoutMs);
      const wake = () => void check();
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
      };
      this.#waiters.add(wake);
      check();
    });
  }

  /** Sends `frame` and takes the first frame matching `predicate` (default: any). */
  async request(frame: unknown, predicate: (frame: Frame) => boolean = () => true, timeoutMs = 2_000) {
    const reply = this.take(predicate, timeoutMs);
    this.send(frame);
    return reply;
  }

  async join(channel: string) {
    return this.request({ type: 'chat.join', channel }, (f) => f.type === 'chat.joined' && f.channel === channel);
  }

  /** Resolves with the close code, or rejects after `timeoutMs`. */
  async closedWithin(timeoutMs: number): Promise<{ code: number; reason: string }> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.closed,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
  }
}

/** The `ws://` URL of a service's `/ws` with the given query. */
export const wsUrl = (baseUrl: string, query: Record<string, string> = {}) => {
  const url = new URL('/ws', baseUrl.replace(/^http/, 'ws'));
  for (const [key, value] of Object.entries(query)) url.searchParams.append(key, value);
  return url.toString();
};

/** Attempts an upgrade; never rejects for an HTTP refusal. */
export const upgrade = (url: string, options: ClientOptions = {}): Promise<UpgradeResult> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: 5_000, ...options });
    let socket: TestSocket | undefined;
    ws.once('upgrade', (response) => {
      socket = new TestSocket(ws);
      ws.once('open', () => resolve({ ok: true, socket: socket!, headers: response.headers }));
    });
    ws.once('unexpected-response', (_request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ ok: false, status: response.statusCode ?? 0, body, headers: response.headers }));
      response.on('error', reject);
    });
    ws.once('error', (error) => {
      if (!socket) reject(error);
    });
  });

/** A fresh ticket for the bearer of `accessToken`. */
export const ticketFor = async (api: Api, accessToken: string): Promise<string> => {
  const response = await api.post<{ ticket: string; expiresIn: number }>('/auth/ws-ticket', undefined, accessToken);
  if (response.status !== 201) throw new Error(`ws-ticket failed: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body.ticket;
};

/** Opens a socket on `baseUrl` with a fresh ticket obtained through `api` (any instance of the same database). */
export const openSocket = async (api: Api, baseUrl: string, accessToken: string, options: ClientOptions = {}): Promise<TestSocket> => {
  const result = await upgrade(wsUrl(baseUrl, { ticket: await ticketFor(api, accessToken) }), options);
  if (!result.ok) throw new Error(`upgrade refused: ${result.status} ${result.body}`);
  return result.socket;
};

/** Registers and signs in a fresh player. */
export const signedInPlayer = async (api: Api, displayName = 'Player') => {
  const account = await api.register({ displayName });
  const pair: TokenPair = await api.login(account);
  return { account, pair, userId: account.id, token: pair.accessToken };
};

/** Polls `condition` every 25 ms until it holds or `timeoutMs` passes. */
export const eventually = async (condition: () => boolean | Promise<boolean>, timeoutMs: number, what = 'condition'): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not hold within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
};
