import test from 'ava';
import { createApi, type ErrorBody, type TokenPair } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { useSharedService } from './support/service.js';

const shared = useSharedService();
let api: ReturnType<typeof createApi>;
let service: Awaited<ReturnType<typeof shared>>;

test.before(async () => {
  service = await shared();
  api = createApi(service.url);
});

const isoPattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

test('register returns the public user and never the password hash', async (t) => {
  const response = await api.post<{ user: Record<string, unknown> }>('/auth/register', {
    email: 'Alice.Example@Example.test',
    password: 'correct horse battery staple',
    displayName: 'Alice',
  });
  t.is(response.status, 201);
  const { user } = response.body;
  t.deepEqual(Object.keys(user).sort(), ['createdAt', 'displayName', 'email', 'id', 'mfaEnabled', 'role']);
  t.is(user.email, 'alice.example@example.test');
  t.is(user.role, 'player');
  t.false(user.mfaEnabled);
  t.regex(String(user.createdAt), isoPattern);

  const stored = await withAdminClient(
    (client) => client.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [user.id]),
    service.database.name,
  );
  // argon2id at (at least) OWASP's minimum: m=19 MiB, t=2, p=1.
  t.regex(stored.rows[0]!.password_hash, /^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
});

test('register: e-mail addresses are unique case-insensitively → 409 email_taken', async (t) => {
  const account = await api.register();
  const again = await api.post<ErrorBody>('/auth/register', {
    email: account.email.toUpperCase(),
    password: account.password,
    displayName: 'Someone Else',
  });
  t.is(again.status, 409);
  t.is(again.body.error.code, 'email_taken');
});

test('register: password length 12–128 and other schema rules → 400 validation_failed with details', async (t) => {
  for (const password of ['short', 'x'.repeat(11), 'y'.repeat(129)]) {
    const response = await api.post<ErrorBody>('/auth/register', { email: 'len@example.test', password, displayName: 'Len' });
    t.is(response.status, 400);
    t.is(response.body.error.code, 'validation_failed');
    t.true(response.body.error.details!.some((detail) => detail.path === 'body.password'));
    t.false(JSON.stringify(response.body).includes(password), 'the submitted value is not echoed');
  }
  const badName = await api.post<ErrorBody>('/auth/register', {
    email: 'name@example.test',
    password: 'long enough password',
    displayName: 'bell\u0007',
  });
  t.is(badName.body.error.code, 'validation_failed');
  const extra = await api.post<ErrorBody>('/auth/register', {
    email: 'extra@example.test',
    password: 'long enough password',
    displayName: 'Extra',
    role: 'admin',
  });
  t.is(extra.status, 400, 'unknown fields such as role are refused, not ignored');
});

test('login returns a token pair per the contract; /auth/me answers the user', async (t) => {
  const account = await api.register();
  const pair = await api.login(account);
  t.is(pair.tokenType, 'Bearer');
  t.is(pair.expiresIn, 900);
  t.true(pair.refreshExpiresIn > 2_591_000 && pair.refreshExpiresIn <= 2_592_000);
  t.regex(pair.refreshToken, /^kxr_[A-Za-z0-9_-]{43}$/);
  const me = await api.get<{ user: { id: string; email: string } }>('/auth/me', pair.accessToken);
  t.is(me.status, 200);
  t.is(me.body.user.id, account.id);

  const claims = JSON.parse(Buffer.from(pair.accessToken.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  t.is(claims.sub, account.id);
  t.is(claims.sid, pair.sessionId);
  t.is(claims.role, 'player');
  t.deepEqual(claims.amr, ['pwd']);
  t.is(claims.iss, 'karaxas-backend');
  t.is(claims.aud, 'karaxas-game');
  t.is(Number(claims.exp) - Number(claims.iat), 900);
  const header = JSON.parse(Buffer.from(pair.accessToken.split('.')[0]!, 'base64url').toString()) as Record<string, unknown>;
  t.is(header.alg, 'HS256');
  t.truthy(header.kid);
});

test('unknown e-mail and wrong password give the same 401 body', async (t) => {
  const account = await api.register();
  const wrong = await api.post<ErrorBody>('/auth/login', { email: account.email, password: 'not the password at all' });
  const unknown = await api.post<ErrorBody>('/auth/login', { email: 'nobody-here@example.test', password: 'not the password at all' });
  t.is(wrong.status, 401);
  t.is(unknown.status, 401);
  const strip = (body: ErrorBody) => ({ ...body.error, requestId: undefined });
  t.deepEqual(strip(wrong.body), strip(unknown.body));
  t.is(wrong.body.error.code, 'invalid_credentials');
});

test('/auth/me without or with a malformed token → 401 unauthorized with WWW-Authenticate', async (t) => {
  const none = await api.get<ErrorBody>('/auth/me');
  t.is(none.status, 401);
  t.is(none.body.error.code, 'unauthorized');
  t.is(none.headers.get('www-authenticate'), 'Bearer');
  const basic = await api.get<ErrorBody>('/auth/me', undefined, { authorization: 'Basic dXNlcjpwYXNz' });
  t.is(basic.status, 401);
});

test('sessions: list active ones with the current flag; revoke one; revoke all', async (t) => {
  const account = await api.register();
  const first = await api.login(account, { 'user-agent': 'device-one' });
  const second = await api.login(account, { 'user-agent': 'device-two' });
  const third = await api.login(account, { 'user-agent': 'device-three' });

  const listed = await api.get<{ sessions: Array<Record<string, unknown>> }>('/auth/sessions', first.accessToken);
  t.is(listed.status, 200);
  t.is(listed.body.sessions.length, 3);
  const current = listed.body.sessions.filter((session) => session.current);
  t.is(current.length, 1);
  t.is(current[0]!.id, first.sessionId);
  const entry = listed.body.sessions.find((session) => session.id === second.sessionId)!;
  t.is(entry.userAgent, 'device-two');
  t.is(entry.ip, '127.0.0.1');
  for (const key of ['createdAt', 'lastUsedAt', 'expiresAt']) t.regex(String(entry[key]), isoPattern);

  // Another user cannot revoke it: 404, not 403, so session ids are not confirmed to exist.
  const stranger = await api.login(await api.register());
  const foreign = await api.delete<ErrorBody>(`/auth/sessions/${second.sessionId}`, stranger.accessToken);
  t.is(foreign.status, 404);
  t.is(foreign.body.error.code, 'not_found');

  const revoked = await api.delete(`/auth/sessions/${second.sessionId}`, first.accessToken);
  t.is(revoked.status, 204);
  t.is((await api.get('/auth/me', second.accessToken)).status, 401, "the revoked session's access token stops at once");
  t.is((await api.post('/auth/refresh', { refreshToken: second.refreshToken })).status, 401);
  t.is((await api.delete(`/auth/sessions/${second.sessionId}`, first.accessToken)).status, 404, 'already revoked');

  const all = await api.post<{ revoked: number }>('/auth/sessions/revoke-all', undefined, third.accessToken);
  t.is(all.status, 200);
  t.is(all.body.revoked, 2);
  t.is((await api.get('/auth/me', first.accessToken)).status, 401);
  t.is((await api.get('/auth/me', third.accessToken)).status, 401, 'the current session is included');
  t.is((await api.get('/auth/me', stranger.accessToken)).status, 200, 'other users are untouched');

  const reasons = await withAdminClient(
    (client) =>
      client.query<{ revoked_reason: string }>('SELECT revoked_reason FROM user_sessions WHERE user_id = $1 ORDER BY revoked_reason', [
        account.id,
      ]),
    service.database.name,
  );
  t.deepEqual(
    reasons.rows.map((row) => row.revoked_reason),
    ['user_revoked', 'user_revoked_all', 'user_revoked_all'],
  );
});

test('logout revokes that session only and records the event', async (t) => {
  const account = await api.register();
  const kept = await api.login(account);
  const leaving = await api.login(account);
  const response = await api.post('/auth/logout', undefined, leaving.accessToken);
  t.is(response.status, 204);
  t.is((await api.get('/auth/me', leaving.accessToken)).status, 401);
  t.is((await api.post('/auth/refresh', { refreshToken: leaving.refreshToken })).status, 401);
  t.is((await api.get('/auth/me', kept.accessToken)).status, 200);

  const events = await withAdminClient(
    (client) =>
      client.query<{ event_type: string; session_id: string; request_id: string }>(
        "SELECT event_type, session_id, request_id FROM security_event_audit WHERE user_id = $1 AND event_type = 'logout'",
        [account.id],
      ),
    service.database.name,
  );
  t.is(events.rows.length, 1);
  t.is(events.rows[0]!.session_id, leaving.sessionId);
  t.truthy(events.rows[0]!.request_id);
});

test('register and login record user_registered and login_succeeded with request metadata', async (t) => {
  const requestId = 'trace-register-123';
  const account = await api.register();
  await api.login(account, { 'x-request-id': requestId, 'user-agent': 'karaxas-test/1.0' });
  const events = await withAdminClient(
    (client) =>
      client.query<{ event_type: string; request_id: string; user_agent: string; ip: string }>(
        'SELECT event_type, request_id, user_agent, host(ip) AS ip FROM security_event_audit WHERE user_id = $1 ORDER BY seq',
        [account.id],
      ),
    service.database.name,
  );
  t.deepEqual(
    events.rows.map((row) => row.event_type),
    ['user_registered', 'login_succeeded'],
  );
  t.is(events.rows[1]!.request_id, requestId);
  t.is(events.rows[1]!.user_agent, 'karaxas-test/1.0');
  t.is(events.rows[1]!.ip, '127.0.0.1');
});

test('a valid pair keeps working across rotation; the old access token stays valid until expiry', async (t) => {
  const account = await api.register();
  const pair = await api.login(account);
  const rotated = await api.post<TokenPair>('/auth/refresh', { refreshToken: pair.refreshToken });
  t.is(rotated.status, 200);
  t.is(rotated.body.sessionId, pair.sessionId);
  t.not(rotated.body.refreshToken, pair.refreshToken);
  t.is((await api.get('/auth/me', rotated.body.accessToken)).status, 200);
  t.is((await api.get('/auth/me', pair.accessToken)).status, 200, 'rotation does not end the session');
});
