/**
 * A tiny stand-in for the API (plain node:http + ws, in memory) that the pentest can run
 * against, with switchable weaknesses. With no weakness switched on it holds every rule the
 * pentest checks; each switch breaks exactly one, so a test can prove that the matching check
 * reports it — a check that cannot fail is worthless.
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { totpCode, totpStep } from '../../app/pentest/totp.js';

export type Weakness =
  /** /auth/me accepts `alg: none` tokens. */
  | 'acceptAlgNone'
  /** The JWT signature is not checked at all (claims are trusted). */
  | 'noSignatureCheck'
  /** Error bodies carry a stack trace. */
  | 'leakStack'
  /** `X-Powered-By: Express` on every answer. */
  | 'poweredBy'
  /** No X-Frame-Options / Referrer-Policy / Permissions-Policy. */
  | 'missingSecurityHeaders'
  /** `Access-Control-Allow-Origin: *` on every answer. */
  | 'wildcardCors'
  /** Accounts never lock. */
  | 'noLockout'
  /** The per-IP limiter keys on X-Forwarded-For. */
  | 'trustForwardedFor'
  /** /ws accepts any Origin. */
  | 'anyOrigin'
  /** Tickets can be used more than once. */
  | 'ticketReplay'
  /** Tickets never expire. */
  | 'ticketNoExpiry'
  /** /ws accepts `?token=<access token>`. */
  | 'bearerInQuery'
  /** Websocket frames of any size are accepted. */
  | 'noFrameLimit'
  /** Rotated refresh tokens keep working; no reuse detection. */
  | 'refreshReplay'
  /** A TOTP code can be used again. */
  | 'totpReplay'
  /** A refresh token is accepted as a bearer access token. */
  | 'refreshAsBearer'
  /** Unknown addresses answer faster than existing accounts (no dummy hashing). */
  | 'timingLeak'
  /** Bodies are read whatever their size. */
  | 'noBodyLimit'
  /** headersTimeout of a minute. */
  | 'slowHeaders';

export type WeakServer = { url: string; close: () => Promise<void> };

type User = { id: string; email: string; password: string; displayName: string; totpSecret?: string; totpActive: boolean; lastStep: number };
type Session = { id: string; userId: string; revoked: boolean };

const SECRET = randomBytes(32);
const ISSUER = 'weak-fixture';
const AUDIENCE = 'karaxas-game';
const ACCESS_TTL = 900;
const TICKET_TTL = 2;
const RATE_LIMIT = 10;
const RATE_WINDOW_MS = 1_000;
const LOCKOUT_THRESHOLD = 3;
const BODY_LIMIT = 64 * 1024;
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(code);
  }
}

const b64 = (value: string | Buffer) => Buffer.from(value).toString('base64url');
const hmac = (input: string) => createHmac('sha256', SECRET).update(input).digest();

/** Starts the fixture on an ephemeral port. */
export const startWeakServer = async (weaknesses: readonly Weakness[] = []): Promise<WeakServer> => {
  const weak = new Set(weaknesses);
  const users = new Map<string, User>();
  const sessions = new Map<string, Session>();
  const refreshTokens = new Map<string, { sessionId: string; rotated: boolean }>();
  const tickets = new Map<string, { sessionId: string; used: boolean; expiresAt: number }>();
  const mfaTokens = new Map<string, { userId: string; used: boolean }>();
  const lockouts = new Map<string, { failures: number; lockedUntil: number }>();
  const rate = new Map<string, { count: number; resetAt: number }>();

  const baseHeaders = (requestId: string): Record<string, string> => ({
    'X-Request-ID': requestId,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...(weak.has('missingSecurityHeaders')
      ? {}
      : { 'X-Frame-Options': 'DENY', 'Referrer-Policy': 'no-referrer', 'Permissions-Policy': 'camera=(), microphone=(), geolocation=()' }),
    ...(weak.has('poweredBy') ? { 'X-Powered-By': 'Express' } : {}),
    ...(weak.has('wildcardCors') ? { 'Access-Control-Allow-Origin': '*' } : {}),
  });

  const sendJson = (res: ServerResponse, requestId: string, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { ...baseHeaders(requestId), ...(text ? { 'Content-Type': 'application/json; charset=utf-8' } : {}), ...headers });
    res.end(text);
  };

  const envelope = (code: string, requestId: string) => ({
    error: {
      code,
      message: weak.has('leakStack') ? `${code}: ${new Error(code).stack ?? ''}` : `The request failed (${code}).`,
      requestId,
    },
  });

  // ---- tokens --------------------------------------------------------------------------------

  const signAccess = (user: User, sessionId: string) => {
    const now = Math.floor(Date.now() / 1000);
    const input = `${b64(JSON.stringify({ alg: 'HS256', typ: 'at+jwt', kid: 'k1' }))}.${b64(
      JSON.stringify({ sub: user.id, sid: sessionId, role: 'player', amr: ['pwd'], iat: now, exp: now + ACCESS_TTL, iss: ISSUER, aud: AUDIENCE }),
    )}`;
    return `${input}.${hmac(input).toString('base64url')}`;
  };

  const authenticate = (req: IncomingMessage): { user: User; session: Session } => {
    const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!match) throw new HttpError(401, 'unauthorized');
    const token = match[1]!;
    if (weak.has('refreshAsBearer') && refreshTokens.has(token)) {
      const session = sessions.get(refreshTokens.get(token)!.sessionId)!;
      return { user: [...users.values()].find((u) => u.id === session.userId)!, session };
    }
    const parts = token.split('.');
    if (parts.length !== 3) throw new HttpError(401, 'unauthorized');
    let header: Record<string, unknown>;
    let claims: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString()) as Record<string, unknown>;
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString()) as Record<string, unknown>;
    } catch {
      throw new HttpError(401, 'unauthorized');
    }
    const unsignedAllowed = weak.has('acceptAlgNone') && String(header.alg).toLowerCase() === 'none';
    if (!unsignedAllowed && !weak.has('noSignatureCheck')) {
      if (header.alg !== 'HS256' || header.typ !== 'at+jwt') throw new HttpError(401, 'unauthorized');
      const expected = hmac(`${parts[0]}.${parts[1]}`);
      const given = Buffer.from(parts[2]!, 'base64url');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new HttpError(401, 'unauthorized');
      if (typeof claims.exp !== 'number' || claims.exp < Date.now() / 1000 || claims.aud !== AUDIENCE || claims.iss !== ISSUER) {
        throw new HttpError(401, 'unauthorized');
      }
    }
    const session = sessions.get(String(claims.sid));
    const user = [...users.values()].find((candidate) => candidate.id === claims.sub);
    if (!session || session.revoked || !user || session.userId !== user.id) throw new HttpError(401, 'unauthorized');
    return { user, session };
  };

  const openSession = (user: User) => {
    const session: Session = { id: randomUUID(), userId: user.id, revoked: false };
    sessions.set(session.id, session);
    const refreshToken = `kxr_${randomBytes(32).toString('base64url')}`;
    refreshTokens.set(refreshToken, { sessionId: session.id, rotated: false });
    return { accessToken: signAccess(user, session.id), refreshToken, tokenType: 'Bearer', expiresIn: ACCESS_TTL, refreshExpiresIn: 86_400, sessionId: session.id };
  };

  // ---- throttling ----------------------------------------------------------------------------

  const throttle = (req: IncomingMessage, headers: Record<string, string>) => {
    const forwarded = req.headers['x-forwarded-for'];
    const key = weak.has('trustForwardedFor') && typeof forwarded === 'string' ? forwarded : (req.socket.remoteAddress ?? '');
    const now = Date.now();
    let entry = rate.get(key);
    if (!entry || entry.resetAt <= now) rate.set(key, (entry = { count: 0, resetAt: now + RATE_WINDOW_MS }));
    entry.count += 1;
    const reset = String(Math.max(1, Math.ceil((entry.resetAt - now) / 1000)));
    Object.assign(headers, { 'RateLimit-Limit': String(RATE_LIMIT), 'RateLimit-Remaining': String(Math.max(0, RATE_LIMIT - entry.count)), 'RateLimit-Reset': reset });
    if (entry.count > RATE_LIMIT) throw new HttpError(429, 'rate_limited', { ...headers, 'Retry-After': reset });
  };

  const assertNotLocked = (email: string) => {
    const lock = lockouts.get(email);
    if (lock && lock.lockedUntil > Date.now()) throw new HttpError(429, 'account_locked', { 'Retry-After': '30' });
  };
  const recordFailure = (email: string) => {
    if (weak.has('noLockout')) return;
    const lock = lockouts.get(email) ?? { failures: 0, lockedUntil: 0 };
    lock.failures += 1;
    if (lock.failures >= LOCKOUT_THRESHOLD) {
      lock.failures = 0;
      lock.lockedUntil = Date.now() + 30_000;
    }
    lockouts.set(email, lock);
    if (lock.lockedUntil > Date.now()) throw new HttpError(429, 'account_locked', { 'Retry-After': '30' });
  };

  // ---- bodies --------------------------------------------------------------------------------

  const readJson = async (req: IncomingMessage): Promise<Record<string, unknown>> => {
    const declared = Number(req.headers['content-length'] ?? '0');
    if (!weak.has('noBodyLimit') && declared > BODY_LIMIT) throw new HttpError(413, 'payload_too_large', { Connection: 'close' });
    if (!/^application\/json\s*(;\s*charset=utf-8\s*)?$/i.test(req.headers['content-type'] ?? '')) throw new HttpError(415, 'unsupported_media_type');
    // Listeners, not `for await`: leaving that loop early would destroy the socket before the 413 is written.
    const chunks = await new Promise<Buffer[]>((resolve, reject) => {
      const received: Buffer[] = [];
      let size = 0;
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        received.push(chunk);
        if (!weak.has('noBodyLimit') && size > BODY_LIMIT) {
          req.off('data', onData);
          req.pause();
          reject(new HttpError(413, 'payload_too_large', { Connection: 'close' }));
        }
      };
      req.on('data', onData);
      req.once('end', () => resolve(received));
      req.once('error', reject);
    });
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new HttpError(400, 'invalid_json');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'validation_failed');
    return body as Record<string, unknown>;
  };
  const text = (body: Record<string, unknown>, name: string) => {
    const value = body[name];
    if (typeof value !== 'string' || value.length === 0 || value.length > 256) throw new HttpError(400, 'validation_failed');
    return value;
  };

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const verifyCode = (user: User, code: string) => {
    if (!user.totpSecret) return false;
    const now = totpStep();
    for (const step of [now - 1, now, now + 1]) {
      if (totpCode(user.totpSecret, step) === code && (weak.has('totpReplay') || step > user.lastStep)) {
        user.lastStep = Math.max(user.lastStep, step);
        return true;
      }
    }
    return false;
  };

  // ---- routes --------------------------------------------------------------------------------

  const routes: Record<string, Partial<Record<string, (req: IncomingMessage, headers: Record<string, string>, url: URL) => Promise<[number, unknown]>>>> = {
    '/healthz': { GET: async () => [200, { status: 'ok' }] },
    '/auth/register': {
      POST: async (req, headers) => {
        throttle(req, headers);
        const body = await readJson(req);
        const email = text(body, 'email').toLowerCase();
        const password = text(body, 'password');
        if (users.has(email)) throw new HttpError(409, 'email_taken');
        const user: User = { id: randomUUID(), email, password, displayName: text(body, 'displayName'), totpActive: false, lastStep: 0 };
        users.set(email, user);
        return [201, { user: { id: user.id, email, displayName: user.displayName, role: 'player', mfaEnabled: false, createdAt: new Date().toISOString() } }];
      },
    },
    '/auth/login': {
      POST: async (req, headers) => {
        throttle(req, headers);
        const body = await readJson(req);
        const email = text(body, 'email').toLowerCase();
        const password = text(body, 'password');
        if (!weak.has('noLockout')) assertNotLocked(email);
        const user = users.get(email);
        // Stands in for password hashing: the same work for unknown addresses, unless leaking.
        if (user || !weak.has('timingLeak')) await sleep(25);
        if (!user || user.password !== password) {
          recordFailure(email);
          throw new HttpError(401, 'invalid_credentials');
        }
        lockouts.delete(email);
        if (user.totpActive) {
          const mfaToken = `kxm_${randomBytes(32).toString('base64url')}`;
          mfaTokens.set(mfaToken, { userId: user.id, used: false });
          return [200, { mfaRequired: true, mfaToken, expiresIn: 300 }];
        }
        return [200, openSession(user)];
      },
    },
    '/auth/mfa/verify': {
      POST: async (req, headers) => {
        throttle(req, headers);
        const body = await readJson(req);
        const challenge = mfaTokens.get(text(body, 'mfaToken'));
        if (!challenge || challenge.used) throw new HttpError(401, 'invalid_mfa_token');
        challenge.used = true;
        const user = [...users.values()].find((candidate) => candidate.id === challenge.userId)!;
        if (!verifyCode(user, text(body, 'code'))) throw new HttpError(401, 'invalid_mfa_code');
        return [200, openSession(user)];
      },
    },
    '/auth/mfa/totp/enroll': {
      POST: async (req) => {
        const { user } = authenticate(req);
        user.totpSecret = Array.from(randomBytes(32), (byte) => BASE32[byte % 32]).join('');
        return [200, { secret: user.totpSecret, otpauthUri: `otpauth://totp/Weak:${user.email}?secret=${user.totpSecret}` }];
      },
    },
    '/auth/mfa/totp/activate': {
      POST: async (req, headers) => {
        throttle(req, headers);
        const { user } = authenticate(req);
        const body = await readJson(req);
        if (!verifyCode(user, text(body, 'code'))) throw new HttpError(401, 'invalid_mfa_code');
        user.totpActive = true;
        return [200, { recoveryCodes: Array.from({ length: 10 }, () => randomBytes(8).toString('hex')) }];
      },
    },
    '/auth/refresh': {
      POST: async (req, headers) => {
        throttle(req, headers);
        const body = await readJson(req);
        const token = text(body, 'refreshToken');
        const entry = refreshTokens.get(token);
        const session = entry ? sessions.get(entry.sessionId) : undefined;
        if (!entry || !session || session.revoked) throw new HttpError(401, 'invalid_refresh_token');
        if (entry.rotated && !weak.has('refreshReplay')) {
          for (const other of sessions.values()) if (other.userId === session.userId) other.revoked = true;
          throw new HttpError(401, 'refresh_token_reused');
        }
        entry.rotated = true;
        const user = [...users.values()].find((candidate) => candidate.id === session.userId)!;
        const refreshToken = `kxr_${randomBytes(32).toString('base64url')}`;
        refreshTokens.set(refreshToken, { sessionId: session.id, rotated: false });
        return [200, { accessToken: signAccess(user, session.id), refreshToken, tokenType: 'Bearer', expiresIn: ACCESS_TTL, refreshExpiresIn: 86_400, sessionId: session.id }];
      },
    },
    '/auth/me': {
      GET: async (req) => {
        const { user } = authenticate(req);
        return [200, { user: { id: user.id, email: user.email, displayName: user.displayName, role: 'player', mfaEnabled: user.totpActive, createdAt: new Date().toISOString() } }];
      },
    },
    '/auth/logout': {
      POST: async (req) => {
        authenticate(req).session.revoked = true;
        return [204, undefined];
      },
    },
    '/auth/ws-ticket': {
      POST: async (req) => {
        const { session } = authenticate(req);
        const ticket = `kxt_${randomBytes(32).toString('base64url')}`;
        tickets.set(ticket, { sessionId: session.id, used: false, expiresAt: Date.now() + TICKET_TTL * 1000 });
        return [201, { ticket, expiresIn: TICKET_TTL }];
      },
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const requestId = randomUUID();
    const headers: Record<string, string> = {};
    try {
      const url = new URL(req.url ?? '/', 'http://fixture');
      const sessionMatch = /^\/auth\/sessions\/([^/]+)$/.exec(url.pathname);
      if (sessionMatch && req.method === 'DELETE') {
        const { user } = authenticate(req);
        const target = sessions.get(decodeURIComponent(sessionMatch[1]!));
        if (!target || target.userId !== user.id) throw new HttpError(404, 'not_found');
        target.revoked = true;
        return sendJson(res, requestId, 204, undefined);
      }
      const route = routes[url.pathname];
      if (!route) throw new HttpError(404, 'not_found');
      if (req.method === 'OPTIONS') return sendJson(res, requestId, 204, undefined, { Allow: Object.keys(route).join(', ') });
      const handler = route[req.method ?? 'GET'];
      if (!handler) throw new HttpError(405, 'method_not_allowed');
      const [status, body] = await handler(req, headers, url);
      sendJson(res, requestId, status, body, headers);
    } catch (error) {
      const known = error instanceof HttpError ? error : new HttpError(500, 'internal_error');
      sendJson(res, requestId, known.status, envelope(known.code, requestId), { ...headers, ...known.headers });
    }
  };

  const server = createServer({ connectionsCheckingInterval: 250 }, (req, res) => void handle(req, res));
  // Unknown Expect values are ignored (Node would answer a bare 417).
  server.on('checkExpectation', (req, res) => void handle(req, res));
  server.headersTimeout = weak.has('slowHeaders') ? 60_000 : 2_000;
  server.requestTimeout = weak.has('slowHeaders') ? 120_000 : 10_000;
  server.on('clientError', (_error, socket: Duplex) => {
    const requestId = randomUUID();
    const body = JSON.stringify(envelope('bad_request', requestId));
    const head = Object.entries({ ...baseHeaders(requestId), 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close' })
      .map(([name, value]) => `${name}: ${value}`)
      .join('\r\n');
    if (socket.writable) socket.end(`HTTP/1.1 400 Bad Request\r\n${head}\r\n\r\n${body}`);
    else socket.destroy();
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: weak.has('noFrameLimit') ? 1024 * 1024 : 4096 });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refuse = (status: number, code: string) => {
      const requestId = randomUUID();
      const body = JSON.stringify(envelope(code, requestId));
      const lines = Object.entries({ ...baseHeaders(requestId), 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close' })
        .map(([name, value]) => `${name}: ${value}`)
        .join('\r\n');
      socket.end(`HTTP/1.1 ${status} Refused\r\n${lines}\r\n\r\n${body}`);
    };
    const url = new URL(req.url ?? '/', 'http://fixture');
    if (url.pathname !== '/ws') return refuse(404, 'not_found');
    if (req.headers.origin !== undefined && !weak.has('anyOrigin')) return refuse(403, 'origin_not_allowed');
    const ticketValue = url.searchParams.get('ticket');
    const ticket = ticketValue ? tickets.get(ticketValue) : undefined;
    let allowed = false;
    if (ticket && (!ticket.used || weak.has('ticketReplay')) && (ticket.expiresAt > Date.now() || weak.has('ticketNoExpiry'))) {
      const session = sessions.get(ticket.sessionId);
      allowed = session !== undefined && !session.revoked;
      ticket.used = true;
    } else if (weak.has('bearerInQuery') && url.searchParams.has('token')) {
      try {
        authenticate({ headers: { authorization: `Bearer ${url.searchParams.get('token')}` } } as IncomingMessage);
        allowed = true;
      } catch {
        allowed = false;
      }
    }
    if (!allowed) return refuse(401, 'invalid_ws_ticket');
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => undefined);
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as { type?: string };
        if (frame.type === 'ping') ws.send(JSON.stringify({ type: 'pong' }));
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};
