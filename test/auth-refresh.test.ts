/**
 * Refresh-token rotation, grace and reuse detection — with real concurrent requests.
 */
import test from 'ava';
import { createApi, type Api, type ErrorBody, type TokenPair } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { useSharedService, type TestService } from './support/service.js';

// The widest window the config allows: the 50-way races queue on the session lock and the chain
// lock, and on a loaded machine the last of them can start more than the default 10 s after the
// rotation — which is then, correctly, reuse. The window itself is tested with shortGrace.
const withGrace = useSharedService({ REFRESH_REUSE_GRACE_SECONDS: '60' });
const withoutGrace = useSharedService({ REFRESH_REUSE_GRACE_SECONDS: '0' });
const shortGrace = useSharedService({ REFRESH_REUSE_GRACE_SECONDS: '1', ADMIN_REFRESH_TOKEN_TTL_SECONDS: '3' });

const RACE_SIZE = 50;
const ROUNDS = 8;

const query = <R extends Record<string, unknown>>(service: TestService, text: string, values: unknown[] = []) =>
  withAdminClient(async (client) => (await client.query<R>(text, values)).rows, service.database.name);

const liveTokenCount = async (service: TestService, sessionId: string) =>
  Number(
    (
      await query<{ count: string }>(
        service,
        'SELECT count(*) FROM refresh_tokens t JOIN user_sessions s ON s.id = t.session_id WHERE t.session_id = $1 AND t.rotated_at IS NULL AND s.revoked_at IS NULL',
        [sessionId],
      )
    )[0]!.count,
  );

const race = (api: Api, refreshToken: string, size = RACE_SIZE) =>
  Promise.all(Array.from({ length: size }, () => api.post<TokenPair & ErrorBody>('/auth/refresh', { refreshToken })));

test('50 concurrent refreshes with one token and grace on: one rotation, every caller gets the same successor', async (t) => {
  const service = await withGrace();
  const api = createApi(service.url);
  for (let round = 0; round < ROUNDS; round += 1) {
    const account = await api.register();
    const pair = await api.login(account);
    const responses = await race(api, pair.refreshToken);
    t.true(
      responses.every((response) => response.status === 200),
      `round ${round}: ${responses.map((r) => r.status).join(',')}`,
    );
    const successors = new Set(responses.map((response) => response.body.refreshToken));
    t.is(successors.size, 1, 'never two live successors');
    t.is(await liveTokenCount(service, pair.sessionId), 1);

    const [successor] = [...successors];
    const next = await api.post<TokenPair>('/auth/refresh', { refreshToken: successor });
    t.is(next.status, 200, 'the shared successor rotates normally');

    const events = await query<{ event_type: string; n: string }>(
      service,
      'SELECT event_type, count(*) AS n FROM security_event_audit WHERE session_id = $1 GROUP BY event_type',
      [pair.sessionId],
    );
    const counts = Object.fromEntries(events.map((row) => [row.event_type, Number(row.n)]));
    t.is(counts.refresh_rotated, 2);
    t.is(counts.refresh_token_grace_reuse, RACE_SIZE - 1);
    t.is(counts.refresh_token_reuse_detected, undefined);
  }
});

test('50 concurrent refreshes with grace off: exactly one succeeds, the rest revoke every session of the user', async (t) => {
  const service = await withoutGrace();
  const api = createApi(service.url);
  const bystander = await api.login(await api.register());
  for (let round = 0; round < ROUNDS; round += 1) {
    const account = await api.register();
    const other = await api.login(account);
    const pair = await api.login(account);
    const responses = await race(api, pair.refreshToken);
    const ok = responses.filter((response) => response.status === 200);
    t.is(ok.length, 1, `round ${round}: ${responses.map((r) => r.status).join(',')}`);
    t.true(
      responses.filter((response) => response.status !== 200).every((response) => response.body.error.code === 'refresh_token_reused'),
    );
    // The one successor is dead: its session was revoked by the reuse in the same race.
    t.is((await api.post('/auth/refresh', { refreshToken: ok[0]!.body.refreshToken })).status, 401);
    t.is((await api.get('/auth/me', ok[0]!.body.accessToken)).status, 401);
    t.is((await api.get('/auth/me', other.accessToken)).status, 401, "the user's other sessions are revoked too");
    t.is(await liveTokenCount(service, pair.sessionId), 0);
    const active = await query<{ count: string }>(
      service,
      'SELECT count(*) FROM user_sessions WHERE user_id = $1 AND revoked_at IS NULL',
      [account.id],
    );
    t.is(Number(active[0]!.count), 0);
  }
  t.is((await api.get('/auth/me', bystander.accessToken)).status, 200, 'other users are untouched');
});

test('reuse after the grace window: 401 refresh_token_reused, all sessions revoked, events in order with one request id', async (t) => {
  const service = await shortGrace();
  const api = createApi(service.url);
  const account = await api.register();
  const victimOther = await api.login(account);
  const pair = await api.login(account);
  const bystander = await api.login(await api.register());
  const rotated = await api.post<TokenPair>('/auth/refresh', { refreshToken: pair.refreshToken });
  t.is(rotated.status, 200);
  await new Promise((resolve) => setTimeout(resolve, 1_600));

  const replay = await api.post<ErrorBody>('/auth/refresh', { refreshToken: pair.refreshToken }, undefined, {
    'x-request-id': 'replay-attempt-1',
  });
  t.is(replay.status, 401);
  t.is(replay.body.error.code, 'refresh_token_reused');
  for (const token of [pair.accessToken, rotated.body.accessToken, victimOther.accessToken]) {
    t.is((await api.get('/auth/me', token)).status, 401);
  }
  t.is((await api.get('/auth/me', bystander.accessToken)).status, 200);

  const events = await query<{ event_type: string; request_id: string; details: Record<string, unknown> }>(
    service,
    "SELECT event_type, request_id, details FROM security_event_audit WHERE user_id = $1 AND event_type IN ('refresh_token_reuse_detected', 'session_bulk_revocation') ORDER BY seq",
    [account.id],
  );
  t.deepEqual(
    events.map((event) => event.event_type),
    ['refresh_token_reuse_detected', 'session_bulk_revocation'],
  );
  t.true(events.every((event) => event.request_id === 'replay-attempt-1'));
  t.is(events[1]!.details.revoked, 2);

  const reasons = await query<{ revoked_reason: string }>(service, 'SELECT DISTINCT revoked_reason FROM user_sessions WHERE user_id = $1', [
    account.id,
  ]);
  t.deepEqual(
    reasons.map((row) => row.revoked_reason),
    ['refresh_token_reuse'],
  );
});

test('a child token used after its family was revoked for reuse fails, with no further revocation', async (t) => {
  const service = await withGrace();
  const api = createApi(service.url);
  const account = await api.register();
  const pair = await api.login(account);
  const child = await api.post<TokenPair>('/auth/refresh', { refreshToken: pair.refreshToken });
  const grandchild = await api.post<TokenPair>('/auth/refresh', { refreshToken: child.body.refreshToken });
  t.is(grandchild.status, 200);
  // pair.refreshToken is two generations old: no grace, reuse.
  const reuse = await api.post<ErrorBody>('/auth/refresh', { refreshToken: pair.refreshToken });
  t.is(reuse.body.error.code, 'refresh_token_reused');

  const fresh = await api.login(account);
  for (const token of [grandchild.body.refreshToken, child.body.refreshToken]) {
    const response = await api.post<ErrorBody>('/auth/refresh', { refreshToken: token });
    t.is(response.status, 401, 'a token of a reuse-revoked family never gets grace');
  }
  t.is((await api.get('/auth/me', fresh.accessToken)).status, 200, 'a session opened after the revocation is not hit again');
  const bulk = await query<{ count: string }>(
    service,
    "SELECT count(*) FROM security_event_audit WHERE user_id = $1 AND event_type = 'session_bulk_revocation'",
    [account.id],
  );
  t.is(Number(bulk[0]!.count), 1);
});

test('grace covers only the immediate predecessor of the live token', async (t) => {
  const service = await withGrace();
  const api = createApi(service.url);
  const pair = await api.login(await api.register());
  const first = await api.post<TokenPair>('/auth/refresh', { refreshToken: pair.refreshToken });
  const retry = await api.post<TokenPair>('/auth/refresh', { refreshToken: pair.refreshToken });
  t.is(retry.status, 200);
  t.is(retry.body.refreshToken, first.body.refreshToken, 'an idempotent retry gets the same successor');
  await api.post<TokenPair>('/auth/refresh', { refreshToken: first.body.refreshToken });
  const stale = await api.post<ErrorBody>('/auth/refresh', { refreshToken: pair.refreshToken });
  t.is(stale.body.error.code, 'refresh_token_reused');
});

test('the sealed successor is not kept past the grace window', async (t) => {
  const service = await shortGrace();
  const api = createApi(service.url);
  const pair = await api.login(await api.register());
  const first = await api.post<TokenPair>('/auth/refresh', { refreshToken: pair.refreshToken });
  const sealed = async () =>
    Number(
      (
        await query<{ count: string }>(
          service,
          'SELECT count(*) FROM refresh_tokens WHERE session_id = $1 AND successor_sealed IS NOT NULL',
          [pair.sessionId],
        )
      )[0]!.count,
    );
  t.is(await sealed(), 1);
  await new Promise((resolve) => setTimeout(resolve, 1_200));
  await api.post('/auth/refresh', { refreshToken: first.body.refreshToken });
  t.is(await sealed(), 1, 'only the newest rotation keeps a sealed successor');
  const raw = await query<{ successor_sealed: Buffer }>(
    service,
    'SELECT successor_sealed FROM refresh_tokens WHERE session_id = $1 AND successor_sealed IS NOT NULL',
    [pair.sessionId],
  );
  t.false(raw[0]!.successor_sealed.toString('latin1').includes('kxr_'), 'the successor is stored sealed, not in plaintext');
});

test('admin sessions: shorter refresh lifetime and no grace on reuse', async (t) => {
  const service = await shortGrace();
  const api = createApi(service.url);
  const admin = await api.register();
  await query(service, "UPDATE users SET role = 'admin' WHERE id = $1", [admin.id]);
  const player = await api.login(await api.register());
  const pair = await api.login(admin);
  t.true(pair.refreshExpiresIn <= 3, `admin refreshExpiresIn is ${pair.refreshExpiresIn}`);
  t.true(player.refreshExpiresIn > 3);

  const rotated = await api.post<TokenPair>('/auth/refresh', { refreshToken: pair.refreshToken });
  t.is(rotated.status, 200);
  t.true(rotated.body.refreshExpiresIn <= 3, 'rotation does not extend an admin session');
  const immediateRetry = await api.post<ErrorBody>('/auth/refresh', { refreshToken: pair.refreshToken });
  t.is(immediateRetry.body.error.code, 'refresh_token_reused', 'no grace for admin sessions');

  const again = await api.login(admin);
  await new Promise((resolve) => setTimeout(resolve, 3_200));
  const expired = await api.post<ErrorBody>('/auth/refresh', { refreshToken: again.refreshToken });
  t.is(expired.status, 401);
  t.is(expired.body.error.code, 'invalid_refresh_token');
  const playerRefresh = await api.post('/auth/refresh', { refreshToken: player.refreshToken });
  t.is(playerRefresh.status, 200, "a player's token outlives the admin lifetime");
});

test('unknown, malformed and foreign-format refresh tokens → 401 invalid_refresh_token', async (t) => {
  const api = createApi((await withGrace()).url);
  for (const refreshToken of ['kxr_AAAA', 'not-a-token', 'kxr_' + 'A'.repeat(43)]) {
    const response = await api.post<ErrorBody>('/auth/refresh', { refreshToken });
    t.is(response.status, 401);
    t.is(response.body.error.code, 'invalid_refresh_token');
  }
  const wrongType = await api.post<ErrorBody>('/auth/refresh', { refreshToken: 42 });
  t.is(wrongType.status, 400);
});
