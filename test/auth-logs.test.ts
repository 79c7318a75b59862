/**
 * No credential reaches a log line or the security-event trail (issue 3 "Done when", contract §3
 * "never logged", §8 "details (jsonb, no secrets)").
 *
 * A full account cycle runs through the real server at LOG_LEVEL=debug — register (and the
 * error paths around it), a failed login, login, refresh, a grace retry, /auth/me, sessions,
 * logout, refresh-token reuse — and then every captured log line and every stored security event
 * is searched for the passwords, the access and refresh tokens (whole and in pieces), the
 * stored argon2id hashes, the refresh tokens' SHA-256 digests and the secrets from the env.
 */
import { createHash, randomBytes } from 'node:crypto';
import test from 'ava';
import { createApi, type ErrorBody, type TokenPair } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { startTestService } from './support/service.js';

const secret = (bytes: number) => randomBytes(bytes).toString('base64url');

test('a full register → login → refresh → me → sessions → logout cycle logs no password, token, hash or secret', async (t) => {
  const env = {
    LOG_LEVEL: 'debug',
    JWT_SECRET: secret(48),
    OPS_API_TOKEN: secret(32),
    TOTP_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  };
  const service = await startTestService(t, env);
  const api = createApi(service.url);
  const userAgent = 'karaxas-log-test/1.0';
  const marker = `log-test-${randomBytes(6).toString('hex')}`;
  const headers = { 'user-agent': userAgent, 'x-request-id': marker };

  const password = `Pw-${secret(18)}`;
  const wrongPassword = `Wrong-${secret(18)}`;
  const shortPassword = `S${secret(6)}`.slice(0, 8);
  const email = `logs-${randomBytes(6).toString('hex')}@example.test`;

  // Registration, and its error paths (the 409 logs its database cause at debug level).
  const registered = await api.post<{ user: { id: string } }>('/auth/register', { email, password, displayName: 'Logs' }, undefined, headers);
  t.is(registered.status, 201);
  t.is((await api.post<ErrorBody>('/auth/register', { email, password, displayName: 'Again' }, undefined, headers)).status, 409);
  t.is((await api.post<ErrorBody>('/auth/register', { email: `x${email}`, password: shortPassword, displayName: 'Short' })).status, 400);
  const malformed = await fetch(`${service.url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: `{"email":"${email}","password":"${password}"`,
  });
  t.is(malformed.status, 400, 'malformed JSON carrying the password');
  await malformed.arrayBuffer();
  t.is((await api.post('/auth/login', { email, password, extra: password })).status, 400, 'unknown key next to the password');

  // Failed logins (known and unknown address), then the cycle.
  t.is((await api.post<ErrorBody>('/auth/login', { email, password: wrongPassword }, undefined, headers)).status, 401);
  t.is((await api.post<ErrorBody>('/auth/login', { email: `nobody-${email}`, password: wrongPassword })).status, 401);
  const login = await api.post<TokenPair>('/auth/login', { email, password }, undefined, headers);
  t.is(login.status, 200);
  const first = login.body;
  const refreshed = await api.post<TokenPair>('/auth/refresh', { refreshToken: first.refreshToken }, undefined, headers);
  t.is(refreshed.status, 200);
  const second = refreshed.body;
  const grace = await api.post<TokenPair>('/auth/refresh', { refreshToken: first.refreshToken }, undefined, headers);
  t.is(grace.status, 200, 'an idempotent retry inside the grace window');
  t.is(grace.body.refreshToken, second.refreshToken);
  t.is((await api.get('/auth/me', second.accessToken, headers)).status, 200);
  t.is((await api.get(`/auth/me?access_token=${encodeURIComponent(second.accessToken)}`)).status, 401, 'token in the query string');
  const sessions = await api.get<{ sessions: unknown[] }>('/auth/sessions', second.accessToken, headers);
  t.is(sessions.status, 200);
  const other = await api.login({ email, password });
  t.is((await api.delete(`/auth/sessions/${other.sessionId}`, second.accessToken)).status, 204);
  t.is((await api.post('/auth/logout', undefined, second.accessToken, headers)).status, 204);
  t.is((await api.get('/auth/me', second.accessToken)).status, 401, 'revoked');
  t.is((await api.post('/auth/refresh', { refreshToken: `kxr_${secret(32)}` })).status, 401, 'unknown refresh token');
  t.is((await api.post('/auth/refresh', { refreshToken: `${first.refreshToken}x` })).status, 401, 'mangled refresh token');

  // Reuse: a third session rotates twice; presenting its first token again revokes everything.
  const third = await api.login({ email, password });
  const thirdRotated = (await api.post<TokenPair>('/auth/refresh', { refreshToken: third.refreshToken })).body;
  const thirdRotatedAgain = (await api.post<TokenPair>('/auth/refresh', { refreshToken: thirdRotated.refreshToken })).body;
  const reused = await api.post<ErrorBody>('/auth/refresh', { refreshToken: third.refreshToken });
  t.is(reused.status, 401);
  t.is(reused.body.error.code, 'refresh_token_reused');
  t.is((await api.get('/auth/me', thirdRotatedAgain.accessToken)).status, 401);

  // What must never appear.
  const pairs = [first, second, grace.body, other, third, thirdRotated, thirdRotatedAgain];
  const storedHashes = await withAdminClient(
    async (client) => (await client.query<{ password_hash: string }>('SELECT password_hash FROM users')).rows.map((row) => row.password_hash),
    service.database.name,
  );
  t.true(storedHashes.length >= 1 && storedHashes.every((hash) => hash.startsWith('$argon2id$')));
  const needles = new Map<string, string>([
    ['password', password],
    ['wrong password', wrongPassword],
    ['short password', shortPassword],
    ['argon2id hash prefix', '$argon2id$'],
    ['JWT_SECRET', env.JWT_SECRET],
    ['OPS_API_TOKEN', env.OPS_API_TOKEN],
    ['TOTP_ENCRYPTION_KEY', env.TOTP_ENCRYPTION_KEY],
  ]);
  for (const [index, stored] of storedHashes.entries()) {
    needles.set(`stored hash ${index}`, stored);
    // The salt and digest segments alone, in case the hash were logged re-encoded or split.
    for (const [part, segment] of stored.split('$').slice(-2).entries()) needles.set(`stored hash ${index} segment ${part}`, segment);
  }
  for (const [index, pair] of pairs.entries()) {
    needles.set(`access token ${index}`, pair.accessToken);
    needles.set(`access token ${index} signature`, pair.accessToken.split('.')[2]!);
    needles.set(`refresh token ${index}`, pair.refreshToken);
    needles.set(`refresh token ${index} body`, pair.refreshToken.replace(/^kxr_/, ''));
    const digest = createHash('sha256').update(pair.refreshToken).digest();
    needles.set(`refresh token ${index} sha256 hex`, digest.toString('hex'));
    needles.set(`refresh token ${index} sha256 base64`, digest.toString('base64'));
  }

  const lines = service.logs.lines;
  t.true(lines.length > 20, `captured ${lines.length} log lines`);
  const entries = service.logs.entries(); // every line is one JSON object
  t.true(entries.some((entry) => entry.severity === 'DEBUG'), 'debug lines were captured');
  t.true(
    entries.some((entry) => (entry.httpRequest as { requestUrl?: string } | undefined)?.requestUrl === '/auth/refresh'),
    'the access log saw the cycle',
  );
  // The log as one text, and with JSON escapes undone, so an escaped occurrence cannot hide.
  const logText = lines.join('\n');
  t.true(logText.includes(marker), 'control: request-scoped lines are searched (they carry the request id)');
  const unescaped = lines.map((line) => JSON.stringify(JSON.parse(line), null, 0).replace(/\\(.)/g, '$1')).join('\n');
  for (const [label, needle] of needles) {
    t.false(logText.includes(needle), `no log line contains the ${label}`);
    t.false(unescaped.includes(needle), `no log line contains the ${label} (escapes undone)`);
  }

  // The security-event trail: details hold no secret; neither does any other column.
  const events = await withAdminClient(
    async (client) =>
      (
        await client.query<{ event_type: string; details: string; row: string }>(
          'SELECT event_type, details::text AS details, row_to_json(e)::text AS row FROM security_event_audit e ORDER BY seq',
        )
      ).rows,
    service.database.name,
  );
  const types = new Set(events.map((event) => event.event_type));
  for (const type of [
    'user_registered',
    'login_failed',
    'login_succeeded',
    'refresh_rotated',
    'refresh_token_grace_reuse',
    'session_revoked',
    'logout',
    'refresh_token_reuse_detected',
    'session_bulk_revocation',
  ]) {
    t.true(types.has(type), `the trail has ${type}`);
  }
  const details = events.map((event) => event.details).join('\n');
  const rows = events.map((event) => event.row).join('\n');
  for (const [label, needle] of needles) {
    t.false(details.includes(needle), `no security event's details contain the ${label}`);
    t.false(rows.includes(needle), `no security event row contains the ${label}`);
  }
});
