/**
 * The client SDK (app/client, `karaxas-backend/client`) against the real server on real
 * PostgreSQL, with `ws`'s WebSocket and the global fetch (wrapped to count requests):
 * single-flight refresh (the real 401 path with a genuinely expired access token, and the
 * proactive path), the session-ending refresh errors, MFA sign-in and session resumption, a
 * service restart (1012) on the same port, revocation (4001), a publish drain (release.drain +
 * 4000), 426 on refresh and login, clientMsgId de-duplication and the catch-up after a re-join.
 * Plus fake-socket tests of the keepalive and the backoff, and checks that the SDK stays free of
 * server and Node-only imports and that its schemas are the server's own objects.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import {
  backoffDelay,
  createKaraxasClient,
  KaraxasError,
  type FetchLike,
  type KaraxasClient,
  type KaraxasClientEvents,
  type KaraxasClientOptions,
  type StoredSession,
  type WebSocketConstructor,
} from '../app/client/index.js';
import * as clientSchemas from '../app/client/schemas.js';
import { createOpsClient } from '../app/cli/api-client.js';
import { loadConfig, type Config } from '../app/config/index.js';
import { createLogger } from '../app/logger.js';
import { startService, type Service } from '../app/server.js';
import { createApi } from './support/api.js';
import { createTestDatabase } from './support/database.js';
import { LogCapture, startTestService, testEnvironment, useSharedService } from './support/service.js';
import { settledStep, stepAt, totpForStep } from './support/totp.js';

const root = fileURLToPath(new URL('..', import.meta.url));
// Grace 0: a second refresh with the same token would be reuse (and sign the user out), so the
// single-flight tests fail loudly if the SDK ever sent two.
const shared = useSharedService({ CHAT_RATE_LIMIT_MAX: '1000', REFRESH_REUSE_GRACE_SECONDS: '0' });

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

const within = async <T>(promise: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
};

const eventually = async (condition: () => boolean, ms: number, what: string) => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: did not happen within ${ms} ms`);
    await sleep(20);
  }
};

const freePort = () =>
  new Promise<number>((done, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });

// ---------------------------------------------------------------------------------------------
// A fetch that records every request and may rewrite JSON response bodies

type Recorded = { method: string; path: string; status: number; headers: Record<string, string> };
type Rewrite = (path: string, body: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>;

const recordingFetch = () => {
  const requests: Recorded[] = [];
  let rewrite: Rewrite | undefined;
  const wrapped: FetchLike = async (url, init) => {
    const response = await fetch(url, init);
    const path = new URL(url).pathname;
    requests.push({ method: init.method, path, status: response.status, headers: init.headers });
    const apply = rewrite;
    if (!apply || response.status !== 200) return response;
    const body = (await response.json()) as Record<string, unknown>;
    const headers = new Headers(response.headers);
    headers.delete('content-length');
    return new Response(JSON.stringify(await apply(path, body)), { status: response.status, headers });
  };
  return {
    fetch: wrapped,
    requests,
    /** Rewrites the next successful response of `path` once. */
    rewriteNext: (path: string, change: Rewrite) => {
      rewrite = async (seen, body) => {
        if (seen !== path) return body;
        rewrite = undefined;
        return change(seen, body);
      };
    },
    count: (method: string, path: string, status?: number) =>
      requests.filter((r) => r.method === method && r.path === path && (status === undefined || r.status === status)).length,
  };
};

// ---------------------------------------------------------------------------------------------
// Clients

const clients = new Set<KaraxasClient>();
test.after.always(() => {
  for (const client of clients) client.dispose();
});

const newClient = (baseUrl: string, overrides: Partial<KaraxasClientOptions> = {}): KaraxasClient => {
  const client = createKaraxasClient({
    baseUrl,
    platform: 'windows',
    version: '1.0.0',
    WebSocket,
    realtime: { initialDelayMs: 100, maxDelayMs: 1_000, ...overrides.realtime },
    ...overrides,
  });
  clients.add(client);
  return client;
};

const record = <K extends keyof KaraxasClientEvents>(client: KaraxasClient, event: K): Array<KaraxasClientEvents[K]> => {
  const seen: Array<KaraxasClientEvents[K]> = [];
  client.on(event, (payload) => seen.push(payload));
  return seen;
};

const newAccount = () => ({
  email: `sdk-${randomBytes(6).toString('hex')}@example.test`,
  password: `pw-${randomBytes(12).toString('base64url')}`,
  displayName: 'SDK Player',
});

/** Registers and signs in through the SDK. */
const signUp = async (client: KaraxasClient) => {
  const account = newAccount();
  await client.register(account);
  const result = await client.login(account);
  if (result.mfaRequired) throw new Error('unexpected MFA challenge');
  return { ...account, userId: result.user.id, sessionId: result.sessionId };
};

/** A genuinely expired access token for a real session, signed with the service's key. */
const expiredAccessToken = async (config: Config, userId: string, sessionId: string) => {
  const secret = config.secrets.jwtSecret;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sid: sessionId, role: 'player', amr: ['pwd'] })
    .setProtectedHeader({ alg: 'HS256', kid: createHash('sha256').update(secret).digest('base64url').slice(0, 16), typ: 'at+jwt' })
    .setSubject(userId)
    .setIssuer(config.tokens.issuer)
    .setAudience(config.tokens.audience)
    .setIssuedAt(now - 1_000)
    .setExpirationTime(now - 120)
    .sign(new TextEncoder().encode(secret));
};

// ---------------------------------------------------------------------------------------------
// Single-flight refresh

test('20 parallel calls with an expired access token: exactly one refresh, all retried once and answered', async (t) => {
  const service = await shared();
  const recorder = recordingFetch();
  const client = newClient(service.url, { fetch: recorder.fetch });
  const account = await signUp(client);

  // A real rotation whose access token the server will refuse as expired (the client does not know).
  recorder.rewriteNext('/auth/refresh', async (_path, body) => ({
    ...body,
    accessToken: await expiredAccessToken(service.config, account.userId, account.sessionId),
  }));
  await client.refresh();
  const before = recorder.requests.length;
  const refreshed = record(client, 'tokensRefreshed');

  const users = await Promise.all(Array.from({ length: 20 }, () => client.me()));

  const during = recorder.requests.slice(before);
  t.is(during.filter((r) => r.path === '/auth/refresh').length, 1, 'exactly one POST /auth/refresh');
  t.is(during.filter((r) => r.path === '/auth/me' && r.status === 401).length, 20, 'every call hit the real 401');
  t.is(during.filter((r) => r.path === '/auth/me' && r.status === 200).length, 20, 'every call was retried once and answered');
  t.true(users.every((user) => user.id === account.userId));
  t.is(refreshed.length, 1);
  const expired = during.find((r) => r.status === 401)!.headers.authorization;
  const renewed = during.filter((r) => r.path === '/auth/me' && r.status === 200).map((r) => r.headers.authorization);
  t.true(renewed.every((header) => header !== expired && header === renewed[0]), 'all retries used the one new token');

  // Settled: the next call needs no refresh.
  await client.me();
  t.is(recorder.count('POST', '/auth/refresh'), 2);
  t.true(client.isSignedIn);

  // Every request carried the client headers (contract §1).
  for (const request of recorder.requests) {
    t.is(request.headers['x-client-platform'], 'windows');
    t.is(request.headers['x-client-version'], '1.0.0');
  }
});

test('20 parallel calls when the client knows its token expired: one proactive refresh, no 401', async (t) => {
  const service = await shared();
  const recorder = recordingFetch();
  const client = newClient(service.url, { fetch: recorder.fetch });
  await signUp(client);
  recorder.rewriteNext('/auth/refresh', (_path, body) => ({ ...body, expiresIn: 0 }));
  await client.refresh();
  const before = recorder.requests.length;

  await Promise.all(Array.from({ length: 20 }, () => client.me()));

  const during = recorder.requests.slice(before);
  t.is(during.filter((r) => r.path === '/auth/refresh').length, 1);
  t.is(during.filter((r) => r.path === '/auth/me').length, 20);
  t.true(during.every((r) => r.status === 200));
});

test('refresh_token_reused and invalid_refresh_token end the session with a typed signedOut', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const saved: Array<StoredSession | null> = [];
  const storage = { load: () => saved.at(-1) ?? null, save: (value: StoredSession | null) => void saved.push(value) };

  // Reuse: the stored refresh token was stolen and used first.
  const victim = newClient(service.url, { storage });
  await signUp(victim);
  const stolen = saved.at(-1)!.refreshToken;
  const thief = await api.post('/auth/refresh', { refreshToken: stolen }, undefined, { 'x-client-platform': 'windows', 'x-client-version': '1.0.0' });
  t.is(thief.status, 200);
  const signedOut = record(victim, 'signedOut');
  const reused = await t.throwsAsync(victim.refresh(), { instanceOf: KaraxasError });
  t.is(reused?.code, 'refresh_token_reused');
  t.deepEqual(signedOut, [{ reason: 'refresh_token_reused' }]);
  t.false(victim.isSignedIn);
  t.is(saved.at(-1), null, 'the storage hook was told to forget the session');
  await t.throwsAsync(victim.me(), { code: 'not_signed_in' });

  // Invalid: the session was revoked elsewhere while this client was idle (no websocket).
  const idle = newClient(service.url);
  const account = await signUp(idle);
  const other = await api.login(account, { 'x-client-platform': 'windows', 'x-client-version': '1.0.0' });
  t.is((await api.post('/auth/sessions/revoke-all', undefined, other.accessToken)).status, 200);
  const idleSignedOut = idle.next('signedOut');
  let error: unknown;
  const deadline = Date.now() + 3_000;
  while (error === undefined && Date.now() < deadline) {
    // The access token stops working at once (at most a second of cache).
    error = await idle.me().then(() => undefined, (caught: unknown) => caught);
    if (error === undefined) await sleep(200);
  }
  t.is((error as KaraxasError).code, 'invalid_refresh_token');
  t.deepEqual(await idleSignedOut, { reason: 'invalid_refresh_token' });
});

// ---------------------------------------------------------------------------------------------
// Sign-in with MFA, sessions, logout, resume

test('login answers a typed MFA challenge; verifyMfa signs in; resumeSession restores a stored session', async (t) => {
  const service = await shared();
  const setup = newClient(service.url, { platform: 'web' });
  const account = await signUp(setup);
  const { secret, otpauthUri } = await setup.mfa.enroll();
  t.true(otpauthUri.startsWith('otpauth://totp/'));
  const recoveryCodes = await setup.mfa.activate(totpForStep(secret, (await settledStep()) - 1));
  t.is(recoveryCodes.length, 10);
  const setupOut = setup.next('signedOut');
  t.true(await setup.logout());
  t.deepEqual(await setupOut, { reason: 'logout' });
  t.false(setup.isSignedIn);

  const saved: Array<StoredSession | null> = [];
  const storage = { load: () => saved.at(-1) ?? null, save: (value: StoredSession | null) => void saved.push(value) };
  const game = newClient(service.url, { platform: 'web', storage });
  const signedIn = record(game, 'signedIn');
  const result = await game.login({ email: account.email, password: account.password });
  if (!result.mfaRequired) return t.fail('expected an MFA challenge');
  t.true(result.expiresIn > 0);
  t.false(game.isSignedIn, 'no session before the second factor');
  t.deepEqual(saved, []);

  // One attempt per challenge (the server consumes it): a wrong code means signing in again.
  const wrong = await t.throwsAsync(result.verifyMfa('000000' === totpForStep(secret, stepAt()) ? '111111' : '000000'));
  t.is((wrong as KaraxasError).code, 'invalid_mfa_code');
  await t.throwsAsync(game.verifyMfa(totpForStep(secret, stepAt())), { code: 'no_mfa_challenge' });
  const retry = await game.login({ email: account.email, password: account.password });
  t.true(retry.mfaRequired);
  const done = await game.verifyMfa(totpForStep(secret, stepAt()));
  t.is(done.user.id, account.userId);
  t.true(done.user.mfaEnabled);
  t.like(signedIn[0], { method: 'mfa', sessionId: done.sessionId });
  const sessions = await game.sessions();
  t.true(sessions.some((session) => session.current && session.id === done.sessionId));
  t.is(saved.at(-1)?.sessionId, done.sessionId);
  t.false(JSON.stringify(saved).includes('eyJ'), 'the access token is never handed to storage');

  // A restarted game resumes the stored session (the first client is gone).
  game.dispose();
  clients.delete(game);
  const restarted = newClient(service.url, { platform: 'web', storage });
  const resumed = await restarted.resumeSession();
  t.is(resumed?.id, account.userId);
  t.is(restarted.sessionId, done.sessionId);
  t.not(saved.at(-1)?.refreshToken, saved.at(-2)?.refreshToken, 'the rotated token was stored');
  await restarted.logout();
  t.is(saved.at(-1), null);
  t.is(await newClient(service.url, { platform: 'web', storage }).resumeSession(), null);
});

// ---------------------------------------------------------------------------------------------
// Realtime

test('a server restart (1012) on the same port: the SDK reconnects with a new ticket, re-joins and receives messages', async (t) => {
  const database = await createTestDatabase();
  const port = await freePort();
  const environment = testEnvironment(database.url, { HOST: '127.0.0.1', CHAT_RATE_LIMIT_MAX: '1000' });
  const boot = async (): Promise<Service> => {
    const config = await loadConfig(environment);
    return startService({ config, logger: createLogger(config, new LogCapture()), port });
  };
  let service = await boot();
  const local: KaraxasClient[] = [];
  t.teardown(async () => {
    for (const client of local) client.dispose();
    await service.shutdown('test finished');
    await database.drop();
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const recorder = recordingFetch();
  const listener = newClient(baseUrl, { fetch: recorder.fetch });
  const sender = newClient(baseUrl);
  local.push(listener, sender);
  await signUp(listener);
  await signUp(sender);
  await listener.realtime.connect();
  await listener.realtime.join('lobby');
  const messages = record(listener, 'message');
  const disconnects = record(listener, 'disconnected');
  await sender.chat.post('lobby', 'before the restart');
  await eventually(() => messages.length === 1, 5_000, 'the first message');

  const rejoined = listener.next('joined', (event) => event.channel === 'lobby' && event.rejoin);
  await service.shutdown('restart');
  service = await boot();
  await within(rejoined, 20_000, 're-join after the restart');
  t.like(disconnects[0], { code: 1012, willReconnect: true, stopReason: null });
  t.is(listener.realtime.state, 'open');
  t.true(recorder.count('POST', '/auth/ws-ticket', 201) >= 2, 'a fresh ticket for the new connection');
  t.is(recorder.count('POST', '/auth/refresh'), 0, 'the access token stayed valid across the restart');

  await sender.chat.post('lobby', 'after the restart');
  await eventually(() => messages.some((event) => event.message.text === 'after the restart'), 5_000, 'a message after the restart');
  t.deepEqual(
    messages.map((event) => event.message.text),
    ['before the restart', 'after the restart'],
  );
});

test('revocation (4001) stops reconnecting and signs out', async (t) => {
  const service = await shared();
  const recorder = recordingFetch();
  const client = newClient(service.url, { fetch: recorder.fetch, platform: 'linux' });
  const account = await signUp(client);
  await client.realtime.connect();
  await client.realtime.join('revocation');

  const disconnected = client.next('disconnected');
  const signedOut = client.next('signedOut');
  const api = createApi(service.url);
  const other = await api.login(account, { 'x-client-platform': 'linux', 'x-client-version': '1.0.0' });
  t.is((await api.post('/auth/sessions/revoke-all', undefined, other.accessToken)).status, 200);

  t.deepEqual(await within(disconnected, 3_000, 'the 4001 close'), {
    code: 4001,
    reason: 'session_revoked',
    willReconnect: false,
    stopReason: 'session_revoked',
  });
  t.deepEqual(await within(signedOut, 1_000, 'signedOut'), { reason: 'session_revoked' });
  const tickets = recorder.count('POST', '/auth/ws-ticket');
  await sleep(1_500);
  t.is(recorder.count('POST', '/auth/ws-ticket'), tickets, 'no reconnect attempt');
  t.is(client.realtime.state, 'closed');
  t.false(client.isSignedIn);
  await t.throwsAsync(client.realtime.connect(), { code: 'not_signed_in' });
});

test('a publish drain surfaces a typed updateRequired, then 4000 stops the connection for good', async (t) => {
  const service = await shared();
  const recorder = recordingFetch();
  const client = newClient(service.url, { fetch: recorder.fetch, platform: 'android', version: '1.0.0' });
  await signUp(client);
  await client.realtime.connect();
  await client.realtime.join('drain');
  const updates = record(client, 'updateRequired');
  const closed = client.next('disconnected');

  const ops = createOpsClient({ baseUrl: service.url, token: service.config.secrets.opsApiToken });
  await ops.publish({ platform: 'android', version: '2.0.0', minSupportedVersion: '2.0.0', forceUpdate: true, graceSeconds: 1, loginGate: false });

  t.like(await within(closed, 10_000, 'the 4000 close'), { code: 4000, willReconnect: false, stopReason: 'update_required' });
  t.is(updates.length, 1, 'one event: the drain frame (the close after it adds none)');
  const update = updates[0]!;
  t.like(update, {
    source: 'release.drain',
    platform: 'android',
    currentVersion: '1.0.0',
    minSupportedVersion: '2.0.0',
    latestVersion: '2.0.0',
    forceUpdate: true,
    graceSeconds: 1,
  });
  t.true(typeof update.closesAt === 'number');
  const tickets = recorder.count('POST', '/auth/ws-ticket');
  await sleep(1_000);
  t.is(recorder.count('POST', '/auth/ws-ticket'), tickets, 'no reconnect after 4000');
  t.is(client.realtime.state, 'closed');
  t.true(client.isSignedIn, 'the session is kept');
  t.like(await client.getReleasePolicy(), { updateRequired: true, policy: { minSupportedVersion: '2.0.0', latestVersion: '2.0.0' } });
});

test('426 client_update_required on refresh and login surfaces updateRequired with the policy', async (t) => {
  const service = await startTestService(t);
  const ops = createOpsClient({ baseUrl: service.url, token: service.config.secrets.opsApiToken });
  const client = newClient(service.url, { platform: 'ios', version: '1.0.0' });
  const account = await signUp(client);
  const { policy } = await ops.createPolicy({ platform: 'ios', minSupportedVersion: '2.0.0', latestVersion: '2.1.0', forceUpdate: true, loginGate: true });
  await ops.activatePolicy(policy.id);

  const updates = record(client, 'updateRequired');
  let error: unknown;
  const deadline = Date.now() + 3_000;
  while (error === undefined && Date.now() < deadline) {
    error = await client.refresh().then(() => undefined, (caught: unknown) => caught);
    if (error === undefined) await sleep(100);
  }
  t.is((error as KaraxasError).code, 'client_update_required');
  t.is((error as KaraxasError).status, 426);
  t.is(updates.length, 1);
  t.like(updates[0], {
    source: 'refresh',
    platform: 'ios',
    currentVersion: '1.0.0',
    minSupportedVersion: '2.0.0',
    latestVersion: '2.1.0',
    forceUpdate: true,
    policy: { platform: 'ios', minSupportedVersion: '2.0.0', latestVersion: '2.1.0', forceUpdate: true, loginGate: true },
  });
  t.true(client.isSignedIn, 'the session is kept for the updated build');

  const old = newClient(service.url, { platform: 'ios', version: '1.9.9' });
  const oldUpdate = old.next('updateRequired');
  await t.throwsAsync(old.login(account), { code: 'client_update_required' });
  t.like(await oldUpdate, { source: 'login', currentVersion: '1.9.9', minSupportedVersion: '2.0.0' });
  t.false(old.isSignedIn);

  const updated = newClient(service.url, { platform: 'ios', version: '2.1.0' });
  t.false((await updated.login(account)).mfaRequired);
  t.like(await updated.getReleasePolicy(), { updateRequired: false });
});

test('chat: generated clientMsgIds, a repeated clientMsgId is delivered once, the gap after a re-join is replayed once', async (t) => {
  const service = await shared();
  const a = newClient(service.url, { platform: 'macos', realtime: { pingIntervalMs: 100 } });
  const b = newClient(service.url, { platform: 'macos' });
  await signUp(a);
  await signUp(b);
  await Promise.all([a.realtime.connect(), b.realtime.connect()]);
  await Promise.all([a.realtime.join('dedupe'), b.realtime.join('dedupe')]);
  const aMessages = record(a, 'message');
  const bMessages = record(b, 'message');

  const first = await a.realtime.send('dedupe', 'hello', { clientMsgId: 'retry-1' });
  const again = await a.realtime.send('dedupe', 'hello', { clientMsgId: 'retry-1' });
  t.is(again.id, first.id, 'the retry got the stored message back');
  const generated = await a.realtime.send('dedupe', 'generated');
  t.regex(generated.clientMsgId ?? '', /^[0-9a-f]{32}$/);
  const viaHttp = await a.chat.post('dedupe', 'over http');
  t.regex(viaHttp.clientMsgId ?? '', /^[0-9a-f]{32}$/);
  await eventually(() => aMessages.length === 3 && bMessages.length === 3, 5_000, 'three messages each');
  await sleep(200);
  t.deepEqual(
    aMessages.map((event) => [event.message.text, event.own, event.replayed]),
    [
      ['hello', true, false],
      ['generated', true, false],
      ['over http', true, false],
    ],
  );
  t.deepEqual(
    bMessages.map((event) => [event.message.text, event.own]),
    [
      ['hello', false],
      ['generated', false],
      ['over http', false],
    ],
  );
  const pong = await within(a.next('pong'), 2_000, 'a pong');
  t.true(pong.rttMs >= 0);

  // Offline for a while: the messages of the gap come from the history after the re-join, once.
  a.realtime.disconnect();
  t.is(a.realtime.state, 'closed');
  await t.throwsAsync(a.realtime.send('dedupe', 'offline'), { code: 'connection_closed' });
  await b.realtime.send('dedupe', 'missed 1');
  await b.realtime.send('dedupe', 'missed 2');
  const rejoined = a.next('joined', (event) => event.rejoin);
  await a.realtime.connect();
  await within(rejoined, 5_000, 'the re-join');
  await eventually(() => aMessages.length === 5, 5_000, 'the replayed messages');
  await b.realtime.send('dedupe', 'live again');
  await eventually(() => aMessages.length === 6, 5_000, 'a live message');
  await sleep(200);
  t.deepEqual(
    aMessages.slice(3).map((event) => [event.message.text, event.replayed]),
    [
      ['missed 1', true],
      ['missed 2', true],
      ['live again', false],
    ],
  );
  t.is(new Set(aMessages.map((event) => event.message.id)).size, aMessages.length, 'no message twice');
  await t.throwsAsync(a.realtime.send('not-joined', 'x'), { code: 'not_joined' });
  await t.throwsAsync(a.realtime.send('dedupe', 'x'.repeat(5_000)), { code: 'frame_too_large' });
});

// ---------------------------------------------------------------------------------------------
// Without a server: keepalive, network loss and backoff on fake sockets

class FakeSocket {
  static instances: FakeSocket[] = [];
  readyState = 0;
  readonly sent: string[] = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  /** Answers pings when true. */
  responsive = true;

  constructor(readonly url: string) {
    FakeSocket.instances.push(this);
    setTimeout(() => {
      this.readyState = 1;
      this.onopen?.({});
    }, 5);
  }
  send(data: string) {
    this.sent.push(data);
    const frame = JSON.parse(data) as { type: string; channel?: string };
    const reply = (body: unknown) => setTimeout(() => this.onmessage?.({ data: JSON.stringify(body) }), 1);
    if (frame.type === 'chat.join') reply({ type: 'chat.joined', channel: frame.channel });
    if (frame.type === 'ping' && this.responsive) reply({ type: 'pong' });
  }
  close(code = 1000, reason = '') {
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason }), 1);
  }
  /** The network drops: a 1006 close. */
  lose() {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: '' });
  }
}

const fakeServer = () => {
  const tickets: string[] = [];
  const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  const fetchImpl: FetchLike = async (url) => {
    const path = new URL(url).pathname.replace(/^\/prefix/, '');
    if (path === '/auth/login') {
      return json(200, {
        accessToken: 'access',
        refreshToken: 'refresh',
        tokenType: 'Bearer',
        expiresIn: 900,
        refreshExpiresIn: 3600,
        sessionId: '00000000-0000-4000-8000-000000000001',
      });
    }
    if (path === '/auth/me') {
      return json(200, {
        user: {
          id: '00000000-0000-4000-8000-000000000002',
          email: 'fake@example.test',
          displayName: 'Fake',
          role: 'player',
          mfaEnabled: false,
          createdAt: new Date().toISOString(),
        },
      });
    }
    if (path === '/auth/ws-ticket') {
      const ticket = `kxt_${tickets.length}`;
      tickets.push(ticket);
      return json(201, { ticket, expiresIn: 30 });
    }
    return json(404, { error: { code: 'not_found', message: 'Not found', requestId: 'x' } });
  };
  return { fetch: fetchImpl, tickets };
};

test('fake sockets: a silent connection is dropped by the keepalive, network loss reconnects with backoff, channels are re-joined', async (t) => {
  FakeSocket.instances = [];
  const server = fakeServer();
  const client = newClient('https://api.example.test/prefix', {
    fetch: server.fetch,
    WebSocket: FakeSocket as unknown as WebSocketConstructor,
    realtime: { initialDelayMs: 40, maxDelayMs: 200, pingIntervalMs: 50, pongTimeoutMs: 400, random: () => 0.5 },
  });
  await client.login({ email: 'fake@example.test', password: 'whatever-long-password' });
  const disconnects = record(client, 'disconnected');
  const reconnects = record(client, 'reconnecting');
  await client.realtime.connect();
  await client.realtime.join('room');
  t.is(FakeSocket.instances[0]!.url, 'wss://api.example.test/prefix/ws?ticket=kxt_0');

  // Keepalive: stop answering pings.
  FakeSocket.instances[0]!.responsive = false;
  await eventually(() => FakeSocket.instances.length === 2 && client.realtime.state === 'open', 2_000, 'a replacement socket');
  t.like(disconnects[0], { code: 1006, reason: 'keepalive_timeout', willReconnect: true });
  await eventually(() => FakeSocket.instances[1]!.sent.some((frame) => frame === JSON.stringify({ type: 'chat.join', channel: 'room' })), 1_000, 're-join');

  // Network loss, several times: the delays grow (jitter fixed at 0.5 here), each attempt with a new ticket.
  for (let i = 0; i < 3; i += 1) {
    const socket = FakeSocket.instances.at(-1)!;
    await eventually(() => socket.readyState === 1, 1_000, 'open');
    socket.lose();
    await eventually(() => FakeSocket.instances.at(-1) !== socket && FakeSocket.instances.at(-1)!.readyState === 1, 2_000, 'reconnected');
  }
  t.deepEqual(
    reconnects.map((event) => event.delayMs),
    // attempt counter only resets after a stable connection (5 s): 0.75 × min(200, 40·2^n)
    [30, 60, 120, 150],
  );
  t.is(server.tickets.length, FakeSocket.instances.length, 'one fresh ticket per socket');
  t.deepEqual(
    FakeSocket.instances.map((socket) => socket.url.split('ticket=')[1]),
    server.tickets,
  );
  client.dispose();
  t.is(client.realtime.state, 'closed');
});

test('backoffDelay: equal jitter within [ceiling/2, ceiling], capped', (t) => {
  t.is(backoffDelay(0, 500, 30_000, () => 0), 250);
  t.is(backoffDelay(0, 500, 30_000, () => 1), 500);
  t.is(backoffDelay(3, 500, 30_000, () => 0.5), 3_000);
  t.is(backoffDelay(20, 500, 30_000, () => 1), 30_000);
  t.is(backoffDelay(1_000, 500, 30_000, () => 0), 15_000);
  for (let attempt = 0; attempt < 12; attempt += 1) {
    const delay = backoffDelay(attempt, 500, 30_000);
    const ceiling = Math.min(30_000, 500 * 2 ** attempt);
    t.true(delay >= ceiling / 2 && delay <= ceiling);
  }
});

// ---------------------------------------------------------------------------------------------
// One source of truth, browser-safe, exported

test('the SDK re-exports the server\'s own schemas: the same objects, not copies', async (t) => {
  const authSchemas = await import('../app/auth/schemas.js');
  const opsSchemas = await import('../app/ops/schemas.js');
  const realtimeSchemas = await import('../app/realtime/schemas.js');
  const mfaSchemas = await import('../app/mfa/schemas.js');
  t.is(clientSchemas.chatMessageSchema, realtimeSchemas.chatMessageSchema);
  const shared: Array<[string, Record<string, unknown>, string[]]> = [
    ['app/auth/schemas.ts', authSchemas, ['loginBodySchema', 'mfaChallengeSchema', 'refreshBodySchema', 'registerBodySchema', 'sessionSchema', 'tokenPairSchema', 'userSchema']],
    ['app/ops/schemas.ts', opsSchemas, ['platformSchema', 'publicPolicyQuerySchema', 'publicPolicyResponseSchema', 'publicPolicySchema', 'releasePlatforms', 'versionSchema']],
    [
      'app/realtime/schemas.ts',
      realtimeSchemas,
      [
        'channelNamePattern',
        'channelNameSchema',
        'chatMessageSchema',
        'chatPageSchema',
        'clientFrameSchema',
        'clientMsgIdPattern',
        'clientMsgIdSchema',
        'errorDetailSchema',
        'errorFrameSchema',
        'MAX_FRAME_BYTES',
        'releaseDrainFrameSchema',
        'serverFrameSchema',
        'wsTicketSchema',
      ],
    ],
    ['app/mfa/schemas.ts', mfaSchemas, ['mfaCodeBodySchema', 'mfaCodeSchema', 'mfaVerifyBodySchema', 'RECOVERY_CODE_COUNT', 'recoveryCodesSchema', 'totpEnrollmentSchema']],
  ];
  const client = clientSchemas as Record<string, unknown>;
  for (const [file, server, names] of shared) {
    for (const name of names) {
      t.not(server[name], undefined, `${file} exports ${name}`);
      t.is(client[name], server[name], `${name} is ${file}'s own`);
    }
  }
  // Every wire schema the SDK exports is one of those (the SDK's own: only its error envelope).
  const serverValues = new Set(shared.flatMap(([, server, names]) => names.map((name) => server[name])));
  const own = Object.keys(client).filter((name) => !serverValues.has(client[name]));
  t.deepEqual(own, ['errorEnvelopeSchema']);

  // ...and they are what the server serves with: the routes' request and response schemas.
  const { createRealtimeRoutes } = await import('../app/realtime/routes.js');
  const { createMfaRoutes } = await import('../app/mfa/routes.js');
  const unused = {} as never;
  const routes = [
    ...createRealtimeRoutes({ auth: unused, realtime: unused, chat: { maxMessageLength: 500, rateLimitMax: 10 } }),
    ...createMfaRoutes({ mfa: unused, auth: unused, throttle: unused, clientGate: [] }),
  ];
  const route = (method: string, path: string) => {
    const found = routes.find((candidate) => candidate.method === method && candidate.path === path);
    if (!found) throw new Error(`no route ${method} ${path}`);
    return found;
  };
  t.is(route('post', '/auth/ws-ticket').responses[201]!.body, clientSchemas.wsTicketSchema);
  t.is(route('post', '/chat/channels/:channel/messages').responses[201]!.body, clientSchemas.chatMessageSchema);
  t.is(route('get', '/chat/channels/:channel/messages').responses[200]!.body, clientSchemas.chatPageSchema);
  t.is(route('post', '/auth/mfa/verify').request!.body, clientSchemas.mfaVerifyBodySchema);
  t.is(route('post', '/auth/mfa/totp/enroll').responses[200]!.body, clientSchemas.totpEnrollmentSchema);
  t.is(route('post', '/auth/mfa/totp/activate').request!.body, clientSchemas.mfaCodeBodySchema);
  t.is(route('post', '/auth/mfa/totp/activate').responses[200]!.body, clientSchemas.recoveryCodesSchema);
  t.is(route('post', '/auth/mfa/recovery-codes').responses[200]!.body, clientSchemas.recoveryCodesSchema);
});

/** Runtime imports (not `import type`) of a module's source. */
const runtimeImports = (source: string): string[] => {
  const specifiers: string[] = [];
  const pattern = /^\s*(import|export)\s+(type\s+)?([^;]*?)\s+from\s+'([^']+)'/gms;
  for (const match of source.matchAll(pattern)) {
    if (match[2]) continue;
    specifiers.push(match[4]!);
  }
  for (const match of source.matchAll(/^\s*import\s+'([^']+)'/gm)) specifiers.push(match[1]!);
  for (const match of source.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) specifiers.push(match[1]!);
  return specifiers;
};

/** Every .ts file under `dir` (relative to the repository root), recursively. */
const sourceFiles = (dir: string): string[] =>
  readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(`${dir}/${entry.name}`) : entry.name.endsWith('.ts') ? [`${dir}/${entry.name}`] : [],
  );

test('the SDK imports nothing server-side or Node-only (it runs in browsers and game engines)', (t) => {
  // Schema-only modules: zod, semver and each other; no Koa, no database, no Node built-ins.
  const allowedFiles = new Set(['app/auth/schemas.ts', 'app/ops/schemas.ts', 'app/realtime/schemas.ts', 'app/mfa/schemas.ts', 'app/audit/types.ts']);
  const allowedPackages = new Set(['zod', 'semver']);
  const clientFiles = sourceFiles('app/client');
  t.true(clientFiles.includes('app/client/index.ts') && clientFiles.includes('app/client/schemas.ts'));
  const visited = new Set<string>();
  const queue = [...clientFiles];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (visited.has(file)) continue;
    visited.add(file);
    t.true(file.startsWith('app/client/') || allowedFiles.has(file), `${file} is reachable from the SDK`);
    const source = readFileSync(join(root, file), 'utf8');
    for (const specifier of runtimeImports(source)) {
      if (specifier.startsWith('.')) {
        queue.push(relative(root, resolve(dirname(join(root, file)), specifier.replace(/\.js$/, '.ts'))));
      } else {
        t.true(allowedPackages.has(specifier), `${file} imports ${specifier}`);
      }
    }
  }
  for (const file of ['app/client/realtime.ts', 'app/auth/schemas.ts', 'app/realtime/schemas.ts', 'app/mfa/schemas.ts']) {
    t.true(visited.has(file), `${file} is part of the SDK`);
  }
  for (const file of [...visited]) {
    const source = readFileSync(join(root, file), 'utf8');
    for (const forbidden of [/\bnode:/, /\bprocess\./, /\bBuffer\b/, /\brequire\(/, /\bNodeJS\./, /from 'ws'/]) {
      t.false(forbidden.test(source), `${file} uses ${forbidden}`);
    }
  }
});

test('package.json exports the SDK as karaxas-backend/client', (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    name: string;
    exports: Record<string, { types: string; default: string } | string>;
  };
  t.is(pkg.name, 'karaxas-backend');
  const entry = pkg.exports['./client'] as { types: string; default: string };
  t.deepEqual(Object.keys(entry), ['types', 'default'], '"types" first');
  t.true(existsSync(join(root, entry.types)));
  // tsconfig.build.json compiles app/ with rootDir "." into dist/.
  t.is(entry.default, `./dist/${entry.types.slice(2).replace(/\.ts$/, '.js')}`);
});
