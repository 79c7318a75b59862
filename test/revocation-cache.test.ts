/**
 * The in-memory revocation state of authenticated requests (app/auth/revocation-cache.ts):
 * sessions known active are served without a database round trip, yet a revocation takes effect
 * on every instance within one second, and an instance whose notification listener is lost falls
 * back to the database (fail closed) — a session revoked while it could not hear is rejected.
 *
 * The service tests run two services on one database. "Served from memory" is proven by taking
 * an exclusive lock on user_sessions: a request that needed the session row would wait for it.
 */
import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import type pg from 'pg';
import { createRevocationCache } from '../app/auth/revocation-cache.js';
import { SESSION_REVOKED_CHANNEL, type HubEvent, type NotificationHub } from '../app/db/notifications.js';
import { createLogger } from '../app/logger.js';
import { createApi, type Api, type TokenPair } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { startTestService, type TestService } from './support/service.js';

// ---------------------------------------------------------------------------------------------
// Two services, one database

type Fixture = { a: TestService; b: TestService; apiA: Api; apiB: Api; listenerPidsOfA: number[] };

const teardowns: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const teardown of teardowns.reverse()) await teardown();
});
const collect = { teardown: (fn: () => Promise<void>) => void teardowns.push(fn) };

// One JWT secret for both services: a token from either works on both.
const env = { JWT_SECRET: randomBytes(48).toString('base64url') };

const listenerPids = (database: string) =>
  withAdminClient(async (client) => {
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE application_name = 'karaxas-notify' AND datname = current_database()",
    );
    return rows.map((row) => row.pid);
  }, database);

let fixture: Promise<Fixture> | undefined;
const getFixture = () =>
  (fixture ??= (async () => {
    const a = await startTestService(collect, env);
    // A's listener, before B exists: B's is then the other one.
    const listenerPidsOfA = await listenerPids(a.database.name);
    const b = await startTestService(collect, env, { database: a.database });
    return { a, b, apiA: createApi(a.url), apiB: createApi(b.url), listenerPidsOfA };
  })());

const signIn = async (api: Api): Promise<TokenPair> => api.login(await api.register());

const meStatus = async (api: Api, token: string) => (await api.get('/auth/me', token)).status;

/**
 * True when `api` answers /auth/me for `token` while user_sessions is locked exclusively, i.e.
 * without reading the session row.
 */
const servedFromMemory = (f: Fixture, api: Api, token: string) =>
  withAdminClient(async (client) => {
    await client.query('BEGIN');
    try {
      await client.query('LOCK TABLE user_sessions IN ACCESS EXCLUSIVE MODE');
      return await Promise.race([
        api.get('/auth/me', token).then((answer) => answer.status === 200),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1_500)),
      ]);
    } finally {
      await client.query('ROLLBACK');
    }
  }, f.a.database.name);

/** Uses the session on `api` until it is served from memory (the first uses go to the database). */
const warmUntilServedFromMemory = async (t: ExecutionContext, f: Fixture, api: Api, token: string) => {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    t.is(await meStatus(api, token), 200);
    if (await servedFromMemory(f, api, token)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.fail('the session was never served from memory');
};

/** Polls /auth/me until it answers 401; returns the ms from `since` to the start of that request. */
const msUntilRejected = async (api: Api, token: string, since: number, limitMs = 5_000): Promise<number> => {
  for (;;) {
    const sent = performance.now();
    if ((await meStatus(api, token)) === 401) return sent - since;
    if (sent - since > limitMs) return Number.POSITIVE_INFINITY;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

test.serial('a session served from memory on both services stops working on both within 1 s of its revocation', async (t) => {
  const f = await getFixture();
  const pair = await signIn(f.apiA);
  await warmUntilServedFromMemory(t, f, f.apiB, pair.accessToken);
  await warmUntilServedFromMemory(t, f, f.apiA, pair.accessToken);

  // Revoked through A: A stops at once (it evicts the session in the revoking transaction); B
  // keeps answering from memory until the notification evicts it.
  t.is((await f.apiA.post('/auth/logout', undefined, pair.accessToken)).status, 204);
  const revokedAt = performance.now();
  t.is(await meStatus(f.apiA, pair.accessToken), 401, 'the very next request on the revoking instance is refused');
  const [onA, onB] = await Promise.all([msUntilRejected(f.apiA, pair.accessToken, revokedAt), msUntilRejected(f.apiB, pair.accessToken, revokedAt)]);
  t.log(`rejected after ${onA.toFixed(0)} ms on A, ${onB.toFixed(0)} ms on B`);
  t.true(onA <= 1_000, `A took ${onA} ms`);
  t.true(onB <= 1_000, `B took ${onB} ms`);
});

test.serial('revocation by plain SQL (any path that sets revoked_at) reaches the memory of both services within 1 s', async (t) => {
  const f = await getFixture();
  const pair = await signIn(f.apiA);
  await warmUntilServedFromMemory(t, f, f.apiB, pair.accessToken);
  await withAdminClient(
    (client) => client.query("UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'ops_revoked' WHERE id = $1", [pair.sessionId]),
    f.a.database.name,
  );
  const revokedAt = performance.now();
  const onB = await msUntilRejected(f.apiB, pair.accessToken, revokedAt);
  t.log(`rejected on B after ${onB.toFixed(0)} ms`);
  t.true(onB <= 1_000, `B took ${onB} ms`);
});

test.serial('B fails closed when its listener is lost: a session revoked while it could not hear is rejected at once', async (t) => {
  const f = await getFixture();
  const pair = await signIn(f.apiA);
  await warmUntilServedFromMemory(t, f, f.apiB, pair.accessToken);

  const pidsOfB = (await listenerPids(f.a.database.name)).filter((pid) => !f.listenerPidsOfA.includes(pid));
  t.is(pidsOfB.length, 1, 'B has one listening connection');
  // One statement: B's listening backend is gone (terminate waits for it) before the revocation
  // commits, and B cannot be listening again by then (it reconnects after a back-off). So B never
  // receives this notification; A does.
  await withAdminClient(async (client: pg.Client) => {
    const { rows } = await client.query<{ revoked: string }>(
      `WITH cut AS (SELECT pg_terminate_backend($1, 5000) AS done)
       UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'ops_revoked'
        WHERE id = $2 AND (SELECT done FROM cut)
       RETURNING id AS revoked`,
      [pidsOfB[0], pair.sessionId],
    );
    t.is(rows.length, 1);
  }, f.a.database.name);

  // The very next request on B goes to the database.
  t.is(await meStatus(f.apiB, pair.accessToken), 401);
  t.is(await meStatus(f.apiA, pair.accessToken), 401);

  // B listens again, and serves from memory again once it trusts its state.
  const other = await signIn(f.apiA);
  await warmUntilServedFromMemory(t, f, f.apiB, other.accessToken);
  t.false((await listenerPids(f.a.database.name)).includes(pidsOfB[0]!));
  t.is((await f.apiA.post('/auth/logout', undefined, other.accessToken)).status, 204);
  const revokedAt = performance.now();
  const onB = await msUntilRejected(f.apiB, other.accessToken, revokedAt);
  t.true(onB <= 1_000, `after reconnecting, B took ${onB} ms`);
});

test.serial('a session revoked before it was ever looked up is never served from memory', async (t) => {
  const f = await getFixture();
  const pair = await signIn(f.apiA);
  // Warm B's trust with another session, then revoke this one before B has seen it.
  const other = await signIn(f.apiA);
  await warmUntilServedFromMemory(t, f, f.apiB, other.accessToken);
  t.is((await f.apiA.post('/auth/logout', undefined, pair.accessToken)).status, 204);
  for (let attempt = 0; attempt < 5; attempt += 1) t.is(await meStatus(f.apiB, pair.accessToken), 401);
});

// ---------------------------------------------------------------------------------------------
// The cache against a scripted hub: races and trust, deterministically

type Handler = (payload: string) => void;

/** A hub whose deliveries the test controls: heartbeats come back only while `echo` is on. */
const scriptedHub = () => {
  const handlers = new Map<string, Set<Handler>>();
  const listeners = new Map<HubEvent, Set<() => void>>();
  const state = { connected: true, echo: true };
  const deliver = (channel: string, payload: string) => {
    for (const handler of handlers.get(channel) ?? []) handler(payload);
  };
  const emit = (event: HubEvent) => {
    for (const listener of listeners.get(event) ?? []) listener();
  };
  const hub: NotificationHub = {
    start: async () => undefined,
    subscribe: async (channel, handler) => {
      if (!handlers.has(channel)) handlers.set(channel, new Set());
      handlers.get(channel)!.add(handler);
      return async () => void handlers.get(channel)?.delete(handler);
    },
    publish: async (_connection, channel, payload) => {
      if (state.connected && state.echo) setImmediate(() => deliver(channel, payload));
    },
    isConnected: () => state.connected,
    on: (event, listener) => {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)!.add(listener);
      return () => listeners.get(event)?.delete(listener);
    },
    close: async () => undefined,
  };
  return {
    hub,
    state,
    revoke: (sessionIds: string[], userIds: string[] = []) => deliver(SESSION_REVOKED_CHANNEL, JSON.stringify({ sessionIds, userIds })),
    malformed: () => deliver(SESSION_REVOKED_CHANNEL, 'not json'),
    disconnect: () => {
      state.connected = false;
      emit('disconnected');
    },
    reconnect: () => {
      state.connected = true;
      emit('connected');
      emit('reconnected');
    },
  };
};

const uuid = () => crypto.randomUUID();
const session = (id = uuid(), userId = uuid()) => ({
  id,
  user_id: userId,
  role: 'player' as const,
  amr: ['pwd'],
  expires_at: new Date(Date.now() + 3_600_000).toISOString(),
});

const newCache = async (script: ReturnType<typeof scriptedHub>, options: { maxStalenessMs?: number; heartbeatIntervalMs?: number } = {}) => {
  const cache = createRevocationCache({
    hub: script.hub,
    pool: {} as never,
    logger: createLogger({ logLevel: 'silent' }),
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 10,
    maxStalenessMs: options.maxStalenessMs ?? 750,
  });
  await cache.start();
  return cache;
};

/** Uses the cache (which starts its heartbeat) and waits until it trusts its state. */
const untilTrusted = async (cache: Awaited<ReturnType<typeof newCache>>) => {
  cache.get(uuid());
  for (let i = 0; i < 200 && !cache.stats().trusted; i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
};

test('nothing is cached or served before a heartbeat proves the listener is current', async (t) => {
  const script = scriptedHub();
  script.state.echo = false;
  const cache = await newCache(script);
  const row = session();
  cache.get(row.id);
  cache.remember(cache.mark(), row);
  t.is(cache.get(row.id), undefined);
  script.state.echo = true;
  await untilTrusted(cache);
  cache.remember(cache.mark(), row);
  t.deepEqual(cache.get(row.id), { userId: row.user_id, role: 'player', amr: ['pwd'], expiresAt: Date.parse(row.expires_at) });
  await cache.close();
});

test('a revocation notification evicts the session (and any session of a named user)', async (t) => {
  const script = scriptedHub();
  const cache = await newCache(script);
  await untilTrusted(cache);
  const [one, two, three] = [session(), session(), session()];
  for (const row of [one, two, three]) cache.remember(cache.mark(), row);
  script.revoke([one.id]);
  t.is(cache.get(one.id), undefined);
  t.truthy(cache.get(two.id));
  script.revoke([], [three.user_id]);
  t.is(cache.get(three.id), undefined);
  t.truthy(cache.get(two.id));
  await cache.close();
});

test('a lookup in flight while its session is revoked is not cached; unrelated lookups are', async (t) => {
  const script = scriptedHub();
  const cache = await newCache(script);
  await untilTrusted(cache);
  const [raced, unrelated] = [session(), session()];
  const markRaced = cache.mark();
  const markUnrelated = cache.mark();
  // The rows were read before the revocation was delivered: the raced one may be stale.
  script.revoke([raced.id]);
  cache.remember(markRaced, raced);
  cache.remember(markUnrelated, unrelated);
  t.is(cache.get(raced.id), undefined);
  t.truthy(cache.get(unrelated.id));
  await cache.close();
});

test('a revocation this process makes takes effect here before its notification arrives, even for lookups in flight', async (t) => {
  const script = scriptedHub();
  const cache = await newCache(script);
  await untilTrusted(cache);
  const [revoked, inFlight, other] = [session(), session(), session()];
  for (const row of [revoked, other]) cache.remember(cache.mark(), row);
  const markInFlight = cache.mark();
  // Inside the revoking transaction: no notification yet (it comes at commit).
  cache.revoking({ sessionIds: [revoked.id, inFlight.id] });
  t.is(cache.get(revoked.id), undefined);
  t.truthy(cache.get(other.id), 'other sessions stay cached');
  // A lookup that read the row before the commit (still active) is not cached, nor is a new one.
  cache.remember(markInFlight, inFlight);
  cache.remember(cache.mark(), revoked);
  t.is(cache.get(inFlight.id), undefined);
  t.is(cache.get(revoked.id), undefined);

  cache.revoking('all');
  t.is(cache.get(other.id), undefined, 'revoking every session empties the cache');
  cache.remember(cache.mark(), other);
  t.is(cache.get(other.id), undefined, 'and nothing is cached while that transaction may be committing');
  await cache.close();
});

test('sessions reported as revoked are cached again only after the pending time (a rolled-back revocation)', async (t) => {
  const script = scriptedHub();
  const cache = createRevocationCache({
    hub: script.hub,
    pool: {} as never,
    logger: createLogger({ logLevel: 'silent' }),
    heartbeatIntervalMs: 10,
    pendingMs: 50,
  });
  await cache.start();
  await untilTrusted(cache);
  const row = session();
  cache.revoking({ sessionIds: [row.id] });
  cache.remember(cache.mark(), row);
  t.is(cache.get(row.id), undefined);
  await new Promise((resolve) => setTimeout(resolve, 80));
  await untilTrusted(cache);
  cache.remember(cache.mark(), row);
  t.truthy(cache.get(row.id));
  await cache.close();
});

test('listener loss clears everything; nothing is served or cached until it is back and confirmed', async (t) => {
  const script = scriptedHub();
  const cache = await newCache(script);
  await untilTrusted(cache);
  const row = session();
  cache.remember(cache.mark(), row);
  t.truthy(cache.get(row.id));
  const inFlight = cache.mark();
  script.disconnect();
  t.is(cache.get(row.id), undefined);
  cache.remember(cache.mark(), row);
  t.is(cache.get(row.id), undefined);
  script.reconnect();
  // A lookup that started before the loss is never cached, even once trusted again.
  await untilTrusted(cache);
  cache.remember(inFlight, row);
  t.is(cache.get(row.id), undefined);
  cache.remember(cache.mark(), row);
  t.truthy(cache.get(row.id));
  t.true(cache.stats().clears >= 1);
  await cache.close();
});

test('a listener that silently stops delivering is distrusted within the staleness bound', async (t) => {
  const script = scriptedHub();
  const cache = await newCache(script, { maxStalenessMs: 100, heartbeatIntervalMs: 10 });
  await untilTrusted(cache);
  const row = session();
  cache.remember(cache.mark(), row);
  t.truthy(cache.get(row.id));
  script.state.echo = false; // still "connected", but nothing comes back
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.is(cache.get(row.id), undefined);
  script.state.echo = true;
  await untilTrusted(cache);
  t.truthy(cache.get(row.id), 'the entry is still valid: nothing was missed on the same connection');
  await cache.close();
});

test('a malformed revocation notification clears the cache', async (t) => {
  const script = scriptedHub();
  const cache = await newCache(script);
  await untilTrusted(cache);
  const row = session();
  cache.remember(cache.mark(), row);
  script.malformed();
  t.is(cache.get(row.id), undefined);
  await cache.close();
});

test('sessions near their expiry are asked about again', async (t) => {
  const script = scriptedHub();
  const cache = await newCache(script);
  await untilTrusted(cache);
  const row = { ...session(), expires_at: new Date(Date.now() + 2_000).toISOString() };
  cache.remember(cache.mark(), row);
  t.is(cache.get(row.id), undefined);
  await cache.close();
});
