/**
 * Session revocation closes websockets everywhere (issue 5, contract §3 last bullet): logout,
 * revoke-one, revoke-all, refresh-token reuse detection and a bulk revocation by plain SQL (the
 * ops path; the trigger does not care who revoked) each close the affected sessions' sockets on
 * BOTH services within one second with 4001 — and only those. Also while the notification
 * listener has just been cut, and graceful shutdown closing sockets with 1012.
 */
import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { createApi, type Api, type TokenPair } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { openSocket, signedInPlayer, type TestSocket } from './support/realtime.js';
import { startTestService, type TestService } from './support/service.js';

type Fixture = { a: TestService; b: TestService; apiA: Api; apiB: Api };

const teardowns: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const teardown of teardowns.reverse()) await teardown();
});
const collect = { teardown: (fn: () => Promise<void>) => void teardowns.push(fn) };

// No refresh grace: presenting a rotated refresh token is always reuse.
// One JWT secret for both services: a token from either works on both.
const env = { REFRESH_REUSE_GRACE_SECONDS: '0', JWT_SECRET: randomBytes(48).toString('base64url') };

let fixture: Promise<Fixture> | undefined;
const getFixture = () =>
  (fixture ??= (async () => {
    const a = await startTestService(collect, env);
    const b = await startTestService(collect, env, { database: a.database });
    return { a, b, apiA: createApi(a.url), apiB: createApi(b.url) };
  })());

/** One socket per service for the session of `pair`. */
const socketsOn = async ({ a, b, apiA }: Fixture, pair: TokenPair): Promise<TestSocket[]> =>
  Promise.all([openSocket(apiA, a.url, pair.accessToken), openSocket(apiA, b.url, pair.accessToken)]);

const assertClosedWithin = async (t: ExecutionContext, sockets: TestSocket[], ms: number, code = 4001) => {
  const started = performance.now();
  const results = await Promise.all(sockets.map((socket) => socket.closedWithin(ms)));
  for (const result of results) t.is(result.code, code);
  t.log(`closed ${sockets.length} sockets in ${(performance.now() - started).toFixed(0)} ms`);
};

const assertStillOpen = async (t: ExecutionContext, sockets: TestSocket[]) => {
  for (const socket of sockets) t.deepEqual(await socket.request({ type: 'ping' }), { type: 'pong' });
};

test('logout closes that session’s sockets on both services within 1 s (4001); other sessions stay', async (t) => {
  const f = await getFixture();
  const player = await signedInPlayer(f.apiA);
  const other = await f.apiA.login(player.account);
  const [target, bystander] = await Promise.all([socketsOn(f, player.pair), socketsOn(f, other)]);

  t.is((await f.apiB.post('/auth/logout', undefined, player.token)).status, 204);
  await assertClosedWithin(t, target, 1_000);
  t.is(target[0]!.closeInfo?.reason, 'session_revoked');
  await assertStillOpen(t, bystander);
  for (const socket of bystander) socket.close();
});

test('revoking one session (DELETE /auth/sessions/:id) closes its sockets everywhere', async (t) => {
  const f = await getFixture();
  const player = await signedInPlayer(f.apiA);
  const other = await f.apiA.login(player.account);
  const [target, bystander] = await Promise.all([socketsOn(f, player.pair), socketsOn(f, other)]);
  t.is((await f.apiA.delete(`/auth/sessions/${player.pair.sessionId}`, other.accessToken)).status, 204);
  await assertClosedWithin(t, target, 1_000);
  await assertStillOpen(t, bystander);
  for (const socket of bystander) socket.close();
});

test('revoke-all closes every socket of the user on both services', async (t) => {
  const f = await getFixture();
  const player = await signedInPlayer(f.apiA);
  const second = await f.apiA.login(player.account);
  const unrelated = await signedInPlayer(f.apiA);
  const sockets = [...(await socketsOn(f, player.pair)), ...(await socketsOn(f, second))];
  const bystander = await socketsOn(f, unrelated.pair);
  const response = await f.apiB.post<{ revoked: number }>('/auth/sessions/revoke-all', undefined, second.accessToken);
  t.is(response.body.revoked, 2);
  await assertClosedWithin(t, sockets, 1_000);
  await assertStillOpen(t, bystander);
  for (const socket of bystander) socket.close();
});

test('refresh-token reuse detection closes every socket of the user on both services', async (t) => {
  const f = await getFixture();
  const player = await signedInPlayer(f.apiA);
  const second = await f.apiA.login(player.account);
  const sockets = [...(await socketsOn(f, player.pair)), ...(await socketsOn(f, second))];
  const rotated = await f.apiA.post('/auth/refresh', { refreshToken: player.pair.refreshToken });
  t.is(rotated.status, 200);
  const reused = await f.apiB.post<{ error: { code: string } }>('/auth/refresh', { refreshToken: player.pair.refreshToken });
  t.is(reused.body.error.code, 'refresh_token_reused');
  await assertClosedWithin(t, sockets, 1_000);
});

test('a bulk revocation by SQL (any path, e.g. ops) closes thousands of sessions with a few notifications', async (t) => {
  const f = await getFixture();
  const players = await Promise.all([signedInPlayer(f.apiA), signedInPlayer(f.apiA), signedInPlayer(f.apiA)]);
  const sockets = (await Promise.all(players.map((p) => socketsOn(f, p.pair)))).flat();
  const notifications = await withAdminClient(async (client) => {
    // Padding: 2,000 more sessions revoked by the same statement.
    await client.query(
      `INSERT INTO user_sessions (user_id, amr, role, expires_at)
       SELECT $1, '{pwd}', 'player', now() + interval '1 day' FROM generate_series(1, 2000)`,
      [players[0]!.userId],
    );
    const listener = await client.query('LISTEN karaxas_session_revoked').then(() => client);
    const seen: string[] = [];
    listener.on('notification', (message) => seen.push(message.payload ?? ''));
    const { rowCount } = await withAdminClient(
      (other) =>
        other.query("UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'ops_revoked_all' WHERE revoked_at IS NULL AND user_id = ANY($1)", [
          players.map((p) => p.userId),
        ]),
      f.a.database.name,
    );
    t.is(rowCount, 2_003);
    await new Promise((resolve) => setTimeout(resolve, 200));
    return seen;
  }, f.a.database.name);
  await assertClosedWithin(t, sockets, 1_000);
  // Other tests revoke sessions concurrently: look at the notifications about these users only.
  const userIds = new Set(players.map((p) => p.userId));
  const payloads = notifications
    .map((payload) => JSON.parse(payload) as { sessionIds: string[]; userIds: string[] })
    .filter((payload) => payload.userIds.some((id) => userIds.has(id)));
  t.true(payloads.length <= 30, `${payloads.length} notifications for 2,003 sessions`);
  const expected = await withAdminClient(
    (client) => client.query<{ id: string }>('SELECT id FROM user_sessions WHERE user_id = ANY($1)', [[...userIds]]),
    f.a.database.name,
  );
  const notified = new Set(payloads.flatMap((p) => p.sessionIds));
  t.is(expected.rows.length, 2_003);
  t.true(expected.rows.every((row) => notified.has(row.id)), 'every revoked session was notified');
  t.true(notifications.every((payload) => Buffer.byteLength(payload) < 7_500));
});

test('revocation still closes sockets within 1 s right after the notification listeners were cut', async (t) => {
  const f = await getFixture();
  const player = await signedInPlayer(f.apiA);
  const sockets = await socketsOn(f, player.pair);
  await withAdminClient(
    (client) => client.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'karaxas-notify' AND datname = current_database()"),
    f.a.database.name,
  );
  t.is((await f.apiA.post('/auth/logout', undefined, player.token)).status, 204);
  await assertClosedWithin(t, sockets, 1_000);
});

test('graceful shutdown closes sockets with 1012', async (t) => {
  const { a, apiA } = await getFixture();
  const leaving = await startTestService(t, env, { database: a.database });
  const player = await signedInPlayer(apiA);
  const sockets = await Promise.all([openSocket(apiA, leaving.url, player.token), openSocket(apiA, leaving.url, player.token)]);
  const survivor = await openSocket(apiA, a.url, player.token);
  const stopping = leaving.shutdown('test');
  const codes = await Promise.all(sockets.map((socket) => socket.closedWithin(2_000)));
  t.deepEqual(codes.map((c) => c.code), [1012, 1012]);
  await stopping;
  await assertStillOpen(t, [survivor]);
  survivor.close();
});
