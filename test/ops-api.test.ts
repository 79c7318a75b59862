/**
 * The ops API through the real server on real PostgreSQL (contract §7, §8): authentication of
 * every route (ops token, admin with otp, and each refusal recorded as ops_auth_failed), the
 * admin_action_audit row each mutating call leaves, the incident actions, the audit queries with
 * keyset pagination under concurrent inserts, the metrics, and the query plans at 200k rows.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import WebSocket from 'ws';
import { createApi, type Api, type ErrorBody, type TokenPair } from './support/api.js';
import { createTestDatabase, withAdminClient } from './support/database.js';
import { startTestService, useSharedService, type TestService } from './support/service.js';
import { settledStep, totpForStep } from './support/totp.js';
import { countsByTypeQuery } from '../app/audit/store.js';
import { opsRoutes, type AdminAuditItem, type OpsMetrics, type SecurityEventItem } from '../app/ops/schemas.js';
import { createFailureThrottle, opsBearer, secretEquals } from '../app/ops/guard.js';

const shared = useSharedService({ TRUST_PROXY: 'true', AUTH_LOCKOUT_THRESHOLD: '100' });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const query = async <R extends Record<string, unknown>>(service: TestService, text: string, values: unknown[] = []) =>
  withAdminClient(async (client) => (await client.query<R>(text, values)).rows, service.database.name);

let ipCounter = 1;
/** A distinct client address per call (TRUST_PROXY: the entry before the load balancer's). */
const nextIp = () => {
  ipCounter += 1;
  return `198.51.${Math.floor(ipCounter / 250) % 250}.${(ipCounter % 250) + 1}`;
};
const fromIp = (ip: string, requestId = `req-${randomUUID()}`) => ({ 'x-forwarded-for': `${ip}, 10.9.9.9`, 'x-request-id': requestId });

type Page<T> = { items: T[]; nextCursor: string | null };

/** An admin session with amr [pwd, otp]: TOTP enrolled and activated, role admin, then a fresh MFA sign-in. */
const adminWithOtp = async (t: ExecutionContext, service: TestService, api: Api) => {
  const account = await api.register();
  const first = await api.login(account);
  const enrolled = await api.post<{ secret: string }>('/auth/mfa/totp/enroll', undefined, first.accessToken);
  t.is(enrolled.status, 200);
  const step = await settledStep();
  const activated = await api.post('/auth/mfa/totp/activate', { code: totpForStep(enrolled.body.secret, step - 1) }, first.accessToken);
  t.is(activated.status, 200, JSON.stringify(activated.body));
  await query(service, "UPDATE users SET role = 'admin' WHERE id = $1", [account.id]);
  const challenge = await api.post<{ mfaToken: string }>('/auth/login', { email: account.email, password: account.password });
  const pair = await api.post<TokenPair>('/auth/mfa/verify', { mfaToken: challenge.body.mfaToken, code: totpForStep(enrolled.body.secret, step) });
  t.is(pair.status, 200, JSON.stringify(pair.body));
  return { ...account, accessToken: pair.body.accessToken };
};

/** An admin whose session has only a password (amr [pwd]). */
const adminWithoutOtp = async (service: TestService, api: Api) => {
  const account = await api.register();
  await query(service, "UPDATE users SET role = 'admin' WHERE id = $1", [account.id]);
  return { ...account, accessToken: (await api.login(account)).accessToken };
};

const adminRowsFor = (service: TestService, requestId: string) =>
  query<{ actor: string; action: string; target: string | null; details: Record<string, unknown>; request_id: string; ip: string }>(
    service,
    'SELECT actor, action, target, details, request_id, host(ip) AS ip FROM admin_action_audit WHERE request_id = $1',
    [requestId],
  );

const eventsFor = (service: TestService, requestId: string) =>
  query<{ event_type: string; user_id: string | null; details: Record<string, unknown>; ip: string | null }>(
    service,
    'SELECT event_type, user_id, details, host(ip) AS ip FROM security_event_audit WHERE request_id = $1 ORDER BY seq',
    [requestId],
  );

/** Every §7 route with a request that would succeed for an authorised caller. */
const routeCalls = (ids: { policyId: string; drainId: string; userId: string }) => [
  { method: 'GET', path: opsRoutes.metrics.path },
  { method: 'GET', path: `${opsRoutes.adminAudit.path}?limit=5` },
  { method: 'GET', path: `${opsRoutes.securityAudit.path}?event_type=login_failed` },
  { method: 'GET', path: opsRoutes.verifySecurityAudit.path },
  { method: 'POST', path: opsRoutes.createPolicy.path, body: { platform: 'linux', minSupportedVersion: '1.0.0', latestVersion: '1.1.0', forceUpdate: false, loginGate: false } },
  { method: 'POST', path: `/ops/release/policies/${ids.policyId}/activate` },
  { method: 'POST', path: opsRoutes.publish.path, body: { platform: 'linux', version: '1.1.0', minSupportedVersion: '1.0.0', forceUpdate: false, graceSeconds: 0 } },
  { method: 'GET', path: `/ops/release/drains/${ids.drainId}` },
  { method: 'POST', path: opsRoutes.revokeSessions.path, body: { userId: ids.userId, reason: 'test' } },
  { method: 'POST', path: `/ops/users/${ids.userId}/role`, body: { role: 'player' } },
  { method: 'POST', path: `/ops/users/${ids.userId}/force-password-reset` },
  { method: 'GET', path: opsRoutes.mfaKeys.path },
  { method: 'POST', path: opsRoutes.mfaReseal.path, body: { batchSize: 10 } },
];

test('every ops route refuses missing, wrong, player and non-MFA admin tokens, recording ops_auth_failed', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const player = await api.login(await api.register());
  const admin = await adminWithoutOtp(service, api);
  const calls = routeCalls({ policyId: randomUUID(), drainId: randomUUID(), userId: randomUUID() });
  const attempts: Array<{ token?: string; status: number; code: string; reason: string }> = [
    { status: 401, code: 'unauthorized', reason: 'missing_token' },
    { token: randomBytes(32).toString('base64url'), status: 401, code: 'unauthorized', reason: 'invalid_token' },
    { token: `${service.config.secrets.opsApiToken}x`, status: 401, code: 'unauthorized', reason: 'invalid_token' },
    { token: player.accessToken, status: 403, code: 'forbidden', reason: 'not_admin' },
    { token: admin.accessToken, status: 403, code: 'mfa_required', reason: 'mfa_required' },
  ];
  for (const call of calls) {
    for (const attempt of attempts) {
      const requestId = `authfail-${randomUUID()}`;
      const ip = nextIp();
      const response = await api.request<ErrorBody>(call.method, call.path, { body: call.body, token: attempt.token, headers: fromIp(ip, requestId) });
      const label = `${call.method} ${call.path} ${attempt.reason}`;
      t.is(response.status, attempt.status, label);
      t.is(response.body.error.code, attempt.code, label);
      t.is(response.body.error.requestId, requestId);
      const events = await eventsFor(service, requestId);
      t.is(events.length, 1, label);
      t.is(events[0]!.event_type, 'ops_auth_failed');
      t.is(events[0]!.details.reason, attempt.reason);
      t.is(events[0]!.ip, ip);
      if (attempt.reason === 'not_admin' || attempt.reason === 'mfa_required') t.truthy(events[0]!.user_id);
      t.is((await adminRowsFor(service, requestId)).length, 0, 'a refused call changes nothing');
    }
  }
  // The ops token never reaches a log line.
  t.false(service.logs.lines.some((line) => line.includes(service.config.secrets.opsApiToken)));
});

test('ops_auth_failed recording is throttled per IP (the table cannot be flooded)', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const ip = nextIp();
  const statuses = await Promise.all(
    Array.from({ length: 40 }, () => api.request('GET', opsRoutes.metrics.path, { token: 'wrong-token', headers: fromIp(ip) }).then((r) => r.status)),
  );
  t.true(statuses.every((status) => status === 401), 'every failure is still refused');
  const [row] = await query<{ n: string }>(service, "SELECT count(*) AS n FROM security_event_audit WHERE event_type = 'ops_auth_failed' AND ip = $1::inet", [ip]);
  t.is(Number(row!.n), 20, 'at most 20 recorded per IP per minute');

  // Unit: a new window records again and carries the number suppressed meanwhile.
  let now = 0;
  const throttle = createFailureThrottle({ perIp: 2, global: 100, windowMs: 1_000, now: () => now });
  t.deepEqual([throttle.admit('a'), throttle.admit('a'), throttle.admit('a'), throttle.admit('a'), throttle.admit('b')], [0, 0, undefined, undefined, 0]);
  now = 1_000;
  t.is(throttle.admit('a'), 2);
  t.true(secretEquals('same', 'same'));
  t.false(secretEquals('same', 'same-but-longer'));
  t.is(opsBearer('bearer a$b!c{d}'), 'a$b!c{d}');
  t.is(opsBearer('Basic abc'), undefined);
  t.is(opsBearer('Bearer '), undefined);
});

test('an ops token with any visible characters is accepted (Secret Manager values are not token68)', async (t) => {
  const token = `ops-${randomBytes(24).toString('base64url')}!$%&*()[]{}<>?:;,"'\\|^\``;
  const service = await startTestService(t, { OPS_API_TOKEN: token });
  const api = createApi(service.url);
  t.is((await api.request('GET', opsRoutes.metrics.path, { token })).status, 200);
  t.is((await api.request('GET', opsRoutes.metrics.path, { token: token.slice(0, -1) })).status, 401);
  t.false(service.logs.lines.some((line) => line.includes(token.slice(0, 20))));
});

test('the ops token and an admin with otp are accepted; each mutating call leaves one audited row', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const ops = service.config.secrets.opsApiToken;
  const admin = await adminWithOtp(t, service, api);

  // Create (ops token).
  const createId = `create-${randomUUID()}`;
  const createIp = nextIp();
  const created = await api.request<{ policy: { id: string; active: boolean; createdBy: string } }>('POST', opsRoutes.createPolicy.path, {
    token: ops,
    body: { platform: 'windows', minSupportedVersion: '2.0.0', latestVersion: '2.3.1', forceUpdate: true, loginGate: false },
    headers: fromIp(createIp, createId),
  });
  t.is(created.status, 201, JSON.stringify(created.body));
  t.false(created.body.policy.active);
  t.is(created.body.policy.createdBy, 'ops-token');
  const [createRow, ...moreCreate] = await adminRowsFor(service, createId);
  t.is(moreCreate.length, 0, 'exactly one row');
  t.like(createRow, { actor: 'ops-token', action: 'release.policy.create', target: created.body.policy.id, request_id: createId, ip: createIp });
  t.is(createRow!.details.platform, 'windows');

  // Activate (admin with otp).
  const activateId = `activate-${randomUUID()}`;
  const activateIp = nextIp();
  const activated = await api.request<{ policy: { id: string; active: boolean } }>('POST', `/ops/release/policies/${created.body.policy.id}/activate`, {
    token: admin.accessToken,
    headers: fromIp(activateIp, activateId),
  });
  t.is(activated.status, 200, JSON.stringify(activated.body));
  t.true(activated.body.policy.active);
  t.deepEqual(
    (await adminRowsFor(service, activateId)).map((r) => ({ actor: r.actor, action: r.action, target: r.target, ip: r.ip })),
    [{ actor: admin.id, action: 'release.policy.activate', target: created.body.policy.id, ip: activateIp }],
  );
  const missing = await api.request<ErrorBody>('POST', `/ops/release/policies/${randomUUID()}/activate`, { token: ops });
  t.is(missing.status, 404);
  const invalid = await api.request<ErrorBody>('POST', opsRoutes.createPolicy.path, {
    token: ops,
    body: { platform: 'windows', minSupportedVersion: '3.0.0', latestVersion: '2.0.0', forceUpdate: false, loginGate: false },
  });
  t.is(invalid.status, 400);
  t.is(invalid.body.error.code, 'validation_failed');

  // Publish (no sockets: with no grace the drain completes at once).
  const publishId = `publish-${randomUUID()}`;
  const publishIp = nextIp();
  const published = await api.request<{ drainId: string; policyId: string }>('POST', opsRoutes.publish.path, {
    token: ops,
    body: { platform: 'macos', version: '5.0.0', minSupportedVersion: '4.0.0', forceUpdate: false, graceSeconds: 0 },
    headers: fromIp(publishIp, publishId),
  });
  t.is(published.status, 202, JSON.stringify(published.body));
  t.like((await adminRowsFor(service, publishId))[0], { actor: 'ops-token', action: 'release.publish', target: published.body.drainId, ip: publishIp });
  t.is((await adminRowsFor(service, publishId)).length, 1);
  let drain: { status: string; counts: { instances: number; instancesCompleted: number } } | undefined;
  for (let i = 0; i < 50; i += 1) {
    const response = await api.request<{ drain: NonNullable<typeof drain> }>('GET', `/ops/release/drains/${published.body.drainId}`, { token: admin.accessToken });
    t.is(response.status, 200);
    drain = response.body.drain;
    if (drain.status !== 'running') break;
    await sleep(100);
  }
  t.is(drain?.status, 'completed');
  t.is(drain?.counts.instancesCompleted, 1);
  t.is((await api.request('GET', `/ops/release/drains/${randomUUID()}`, { token: ops })).status, 404);

  // Reads leave no admin row.
  const readId = `read-${randomUUID()}`;
  for (const path of [opsRoutes.metrics.path, opsRoutes.adminAudit.path, opsRoutes.securityAudit.path, opsRoutes.verifySecurityAudit.path]) {
    t.is((await api.request('GET', path, { token: admin.accessToken, headers: fromIp(nextIp(), readId) })).status, 200, path);
  }
  t.is((await adminRowsFor(service, readId)).length, 0);
});

test('revoke one user: sessions and live sockets end, session_bulk_revocation and the admin row are recorded', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const victim = await api.register();
  const pairs = [await api.login(victim), await api.login(victim)];
  const bystander = await api.login(await api.register());
  const ticket = await api.post<{ ticket: string }>('/auth/ws-ticket', undefined, pairs[0]!.accessToken);
  t.is(ticket.status, 201);
  const socket = new WebSocket(`${service.url.replace('http', 'ws')}/ws?ticket=${ticket.body.ticket}`);
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));

  const requestId = `revoke-${randomUUID()}`;
  const ip = nextIp();
  const response = await api.request<{ revoked: number }>('POST', opsRoutes.revokeSessions.path, {
    token: service.config.secrets.opsApiToken,
    body: { userId: victim.id, reason: 'suspected compromise' },
    headers: fromIp(ip, requestId),
  });
  t.is(response.status, 200, JSON.stringify(response.body));
  t.is(response.body.revoked, 2);
  for (const pair of pairs) t.is((await api.get('/auth/me', pair.accessToken)).status, 401);
  t.is((await api.get('/auth/me', bystander.accessToken)).status, 200, 'other users untouched');
  t.is(await closed, 4001, 'the live socket closed');
  t.like((await adminRowsFor(service, requestId))[0], { actor: 'ops-token', action: 'sessions.revoke', target: victim.id, request_id: requestId, ip });
  const events = await eventsFor(service, requestId);
  t.deepEqual(events.map((e) => e.event_type), ['session_bulk_revocation']);
  t.is(events[0]!.user_id, victim.id);
  t.like(events[0]!.details, { reason: 'ops_revoked', note: 'suspected compromise', revoked: 2, by: 'ops-token' });
  const unknown = await api.request<ErrorBody>('POST', opsRoutes.revokeSessions.path, {
    token: service.config.secrets.opsApiToken,
    body: { userId: randomUUID(), reason: 'x' },
  });
  t.is(unknown.status, 404);
  const both = await api.request<ErrorBody>('POST', opsRoutes.revokeSessions.path, {
    token: service.config.secrets.opsApiToken,
    body: { userId: victim.id, all: true, reason: 'x' },
  });
  t.is(both.status, 400);
});

test('role change revokes the sessions so the new role applies; force-password-reset requires the reset flow', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const ops = service.config.secrets.opsApiToken;
  const user = await api.register();
  const pair = await api.login(user);

  const roleId = `role-${randomUUID()}`;
  const promoted = await api.request<{ user: { role: string }; revoked: number }>('POST', `/ops/users/${user.id}/role`, {
    token: ops,
    body: { role: 'admin' },
    headers: fromIp(nextIp(), roleId),
  });
  t.is(promoted.status, 200, JSON.stringify(promoted.body));
  t.is(promoted.body.user.role, 'admin');
  t.is(promoted.body.revoked, 1);
  t.is((await api.get('/auth/me', pair.accessToken)).status, 401, 'the player session ended');
  t.like((await adminRowsFor(service, roleId))[0], { actor: 'ops-token', action: 'user.role', target: user.id });
  t.deepEqual((await eventsFor(service, roleId)).map((e) => e.event_type), ['role_changed']);
  const adminPair = await api.login(user);
  t.is(JSON.parse(Buffer.from(adminPair.accessToken.split('.')[1]!, 'base64url').toString()).role, 'admin');
  const demoted = await api.request<{ user: { role: string } }>('POST', `/ops/users/${user.id}/role`, { token: ops, body: { role: 'player' } });
  t.is(demoted.body.user.role, 'player');
  t.is((await api.get('/auth/me', adminPair.accessToken)).status, 401, 'the admin session ended with the demotion');
  t.is((await api.request('POST', `/ops/users/${randomUUID()}/role`, { token: ops, body: { role: 'admin' } })).status, 404);
  t.is((await api.request('POST', `/ops/users/${user.id}/role`, { token: ops, body: { role: 'root' } })).status, 400);

  // Force a password reset.
  const live = await api.login(user);
  const resetId = `reset-${randomUUID()}`;
  const forced = await api.request<{ user: { id: string }; revoked: number }>('POST', `/ops/users/${user.id}/force-password-reset`, {
    token: ops,
    headers: fromIp(nextIp(), resetId),
  });
  t.is(forced.status, 200, JSON.stringify(forced.body));
  t.is(forced.body.revoked, 1);
  t.is((await api.get('/auth/me', live.accessToken)).status, 401);
  t.like((await adminRowsFor(service, resetId))[0], { actor: 'ops-token', action: 'user.force_password_reset', target: user.id });
  t.deepEqual((await eventsFor(service, resetId)).map((e) => e.event_type), ['password_reset_forced']);
  const blocked = await api.post<ErrorBody>('/auth/login', { email: user.email, password: user.password });
  t.is(blocked.status, 403);
  t.is(blocked.body.error.code, 'password_reset_required');

  // The reset: a wrong current password is a login failure; the same password is refused.
  const wrong = await api.post<ErrorBody>('/auth/password/reset', { email: user.email, currentPassword: 'not-the-password', newPassword: 'a-brand-new-password' });
  t.is(wrong.status, 401);
  t.is(wrong.body.error.code, 'invalid_credentials');
  const unknown = await api.post<ErrorBody>('/auth/password/reset', { email: 'nobody@example.test', currentPassword: 'whatever-it-is', newPassword: 'a-brand-new-password' });
  t.deepEqual(unknown.body.error.code, 'invalid_credentials');
  const same = await api.post<ErrorBody>('/auth/password/reset', { email: user.email, currentPassword: user.password, newPassword: user.password });
  t.is(same.status, 400);
  const newPassword = `new-${randomBytes(12).toString('base64url')}`;
  const changedId = `changed-${randomUUID()}`;
  const changed = await api.request<{ user: { id: string } }>('POST', '/auth/password/reset', {
    body: { email: user.email, currentPassword: user.password, newPassword },
    headers: { 'x-request-id': changedId },
  });
  t.is(changed.status, 200, JSON.stringify(changed.body));
  t.deepEqual((await eventsFor(service, changedId)).map((e) => e.event_type), ['password_changed']);
  t.is((await api.post('/auth/login', { email: user.email, password: user.password })).status, 401, 'the old password is gone');
  await api.login({ email: user.email, password: newPassword });
  t.false(service.logs.lines.some((line) => line.includes(newPassword) || line.includes(user.password)));
});

test('revoke all sessions (token leak): every session and every live socket ends', async (t) => {
  // Its own database: revoking everything must not disturb the other tests.
  const service = await startTestService(t);
  const api = createApi(service.url);
  const pairs = await Promise.all(Array.from({ length: 5 }, async () => api.login(await api.register())));
  const sockets = await Promise.all(
    pairs.map(async (pair) => {
      const ticket = await api.post<{ ticket: string }>('/auth/ws-ticket', undefined, pair.accessToken);
      const socket = new WebSocket(`${service.url.replace('http', 'ws')}/ws?ticket=${ticket.body.ticket}`);
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
      return { socket, closed: new Promise<number>((resolve) => socket.once('close', (code) => resolve(code))) };
    }),
  );
  const requestId = `revoke-all-${randomUUID()}`;
  const response = await api.request<{ revoked: number }>('POST', opsRoutes.revokeSessions.path, {
    token: service.config.secrets.opsApiToken,
    body: { all: true, reason: 'JWT secret leaked' },
    headers: { 'x-request-id': requestId },
  });
  t.is(response.status, 200, JSON.stringify(response.body));
  t.is(response.body.revoked, 5);
  const started = Date.now();
  t.deepEqual(await Promise.all(sockets.map((s) => s.closed)), [4001, 4001, 4001, 4001, 4001]);
  t.true(Date.now() - started < 1_500);
  for (const pair of pairs) t.is((await api.get('/auth/me', pair.accessToken)).status, 401);
  const [active] = await query<{ n: string }>(service, 'SELECT count(*) AS n FROM user_sessions WHERE revoked_at IS NULL');
  t.is(Number(active!.n), 0);
  const rows = await query<{ actor: string; action: string; target: string; details: { revoked: number } }>(
    service,
    'SELECT actor, action, target, details FROM admin_action_audit WHERE request_id = $1',
    [requestId],
  );
  t.like(rows[0], { actor: 'ops-token', action: 'sessions.revoke_all', target: '*' });
  t.is(rows[0]!.details.revoked, 5);
  const events = await query<{ event_type: string; details: { reason: string } }>(service, 'SELECT event_type, details FROM security_event_audit WHERE request_id = $1', [requestId]);
  t.deepEqual(events.map((e) => [e.event_type, e.details.reason]), [['session_bulk_revocation', 'ops_revoked_all']]);
  const metrics = await api.request<OpsMetrics>('GET', opsRoutes.metrics.path, { token: service.config.secrets.opsApiToken });
  t.is(metrics.body.sessions.active, 0);
});

test('admin_action_audit is append-only: UPDATE, DELETE and TRUNCATE fail', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  await api.request('POST', opsRoutes.createPolicy.path, {
    token: service.config.secrets.opsApiToken,
    body: { platform: 'web', minSupportedVersion: '1.0.0', latestVersion: '1.0.0', forceUpdate: false, loginGate: false },
  });
  const { sql } = await import('slonik');
  for (const statement of [
    sql.unsafe`UPDATE admin_action_audit SET actor = 'someone-else'`,
    sql.unsafe`DELETE FROM admin_action_audit`,
    sql.unsafe`DELETE FROM admin_action_audit WHERE false`,
    sql.unsafe`TRUNCATE admin_action_audit`,
    sql.unsafe`UPDATE publish_drain_events SET details = '{}'`,
    sql.unsafe`DELETE FROM publish_drain_session_audit`,
    sql.unsafe`DELETE FROM publish_drains`,
  ]) {
    const error = await t.throwsAsync(service.pool.query(statement));
    t.regex(String((error as Error & { cause?: Error }).cause?.message ?? error?.message), /append-only|never deleted|not allowed|permission denied/);
  }
  // Also as the database superuser.
  await t.throwsAsync(query(service, 'DELETE FROM admin_action_audit'), { message: /append-only/ });
  const [row] = await query<{ n: string }>(service, "SELECT count(*) AS n FROM admin_action_audit WHERE actor = 'someone-else'");
  t.is(Number(row!.n), 0);
});

test('audit queries: filters, newest first, every row exactly once while rows are inserted concurrently', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const ops = service.config.secrets.opsApiToken;
  const actor = `pager-${randomUUID().slice(0, 8)}`;
  // 230 rows of one actor, then page through them (limit 17) while 150 more are being inserted.
  await query(
    service,
    `INSERT INTO admin_action_audit (actor, action, target, details) SELECT $1, 'test.seed', g::text, '{}' FROM generate_series(1, 230) g`,
    [actor],
  );
  const before = new Set((await query<{ id: string }>(service, 'SELECT id FROM admin_action_audit WHERE actor = $1', [actor])).map((r) => r.id));
  let inserting = true;
  const inserter = (async () => {
    let n = 0;
    while (inserting && n < 150) {
      await query(service, "INSERT INTO admin_action_audit (actor, action, target) VALUES ($1, 'test.concurrent', $2)", [actor, String(n)]);
      n += 1;
    }
  })();
  const seen: string[] = [];
  let cursor: string | null = null;
  let previous: string | undefined;
  do {
    const path: string = `/ops/release/admin-audit?actor=${actor}&limit=17${cursor ? `&cursor=${cursor}` : ''}`;
    const page = await api.request<Page<AdminAuditItem>>('GET', path, { token: ops });
    t.is(page.status, 200, JSON.stringify(page.body));
    for (const item of page.body.items) {
      if (previous !== undefined) t.true(item.createdAt <= previous, 'newest first');
      previous = item.createdAt;
      seen.push(item.id);
    }
    cursor = page.body.nextCursor;
    await sleep(5);
  } while (cursor);
  inserting = false;
  await inserter;
  t.is(new Set(seen).size, seen.length, 'no row twice');
  for (const id of before) t.true(seen.includes(id), 'every row that existed at the start');

  // Filters.
  const byAction = await api.request<Page<AdminAuditItem>>('GET', `/ops/release/admin-audit?actor=${actor}&action=test.seed&limit=500`, { token: ops });
  t.is(byAction.body.items.length, 230);
  t.is(byAction.body.nextCursor, null);
  const future = await api.request<Page<AdminAuditItem>>('GET', `/ops/release/admin-audit?since=${new Date(Date.now() + 60_000).toISOString()}`, { token: ops });
  t.deepEqual(future.body.items, []);
  for (const bad of ['limit=0', 'limit=501', 'cursor=nope', 'since=yesterday', 'unknown=1']) {
    const response = await api.request<ErrorBody>('GET', `/ops/release/admin-audit?${bad}`, { token: ops });
    t.is(response.status, 400, bad);
    t.is(response.body.error.code, 'validation_failed');
  }

  // Security events of one user, by type, and the verifier.
  const user = await api.register();
  for (let i = 0; i < 3; i += 1) await api.post('/auth/login', { email: user.email, password: 'wrong-password-here' });
  const failures = await api.request<Page<SecurityEventItem>>('GET', `/ops/release/security-audit?event_type=login_failed&user_id=${user.id}&limit=2`, { token: ops });
  t.is(failures.status, 200, JSON.stringify(failures.body));
  t.is(failures.body.items.length, 2);
  t.true(failures.body.items.every((item) => item.eventType === 'login_failed' && item.userId === user.id));
  const rest = await api.request<Page<SecurityEventItem>>(
    'GET',
    `/ops/release/security-audit?event_type=login_failed&user_id=${user.id}&limit=2&cursor=${failures.body.nextCursor}`,
    { token: ops },
  );
  t.is(rest.body.items.length, 1);
  t.is(rest.body.nextCursor, null);
  t.is((await api.request('GET', '/ops/release/security-audit?event_type=not_an_event', { token: ops })).status, 400);
  t.is((await api.request('GET', '/ops/release/security-audit?cursor=abc', { token: ops })).status, 400);
  const verify = await api.request<{ ok: boolean; checked: number; firstBrokenId: string | null }>('GET', opsRoutes.verifySecurityAudit.path, { token: ops });
  t.is(verify.status, 200);
  t.true(verify.body.ok);
  t.true(verify.body.checked > 0);
  t.is(verify.body.firstBrokenId, null);
});

test('metrics have the §7 shape and count what happened', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const ops = service.config.secrets.opsApiToken;
  const read = async () => {
    const response = await api.request<OpsMetrics>('GET', opsRoutes.metrics.path, { token: ops });
    t.is(response.status, 200);
    return response.body;
  };
  const before = await read();
  t.deepEqual(Object.keys(before).sort(), ['auth', 'drains', 'generatedAt', 'securityEvents', 'sessions']);
  t.deepEqual(Object.keys(before.auth).sort(), ['lockouts1h', 'loginFailures1h', 'rateLimited1h']);
  t.deepEqual(Object.keys(before.drains).sort(), ['completed', 'failed', 'started']);
  t.deepEqual(Object.keys(before.securityEvents.logout!).sort(), ['last1h', 'last24h', 'total']);
  t.true(Math.abs(Date.parse(before.generatedAt) - Date.now()) < 60_000);

  const user = await api.register();
  for (let i = 0; i < 4; i += 1) await api.post('/auth/login', { email: user.email, password: 'wrong-password-here' });
  await api.login(user);
  const after = await read();
  t.true(after.auth.loginFailures1h >= before.auth.loginFailures1h + 4);
  t.true(after.securityEvents.login_failed!.last24h >= before.securityEvents.login_failed!.last24h + 4);
  t.true(after.securityEvents.login_failed!.total >= before.securityEvents.login_failed!.total + 4);
  t.true(after.securityEvents.user_registered!.total >= before.securityEvents.user_registered!.total + 1);
  t.true(after.sessions.active >= 1);
});

test('query plans at 200k rows: the list and metrics queries use indexes, no Seq Scan on the audit tables', async (t) => {
  t.timeout(180_000);
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const run = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) =>
    withAdminClient(async (client) => (await client.query<R>(text, values)).rows, database.name);

  // Seed rows spread over 180 days. The chain trigger (which forces created_at to now) is
  // bypassed with session_replication_role: these rows exist only to give the planner a shape.
  await withAdminClient(async (client) => {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    await client.query(`
      INSERT INTO security_event_audit (event_type, user_id, details, created_at, prev_hash, hash)
      OVERRIDING SYSTEM VALUE
      SELECT (ARRAY['login_succeeded','login_failed','refresh_rotated','logout','ws_ticket_issued','rate_limited','account_locked'])[1 + g % 7],
             CASE WHEN g % 3 = 0 THEN NULL ELSE md5((g % 5000)::text)::uuid END,
             '{}', now() - (g * interval '77 seconds'), repeat('0', 64), repeat('0', 64)
        FROM generate_series(1, 200000) g`);
    // The all-time and per-minute counters the insert trigger would have kept (minutes: the last 48 hours).
    await client.query(`
      INSERT INTO security_event_counts AS c (event_type, total)
      SELECT event_type, count(*) FROM security_event_audit GROUP BY event_type
      ON CONFLICT (event_type) DO UPDATE SET total = excluded.total`);
    await client.query(`
      INSERT INTO security_event_counts_by_minute (event_type, minute, count)
      SELECT event_type, date_trunc('minute', created_at, 'UTC'), count(*) FROM security_event_audit
       WHERE created_at >= now() - interval '48 hours' GROUP BY 1, 2`);
    await client.query(`
      INSERT INTO admin_action_audit (actor, action, target, created_at)
      SELECT CASE WHEN g % 10 = 0 THEN 'ops-token' ELSE md5((g % 50)::text)::uuid::text END,
             (ARRAY['release.publish','sessions.revoke','user.role','release.policy.create'])[1 + g % 4],
             g::text, now() - (g * interval '77 seconds')
        FROM generate_series(1, 200000) g`);
    // 200k sessions of 2,000 users, 95% of them revoked or expired.
    await client.query(`
      INSERT INTO users (email, display_name, password_hash)
      SELECT 'seed-' || g || '@example.test', 'Seed', 'x' FROM generate_series(1, 2000) g`);
    await client.query(`
      INSERT INTO user_sessions (user_id, amr, role, created_at, expires_at, revoked_at, revoked_reason)
      SELECT u.ids[1 + g % 2000], '{pwd}', 'player', now() - g * interval '1 minute', now() + interval '30 days' - g * interval '1 minute',
             CASE WHEN g % 20 = 0 THEN NULL ELSE now() END, CASE WHEN g % 20 = 0 THEN NULL ELSE 'logout' END
        FROM generate_series(1, 200000) g, (SELECT array_agg(id) AS ids FROM users) u`);
    await client.query('COMMIT');
    await client.query('ANALYZE users');
    await client.query('ANALYZE security_event_audit');
    await client.query('ANALYZE security_event_counts_by_minute');
    await client.query('ANALYZE admin_action_audit');
    await client.query('ANALYZE user_sessions');
  }, database.name);

  const plan = async (text: string, values: unknown[] = []) => {
    const [row] = await run<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${text}`, values);
    return JSON.stringify(row!['QUERY PLAN']);
  };
  const cursorAt = new Date(Date.now() - 30 * 86_400_000).toISOString();
  // The same statements as app/ops/store.ts and app/audit/store.ts.
  const statements: Array<[string, string, unknown[]]> = [
    ['admin-audit, first page', 'SELECT id FROM admin_action_audit WHERE TRUE ORDER BY created_at DESC, id DESC LIMIT 51', []],
    [
      'admin-audit, action filter + cursor',
      'SELECT id FROM admin_action_audit WHERE action = $1 AND (created_at, id) < ($2::timestamptz, $3::uuid) ORDER BY created_at DESC, id DESC LIMIT 51',
      ['user.role', cursorAt, randomUUID()],
    ],
    [
      'admin-audit, actor + window',
      'SELECT id FROM admin_action_audit WHERE actor = $1 AND created_at >= $2::timestamptz AND created_at < $3::timestamptz ORDER BY created_at DESC, id DESC LIMIT 51',
      ['ops-token', new Date(Date.now() - 90 * 86_400_000).toISOString(), cursorAt],
    ],
    ['security-audit, first page', 'SELECT id FROM security_event_audit WHERE TRUE ORDER BY created_at DESC, id DESC LIMIT 51', []],
    [
      'security-audit, type + cursor',
      'SELECT id FROM security_event_audit WHERE event_type = $1 AND (created_at, id) < ($2::timestamptz, $3::uuid) ORDER BY created_at DESC, id DESC LIMIT 51',
      ['refresh_rotated', cursorAt, randomUUID()],
    ],
    [
      'security-audit, user',
      'SELECT id FROM security_event_audit WHERE user_id = $1::uuid ORDER BY created_at DESC, id DESC LIMIT 51',
      [randomUUID()],
    ],
    // The statement itself (minute counters plus the boundary minute's rows: test/security-event-minutes.test.ts).
    ['metrics, counts by type', countsByTypeQuery.sql, []],
  ];
  for (const [label, text, values] of statements) {
    const json = await plan(text, values);
    t.false(/"Node Type":\s*"Seq Scan",[^}]*"Relation Name":\s*"(security_event_audit|admin_action_audit)"/.test(json), `${label}: ${json}`);
    t.regex(json, /Index (Only )?Scan|Bitmap Index Scan/, label);
  }
  // The metrics endpoint over the seeded rows: the windows match the table, and it stays cheap.
  const service = await startTestService(t, {}, { database });
  const api = createApi(service.url);
  const started = Date.now();
  const metrics = await api.request<OpsMetrics>('GET', opsRoutes.metrics.path, { token: service.config.secrets.opsApiToken });
  const elapsed = Date.now() - started;
  t.is(metrics.status, 200);
  t.log(`metrics over 200k events / 200k sessions: ${elapsed} ms`);
  const truth = await run<{ event_type: string; last1h: number; last24h: number }>(`
    SELECT event_type,
           count(*) FILTER (WHERE created_at >= now() - interval '1 hour')::int AS last1h,
           count(*) FILTER (WHERE created_at >= now() - interval '24 hours')::int AS last24h
      FROM security_event_audit GROUP BY event_type`);
  for (const row of truth) {
    if (row.event_type === 'user_registered' || row.event_type === 'login_succeeded' || row.event_type === 'ops_auth_failed') continue;
    t.like(metrics.body.securityEvents[row.event_type as 'login_failed'], { last1h: row.last1h, last24h: row.last24h }, row.event_type);
  }
  t.is(metrics.body.auth.loginFailures1h, truth.find((r) => r.event_type === 'login_failed')!.last1h);
  t.true(metrics.body.securityEvents.refresh_rotated!.total >= 28_000);
  const [active] = await run<{ n: number }>('SELECT count(*)::int AS n FROM user_sessions WHERE revoked_at IS NULL AND expires_at > now()');
  t.is(metrics.body.sessions.active, active!.n);
  const sessions = await plan('SELECT count(*)::int FROM user_sessions WHERE revoked_at IS NULL AND expires_at > now()');
  t.false(/"Node Type":\s*"Seq Scan",[^}]*"Relation Name":\s*"user_sessions"/.test(sessions), `active sessions: ${sessions}`);
  t.regex(sessions, /user_sessions_active/, 'the partial index of unrevoked sessions');
});

test('OpenAPI documents every ops route with the ops security scheme', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const document = await api.get<{ paths: Record<string, Record<string, { security?: unknown[] }>> }>('/openapi.json');
  t.is(document.status, 200);
  for (const route of Object.values(opsRoutes)) {
    const path = route.path.replace(/:([a-z]+)/g, '{$1}');
    const operation = document.body.paths[path]?.[route.method.toLowerCase()];
    t.truthy(operation, path);
    if (path.startsWith('/ops/')) t.deepEqual(operation!.security, [{ ops: [] }], path);
  }
  t.truthy(document.body.paths['/auth/password/reset']?.post);
});
