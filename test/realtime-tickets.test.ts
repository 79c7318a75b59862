/**
 * Websocket tickets and the upgrade (issue 5, contract §5): one-time tickets redeemed atomically
 * across two services sharing one database, expiry, unknown/malformed tickets, bearer tokens in
 * the query or the Authorization header, Origin checks, revoked sessions — each refused with
 * the contract's HTTP envelope BEFORE the upgrade — and the security events they leave.
 */
import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { createApi, type Api } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { openSocket, signedInPlayer, ticketFor, upgrade, wsUrl, type UpgradeResult } from './support/realtime.js';
import { startTestService, type TestService } from './support/service.js';

const ALLOWED_ORIGIN = 'https://play.karaxas.test';

type Fixture = { a: TestService; b: TestService; short: TestService; apiA: Api; apiB: Api; apiShort: Api };

const teardowns: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const teardown of teardowns.reverse()) await teardown();
});
const collect = { teardown: (fn: () => Promise<void>) => void teardowns.push(fn) };

let fixture: Promise<Fixture> | undefined;
const getFixture = () =>
  (fixture ??= (async () => {
    const env = { CORS_ALLOWED_ORIGINS: ALLOWED_ORIGIN, JWT_SECRET: randomBytes(48).toString('base64url') };
    const a = await startTestService(collect, env);
    const [b, short] = await Promise.all([
      startTestService(collect, env, { database: a.database }),
      startTestService(collect, { ...env, WS_TICKET_TTL_SECONDS: '1' }, { database: a.database }),
    ]);
    return { a, b, short, apiA: createApi(a.url), apiB: createApi(b.url), apiShort: createApi(short.url) };
  })());

const errorOf = (result: UpgradeResult) => {
  if (result.ok) throw new Error('the upgrade unexpectedly succeeded');
  return { status: result.status, headers: result.headers, body: JSON.parse(result.body) as { error: { code: string; message: string; requestId: string } } };
};

/** The refusal is the contract's envelope with X-Request-ID and the security headers. */
const assertRefusal = (t: ExecutionContext, result: UpgradeResult, status: number, code: string) => {
  const { status: actual, headers, body } = errorOf(result);
  t.is(actual, status);
  t.deepEqual(Object.keys(body), ['error']);
  t.is(body.error.code, code);
  t.is(typeof body.error.message, 'string');
  t.is(body.error.requestId, String(headers['x-request-id']));
  t.regex(String(headers['content-type']), /^application\/json; charset=utf-8$/);
  t.is(headers['cache-control'], 'no-store');
  t.is(headers['x-content-type-options'], 'nosniff');
  t.is(headers['x-frame-options'], 'DENY');
  t.is(headers['referrer-policy'], 'no-referrer');
  t.truthy(headers['permissions-policy']);
};

const events = (service: TestService, type: string, userId?: string) =>
  withAdminClient(async (client) => {
    const { rows } = await client.query<{ user_id: string | null; session_id: string | null; details: Record<string, unknown>; request_id: string | null }>(
      `SELECT user_id, session_id, details, request_id FROM security_event_audit
       WHERE event_type = $1 AND ($2::uuid IS NULL OR user_id = $2::uuid) ORDER BY created_at`,
      [type, userId ?? null],
    );
    return rows;
  }, service.database.name);

test('a ticket opens one socket, once; the second use is refused before the upgrade', async (t) => {
  const { a, apiA } = await getFixture();
  const player = await signedInPlayer(apiA);
  const issued = await apiA.post<{ ticket: string; expiresIn: number }>('/auth/ws-ticket', undefined, player.token);
  t.is(issued.status, 201);
  t.regex(issued.body.ticket, /^kxt_[A-Za-z0-9_-]{43}$/);
  t.is(issued.body.expiresIn, 30);

  const first = await upgrade(wsUrl(a.url, { ticket: issued.body.ticket }), { headers: { 'x-request-id': 'upgrade-req-1' } });
  t.true(first.ok);
  if (!first.ok) return;
  t.is(first.headers['x-request-id'], 'upgrade-req-1');
  t.deepEqual(await first.socket.request({ type: 'ping' }), { type: 'pong' });

  const second = await upgrade(wsUrl(a.url, { ticket: issued.body.ticket }));
  assertRefusal(t, second, 401, 'invalid_ws_ticket');
  t.true(first.socket.isOpen, 'the first socket is unaffected');
  first.socket.close();

  // The ticket is stored only as its SHA-256, now marked consumed.
  const stored = await withAdminClient(
    (client) =>
      client.query<{ consumed: boolean }>(
        "SELECT consumed_at IS NOT NULL AS consumed FROM ws_tickets WHERE ticket_hash = sha256(convert_to($1, 'UTF8'))",
        [issued.body.ticket],
      ),
    a.database.name,
  );
  t.deepEqual(stored.rows, [{ consumed: true }]);

  const issuedEvents = await events(a, 'ws_ticket_issued', player.userId);
  t.is(issuedEvents.length, 1);
  t.is(issuedEvents[0]!.session_id, player.pair.sessionId);
  const rejected = await events(a, 'ws_ticket_rejected', player.userId);
  t.is(rejected.length, 1);
  t.is(rejected[0]!.details.reason, 'used');
});

test('20 concurrent upgrades with one ticket over two services: exactly one succeeds', async (t) => {
  const { a, b, apiA } = await getFixture();
  const player = await signedInPlayer(apiA);
  for (let round = 0; round < 3; round += 1) {
    const ticket = await ticketFor(apiA, player.token);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => upgrade(wsUrl((i % 2 === 0 ? a : b).url, { ticket }))),
    );
    const opened = results.filter((result) => result.ok);
    t.is(opened.length, 1, `round ${round}: exactly one upgrade wins`);
    for (const result of results) {
      if (result.ok) result.socket.close();
      else t.is(result.status, 401);
    }
  }
});

test('an expired ticket is refused with 401 (WS_TICKET_TTL_SECONDS=1)', async (t) => {
  const { short, apiShort } = await getFixture();
  const player = await signedInPlayer(apiShort);
  const issued = await apiShort.post<{ ticket: string; expiresIn: number }>('/auth/ws-ticket', undefined, player.token);
  t.is(issued.body.expiresIn, 1);
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  assertRefusal(t, await upgrade(wsUrl(short.url, { ticket: issued.body.ticket })), 401, 'invalid_ws_ticket');
  const rejected = await events(short, 'ws_ticket_rejected', player.userId);
  t.is(rejected.at(-1)?.details.reason, 'expired');
});

test('unknown, malformed, missing and duplicated tickets are refused with 401', async (t) => {
  const { a, apiA } = await getFixture();
  const player = await signedInPlayer(apiA);
  const unknown = `kxt_${Buffer.alloc(32, 7).toString('base64url')}`;
  assertRefusal(t, await upgrade(wsUrl(a.url, { ticket: unknown })), 401, 'invalid_ws_ticket');
  assertRefusal(t, await upgrade(wsUrl(a.url, { ticket: 'not-a-ticket' })), 401, 'invalid_ws_ticket');
  assertRefusal(t, await upgrade(wsUrl(a.url)), 401, 'invalid_ws_ticket');
  const valid = await ticketFor(apiA, player.token);
  const url = new URL(wsUrl(a.url, { ticket: valid }));
  url.searchParams.append('ticket', unknown);
  assertRefusal(t, await upgrade(url.toString()), 401, 'invalid_ws_ticket');
  // The valid ticket was not consumed by the refused attempt.
  const ok = await upgrade(wsUrl(a.url, { ticket: valid }));
  t.true(ok.ok);
  if (ok.ok) ok.socket.close();
});

test('bearer tokens are never accepted: not in the query, not in the Authorization header', async (t) => {
  const { a, apiA } = await getFixture();
  const player = await signedInPlayer(apiA);
  assertRefusal(t, await upgrade(wsUrl(a.url, { token: player.token })), 401, 'invalid_ws_ticket');
  assertRefusal(t, await upgrade(wsUrl(a.url, { access_token: player.token })), 401, 'invalid_ws_ticket');
  assertRefusal(t, await upgrade(wsUrl(a.url), { headers: { authorization: `Bearer ${player.token}` } }), 401, 'invalid_ws_ticket');
  // Nor as the ticket.
  assertRefusal(t, await upgrade(wsUrl(a.url, { ticket: player.token })), 401, 'invalid_ws_ticket');
});

test('a disallowed Origin gets 403 (and keeps its ticket); a missing or listed Origin is allowed', async (t) => {
  const { a, apiA } = await getFixture();
  const player = await signedInPlayer(apiA);
  const ticket = await ticketFor(apiA, player.token);
  assertRefusal(t, await upgrade(wsUrl(a.url, { ticket }), { headers: { origin: 'https://evil.example' } }), 403, 'origin_not_allowed');
  assertRefusal(t, await upgrade(wsUrl(a.url, { ticket }), { origin: 'null' }), 403, 'origin_not_allowed');

  const allowed = await upgrade(wsUrl(a.url, { ticket }), { origin: ALLOWED_ORIGIN });
  t.true(allowed.ok, 'the listed origin is allowed, and the refused attempts did not consume the ticket');
  if (allowed.ok) allowed.socket.close();

  const native = await openSocket(apiA, a.url, player.token);
  t.deepEqual(await native.request({ type: 'ping' }), { type: 'pong' });
  native.close();

  const rejected = await withAdminClient(
    (client) => client.query<{ details: { origin: string } }>("SELECT details FROM security_event_audit WHERE event_type = 'ws_origin_rejected'"),
    a.database.name,
  );
  t.true(rejected.rows.some((row) => row.details.origin === 'https://evil.example'));
});

test("a revoked session's ticket is refused with 401", async (t) => {
  const { a, b, apiA } = await getFixture();
  const player = await signedInPlayer(apiA);
  const ticket = await ticketFor(apiA, player.token);
  t.is((await apiA.post('/auth/logout', undefined, player.token)).status, 204);
  assertRefusal(t, await upgrade(wsUrl(b.url, { ticket })), 401, 'invalid_ws_ticket');
  const rejected = await events(a, 'ws_ticket_rejected', player.userId);
  t.is(rejected.at(-1)?.details.reason, 'session_revoked');
  // And the revoked session cannot get a new ticket.
  t.is((await apiA.post('/auth/ws-ticket', undefined, player.token)).status, 401);
});

test('ws-ticket requires a bearer token; other paths and broken handshakes get envelopes', async (t) => {
  const { a, apiA } = await getFixture();
  const anonymous = await apiA.post<{ error: { code: string } }>('/auth/ws-ticket');
  t.is(anonymous.status, 401);
  t.is(anonymous.body.error.code, 'unauthorized');
  const player = await signedInPlayer(apiA);
  const ticket = await ticketFor(apiA, player.token);
  const elsewhere = await upgrade(`${a.url.replace(/^http/, 'ws')}/chat?ticket=${ticket}`);
  assertRefusal(t, elsewhere, 404, 'not_found');
  // A plain GET /ws is an HTTP request, not an upgrade.
  t.is((await apiA.get('/ws')).status, 404);
});

test('a flood of bad tickets is refused without a flood of audit rows (20 per address and minute, then counted)', async (t) => {
  const { short } = await getFixture();
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) => upgrade(wsUrl(short.url, { ticket: `kxt_garbage${i}` }), { headers: { 'x-request-id': `flood-${i}` } })),
  );
  for (const result of results) assertRefusal(t, result, 401, 'invalid_ws_ticket');
  const recorded = await withAdminClient(
    (client) =>
      client.query<{ n: number }>("SELECT count(*)::int AS n FROM security_event_audit WHERE event_type = 'ws_ticket_rejected' AND request_id LIKE 'flood-%'"),
    short.database.name,
  );
  t.is(recorded.rows[0]!.n, 20);
  t.true(short.logs.entries().some((entry) => entry.message === 'websocket upgrade refusals are no longer recorded one by one this minute'));
});
