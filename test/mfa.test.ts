/**
 * TOTP MFA through the real server (contract §3 POST /auth/mfa/verify, §4): codes are computed in
 * the test from the enrolled secret with an independent RFC 6238 implementation.
 *
 * The server's clock cannot be steered, so tests work with the current time step S: a user is
 * activated with the code of S-1, which leaves S and S+1 usable (±1 window) until S+2 begins —
 * at least 30 s. Tests that need a later step wait for the boundary.
 */
import { createHash, randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { createApi, type Api, type ErrorBody, type TokenPair } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { startTestService, useSharedService, type TestService } from './support/service.js';
import { base32Decode, hotp, msUntilNextStep, settledStep, stepAt, totpForStep } from './support/totp.js';

const ADMIN_TTL_SECONDS = 5;
const shared = useSharedService({
  TRUST_PROXY: 'true',
  // Races make the losers count toward the lockout; the lockout has its own test below.
  AUTH_LOCKOUT_THRESHOLD: '100',
  ADMIN_REFRESH_TOKEN_TTL_SECONDS: String(ADMIN_TTL_SECONDS),
});

type Challenge = { mfaRequired: true; mfaToken: string; expiresIn: number };
type Enrollment = { secret: string; otpauthUri: string };
type MfaAccount = { id: string; email: string; password: string; secret: string; recoveryCodes: string[]; accessToken: string; activatedStep: number };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const query = <R extends Record<string, unknown>>(service: TestService, text: string, values: unknown[] = []) =>
  withAdminClient(async (client) => (await client.query<R>(text, values)).rows, service.database.name);

const eventCounts = async (service: TestService, userId: string) => {
  const rows = await query<{ event_type: string; n: string }>(
    service,
    'SELECT event_type, count(*) AS n FROM security_event_audit WHERE user_id = $1 GROUP BY event_type',
    [userId],
  );
  return Object.fromEntries(rows.map((row) => [row.event_type, Number(row.n)])) as Record<string, number | undefined>;
};

const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

const waitForNextStep = async (step: number) => {
  while (stepAt() <= step) await sleep(msUntilNextStep() + 50);
  return stepAt();
};

/** Registers, signs in, enrolls and activates TOTP with the code of the previous step. */
const mfaAccount = async (t: ExecutionContext, api: Api): Promise<MfaAccount> => {
  const account = await api.register();
  const pair = await api.login(account);
  const enrolled = await api.post<Enrollment>('/auth/mfa/totp/enroll', undefined, pair.accessToken);
  t.is(enrolled.status, 200);
  const step = await settledStep(8_000);
  const activated = await api.post<{ recoveryCodes: string[] }>(
    '/auth/mfa/totp/activate',
    { code: totpForStep(enrolled.body.secret, step - 1) },
    pair.accessToken,
  );
  t.is(activated.status, 200, JSON.stringify(activated.body));
  return { ...account, secret: enrolled.body.secret, recoveryCodes: activated.body.recoveryCodes, accessToken: pair.accessToken, activatedStep: step - 1 };
};

const challengeFor = async (t: ExecutionContext, api: Api, account: { email: string; password: string }, headers?: Record<string, string>) => {
  const response = await api.post<Challenge & Partial<TokenPair>>('/auth/login', { email: account.email, password: account.password }, undefined, headers);
  t.is(response.status, 200, JSON.stringify(response.body));
  t.true(response.body.mfaRequired);
  return response.body.mfaToken;
};

const verify = (api: Api, mfaToken: string, code: string, headers?: Record<string, string>) =>
  api.post<TokenPair & ErrorBody>('/auth/mfa/verify', { mfaToken, code }, undefined, headers);

/** A 6-digit code that matches none of the steps around now. */
const wrongCodeFor = (secret: string) => {
  const near = new Set([-2, -1, 0, 1, 2, 3].map((offset) => totpForStep(secret, stepAt() + offset)));
  for (let candidate = 0; ; candidate += 1) {
    const code = String(candidate).padStart(6, '0');
    if (!near.has(code)) return code;
  }
};

const sha256 = (text: string) => createHash('sha256').update(text).digest();

test('the test TOTP implementation matches the RFC 6238 SHA-1 test vectors', (t) => {
  const key = Buffer.from('12345678901234567890', 'ascii');
  t.is(hotp(key, Math.floor(59 / 30), 8), '94287082');
  t.is(hotp(key, Math.floor(1111111109 / 30), 8), '07081804');
  t.is(hotp(key, Math.floor(1234567890 / 30), 8), '89005924');
  t.is(hotp(key, Math.floor(2000000000 / 30), 8), '69279037');
  t.is(hotp(key, Math.floor(59 / 30), 6), '287082');
  t.deepEqual(base32Decode('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'), key);
});

test('full flow: enroll → activate → logout → login answers a challenge → verify → tokens with amr pwd+otp', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await api.register();
  const first = await api.login(account);
  t.deepEqual(claimsOf(first.accessToken).amr, ['pwd']);

  const unauthenticated = await api.post<ErrorBody>('/auth/mfa/totp/enroll');
  t.is(unauthenticated.status, 401);

  const enrolled = await api.post<Enrollment>('/auth/mfa/totp/enroll', undefined, first.accessToken);
  t.is(enrolled.status, 200);
  t.deepEqual(Object.keys(enrolled.body).sort(), ['otpauthUri', 'secret']);
  const { secret, otpauthUri } = enrolled.body;
  t.regex(secret, /^[A-Z2-7]{32}$/, '160-bit base32 secret');
  const uri = new URL(otpauthUri);
  t.is(uri.protocol, 'otpauth:');
  t.is(uri.host, 'totp');
  t.is(decodeURIComponent(uri.pathname), `/Karaxas:${account.email}`);
  t.is(uri.searchParams.get('secret'), secret);
  t.is(uri.searchParams.get('issuer'), 'Karaxas');
  for (const [name, expected] of [['algorithm', 'SHA1'], ['digits', '6'], ['period', '30']] as const) {
    const value = uri.searchParams.get(name);
    t.true(value === null || value === expected, `${name}=${value}`);
  }
  const pendingMe = await api.get<{ user: { mfaEnabled: boolean } }>('/auth/me', first.accessToken);
  t.false(pendingMe.body.user.mfaEnabled, 'pending until activated');
  const stillPasswordOnly = await api.post<TokenPair>('/auth/login', { email: account.email, password: account.password });
  t.truthy(stillPasswordOnly.body.accessToken, 'a pending enrollment does not change login');

  const wrong = await api.post<ErrorBody>('/auth/mfa/totp/activate', { code: wrongCodeFor(secret) }, first.accessToken);
  t.is(wrong.status, 401);
  t.is(wrong.body.error.code, 'invalid_mfa_code');

  const step = await settledStep(8_000);
  const activated = await api.post<{ recoveryCodes: string[] }>('/auth/mfa/totp/activate', { code: totpForStep(secret, step) }, first.accessToken);
  t.is(activated.status, 200);
  t.is(activated.body.recoveryCodes.length, 10);
  t.is(new Set(activated.body.recoveryCodes).size, 10);
  for (const code of activated.body.recoveryCodes) t.regex(code, /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/);
  const me = await api.get<{ user: { mfaEnabled: boolean } }>('/auth/me', first.accessToken);
  t.true(me.body.user.mfaEnabled);

  const again = await api.post<ErrorBody>('/auth/mfa/totp/enroll', undefined, first.accessToken);
  t.is(again.status, 409);
  t.is(again.body.error.code, 'mfa_already_enabled');
  const reactivate = await api.post<ErrorBody>('/auth/mfa/totp/activate', { code: totpForStep(secret, step + 1) }, first.accessToken);
  t.is(reactivate.body.error.code, 'mfa_already_enabled');

  t.is((await api.post('/auth/logout', undefined, first.accessToken)).status, 204);

  const login = await api.post<Record<string, unknown>>('/auth/login', { email: account.email, password: account.password });
  t.is(login.status, 200);
  t.deepEqual(Object.keys(login.body).sort(), ['expiresIn', 'mfaRequired', 'mfaToken'], 'no tokens before the second factor');
  t.true(login.body.mfaRequired);
  t.regex(String(login.body.mfaToken), /^kxm_[A-Za-z0-9_-]{43}$/);
  t.true(Number(login.body.expiresIn) > 0 && Number(login.body.expiresIn) <= 300);

  const replayOfActivation = await verify(api, String(login.body.mfaToken), totpForStep(secret, step));
  t.is(replayOfActivation.status, 401, 'the activation code is spent');
  t.is(replayOfActivation.body.error.code, 'invalid_mfa_code');

  const mfaToken = await challengeFor(t, api, account);
  const verified = await verify(api, mfaToken, totpForStep(secret, step + 1));
  t.is(verified.status, 200, JSON.stringify(verified.body));
  t.deepEqual(Object.keys(verified.body).sort(), ['accessToken', 'expiresIn', 'refreshExpiresIn', 'refreshToken', 'sessionId', 'tokenType']);
  const claims = claimsOf(verified.body.accessToken);
  t.deepEqual(claims.amr, ['pwd', 'otp']);
  t.is(claims.sub, account.id);
  t.is(claims.sid, verified.body.sessionId);
  const meAfter = await api.get<{ user: { id: string } }>('/auth/me', verified.body.accessToken);
  t.is(meAfter.body.user.id, account.id);
  const refreshed = await api.post<TokenPair>('/auth/refresh', { refreshToken: verified.body.refreshToken });
  t.deepEqual(claimsOf(refreshed.body.accessToken).amr, ['pwd', 'otp'], 'rotation keeps the methods');

  const events = await eventCounts(service, account.id);
  t.is(events.mfa_enrolled, 1);
  t.is(events.mfa_enabled, 1);
  t.is(events.mfa_replay_rejected, 1);
  t.is(events.mfa_failed, 2, 'the wrong activation code and the replay');
  const success = await query<{ details: { amr: string[] } }>(
    service,
    "SELECT details FROM security_event_audit WHERE session_id = $1 AND event_type = 'login_succeeded'",
    [verified.body.sessionId],
  );
  t.deepEqual(success[0]?.details.amr, ['pwd', 'otp']);

  for (const line of service.logs.lines) t.false(line.includes(secret), 'the secret is never logged');
});

test('the same valid code twice → the second is rejected (invalid_mfa_code, mfa_replay_rejected)', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await mfaAccount(t, api);
  const code = totpForStep(account.secret, account.activatedStep + 1);
  const first = await verify(api, await challengeFor(t, api, account), code);
  t.is(first.status, 200);
  const second = await verify(api, await challengeFor(t, api, account), code);
  t.is(second.status, 401);
  t.is(second.body.error.code, 'invalid_mfa_code');
  const events = await eventCounts(service, account.id);
  t.is(events.mfa_replay_rejected, 1);
  t.is(events.login_succeeded, 2, 'the password-only login before enrollment and the MFA one');
});

const raceOnce = async (t: ExecutionContext, api: Api, account: MfaAccount, code: string, size: number, label: string) => {
  const tokens = await Promise.all(Array.from({ length: size }, () => challengeFor(t, api, account)));
  const responses = await Promise.all(tokens.map((mfaToken) => verify(api, mfaToken, code)));
  const statuses = responses.map((response) => response.status);
  t.is(statuses.filter((status) => status === 200).length, 1, `${label}: exactly one wins (${statuses.join(',')})`);
  t.true(
    responses.filter((response) => response.status !== 200).every((response) => response.status === 401 && response.body.error.code === 'invalid_mfa_code'),
    `${label}: the others are invalid_mfa_code`,
  );
};

test('concurrent verifies of one code on separate challenges: exactly one succeeds (2-way and 10-way, many rounds)', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const plan = [...Array.from({ length: 8 }, () => 2), ...Array.from({ length: 3 }, () => 10)];
  let rounds = 0;
  for (const [index, size] of plan.entries()) {
    const account = await mfaAccount(t, api);
    // Two rounds per account: the codes of S and S+1 (S-1 went to activation).
    for (const offset of [1, 2]) {
      await raceOnce(t, api, account, totpForStep(account.secret, account.activatedStep + offset), size, `account ${index} step +${offset} ×${size}`);
      rounds += 1;
    }
    const events = await eventCounts(service, account.id);
    t.is(events.mfa_replay_rejected, 2 * (size - 1));
    const sessions = await query<{ n: string }>(service, "SELECT count(*) AS n FROM user_sessions WHERE user_id = $1 AND 'otp' = ANY(amr)", [account.id]);
    t.is(Number(sessions[0]!.n), 2, 'one MFA session per round');
  }
  t.is(rounds, 22);
});

test('a code from the previous step works once within the ±1 window, then never', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await mfaAccount(t, api); // used S-1
  const s = account.activatedStep + 1;
  const next = await waitForNextStep(s); // now S+1: the window is S..S+2, and S's code was never used
  t.is(next, s + 1);
  const previous = totpForStep(account.secret, s);
  const accepted = await verify(api, await challengeFor(t, api, account), previous);
  t.is(accepted.status, 200, 'the previous step is within the window');
  const replay = await verify(api, await challengeFor(t, api, account), previous);
  t.is(replay.body.error.code, 'invalid_mfa_code');
  const current = await verify(api, await challengeFor(t, api, account), totpForStep(account.secret, s + 1));
  t.is(current.status, 200);
  const stale = await verify(api, await challengeFor(t, api, account), previous);
  t.is(stale.body.error.code, 'invalid_mfa_code', 'an older step never comes back');
  const outside = await verify(api, await challengeFor(t, api, account), totpForStep(account.secret, s + 4));
  t.is(outside.body.error.code, 'invalid_mfa_code', 'beyond +1 is outside the window');
  t.is((await eventCounts(service, account.id)).mfa_replay_rejected, 2);
});

test('recovery codes: each works once (also concurrently), typing variants accepted, stored only hashed', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await mfaAccount(t, api);
  const [first, second, third] = account.recoveryCodes as [string, string, string];

  const used = await verify(api, await challengeFor(t, api, account), first);
  t.is(used.status, 200);
  t.deepEqual(claimsOf(used.body.accessToken).amr, ['pwd', 'otp']);
  const again = await verify(api, await challengeFor(t, api, account), first);
  t.is(again.status, 401);
  t.is(again.body.error.code, 'invalid_mfa_code');

  const typed = await verify(api, await challengeFor(t, api, account), ` ${second.replace(/-/g, '').toLowerCase()} `);
  t.is(typed.status, 200, 'case, dashes and spaces do not matter');

  const tokens = await Promise.all(Array.from({ length: 5 }, () => challengeFor(t, api, account)));
  const raced = await Promise.all(tokens.map((mfaToken) => verify(api, mfaToken, third)));
  t.is(raced.filter((response) => response.status === 200).length, 1, raced.map((r) => r.status).join(','));

  const events = await query<{ details: { remaining: number; purpose: string } }>(
    service,
    "SELECT details FROM security_event_audit WHERE user_id = $1 AND event_type = 'recovery_code_used' ORDER BY seq",
    [account.id],
  );
  t.deepEqual(
    events.map((event) => event.details.remaining),
    [9, 8, 7],
  );
  t.true(events.every((event) => event.details.purpose === 'login'));

  const rows = await query<{ code_hash: Buffer; used_at: Date | null; row: string }>(
    service,
    'SELECT code_hash, used_at, row_to_json(c)::text AS row FROM mfa_recovery_codes c WHERE user_id = $1',
    [account.id],
  );
  t.is(rows.length, 10);
  t.is(rows.filter((row) => row.used_at !== null).length, 3);
  for (const row of rows) {
    t.is(row.code_hash.length, 32);
    for (const code of account.recoveryCodes) {
      const compact = code.replace(/-/g, '');
      for (const form of [code, compact, compact.toLowerCase(), Buffer.from(compact).toString('hex')]) {
        t.false(row.row.includes(form), 'no recovery code in plaintext');
      }
    }
  }
});

test('regenerating recovery codes needs a TOTP code and voids every earlier code', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await mfaAccount(t, api);
  const withRecovery = await api.post<ErrorBody>('/auth/mfa/recovery-codes', { code: account.recoveryCodes[0] }, account.accessToken);
  t.is(withRecovery.status, 401, 'a recovery code cannot mint recovery codes');
  t.is(withRecovery.body.error.code, 'invalid_mfa_code');

  const regenerated = await api.post<{ recoveryCodes: string[] }>(
    '/auth/mfa/recovery-codes',
    { code: totpForStep(account.secret, account.activatedStep + 1) },
    account.accessToken,
  );
  t.is(regenerated.status, 200);
  t.is(regenerated.body.recoveryCodes.length, 10);
  t.is(regenerated.body.recoveryCodes.filter((code) => account.recoveryCodes.includes(code)).length, 0);

  for (const old of account.recoveryCodes.slice(0, 3)) {
    const response = await verify(api, await challengeFor(t, api, account), old);
    t.is(response.body.error?.code, 'invalid_mfa_code', 'an earlier code stops working');
  }
  const fresh = await verify(api, await challengeFor(t, api, account), regenerated.body.recoveryCodes[0]!);
  t.is(fresh.status, 200);
  const stored = await query<{ n: string }>(service, 'SELECT count(*) AS n FROM mfa_recovery_codes WHERE user_id = $1', [account.id]);
  t.is(Number(stored[0]!.n), 10, 'only the current generation is kept');
  const events = await query<{ n: string }>(
    service,
    "SELECT count(*) AS n FROM security_event_audit WHERE user_id = $1 AND event_type = 'recovery_codes_regenerated'",
    [account.id],
  );
  t.is(Number(events[0]!.n), 1, 'the regeneration is on the security trail');
});

test('the TOTP secret is stored sealed: no plaintext in the table, bound to its user', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await mfaAccount(t, api);
  const rows = await query<{ secret_sealed: Buffer; key_id: Buffer; last_used_step: string; activated_at: Date | null; row: string }>(
    service,
    'SELECT secret_sealed, key_id, last_used_step, activated_at, row_to_json(m)::text AS row FROM mfa_totp m WHERE user_id = $1',
    [account.id],
  );
  const row = rows[0]!;
  const raw = base32Decode(account.secret);
  t.false(row.row.toUpperCase().includes(account.secret), 'no base32 secret');
  t.false(row.secret_sealed.includes(Buffer.from(account.secret)), 'no base32 secret bytes');
  t.false(row.secret_sealed.includes(raw), 'no raw secret bytes');
  t.false(row.row.includes(raw.toString('hex')), 'no hex secret');
  t.is(row.key_id.length, 8);
  t.true(row.secret_sealed.subarray(1, 9).equals(row.key_id), 'the key id is stored beside the ciphertext');
  t.truthy(row.activated_at);
  t.is(Number(row.last_used_step), account.activatedStep);

  // Moving the sealed secret to another account does not make it usable there (AAD = user id).
  const other = await mfaAccount(t, api);
  await query(service, 'UPDATE mfa_totp SET secret_sealed = $1 WHERE user_id = $2', [row.secret_sealed, other.id]);
  const moved = await verify(api, await challengeFor(t, api, other), totpForStep(account.secret, account.activatedStep + 1));
  t.is(moved.status, 401, 'the ciphertext is bound to its user');
  t.is(moved.body.error.code, 'invalid_mfa_code');
});

test('rotating TOTP_ENCRYPTION_KEY keeps enrollments working with the previous key; without a matching key verification fails safely', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await mfaAccount(t, api);
  const untouched = await mfaAccount(t, api);
  const oldKey = service.config.secrets.totpEncryptionKey.toString('base64');
  const newKey = randomBytes(32).toString('base64');
  const keyIdOf = async (userId: string) =>
    (await query<{ key_id: Buffer }>(service, 'SELECT key_id FROM mfa_totp WHERE user_id = $1', [userId]))[0]!.key_id.toString('hex');
  const oldKeyId = await keyIdOf(account.id);

  const rotated = await startTestService(
    t,
    { TOTP_ENCRYPTION_KEY: newKey, TOTP_ENCRYPTION_KEY_PREVIOUS: oldKey, AUTH_LOCKOUT_THRESHOLD: '100' },
    { database: service.database },
  );
  const rotatedApi = createApi(rotated.url);
  const verified = await verify(rotatedApi, await challengeFor(t, rotatedApi, account), totpForStep(account.secret, account.activatedStep + 1));
  t.is(verified.status, 200, JSON.stringify(verified.body));
  t.not(await keyIdOf(account.id), oldKeyId, 'an accepted code re-seals the secret under the new key');
  t.is(await keyIdOf(untouched.id), oldKeyId, 'other rows stay on the old key until used');
  const stillOld = await verify(rotatedApi, await challengeFor(t, rotatedApi, untouched), totpForStep(untouched.secret, untouched.activatedStep + 1));
  t.is(stillOld.status, 200, 'the previous key still opens rows not yet re-sealed');
  const enrolledAfter = await rotatedApi.post<Enrollment>('/auth/mfa/totp/enroll', undefined, (await rotatedApi.login(await rotatedApi.register())).accessToken);
  t.is(enrolledAfter.status, 200);

  const unrelated = await startTestService(
    t,
    { TOTP_ENCRYPTION_KEY: randomBytes(32).toString('base64'), TOTP_ENCRYPTION_KEY_PREVIOUS: randomBytes(32).toString('base64') },
    { database: service.database },
  );
  const unrelatedApi = createApi(unrelated.url);
  const refused = await verify(unrelatedApi, await challengeFor(t, unrelatedApi, account), totpForStep(account.secret, account.activatedStep + 2));
  t.is(refused.status, 401, 'no key opens the secret: refused, not a 500');
  t.is(refused.body.error.code, 'invalid_mfa_code');
  const failure = await query<{ details: { reason: string } }>(
    service,
    "SELECT details FROM security_event_audit WHERE user_id = $1 AND event_type = 'mfa_failed' ORDER BY seq DESC LIMIT 1",
    [account.id],
  );
  t.is(failure[0]?.details.reason, 'secret_unavailable');
  t.true(unrelated.logs.lines.some((line) => line.includes('could not be unsealed')), 'operators see why');

  // Back on the rotated keys the code of S+1 still works: the refusal did not spend it.
  const back = await verify(rotatedApi, await challengeFor(t, rotatedApi, account), totpForStep(account.secret, account.activatedStep + 2));
  t.is(back.status, 200);
});

test('mfaToken expired, reused, unknown or used from another IP → 401 invalid_mfa_token', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await mfaAccount(t, api);
  const code = (offset: number) => totpForStep(account.secret, account.activatedStep + offset);

  const expiring = await challengeFor(t, api, account);
  await query(service, "UPDATE mfa_challenges SET expires_at = now() - interval '1 second' WHERE token_hash = $1", [sha256(expiring)]);
  const expired = await verify(api, expiring, code(1));
  t.is(expired.status, 401);
  t.is(expired.body.error.code, 'invalid_mfa_token');

  const home = { 'x-forwarded-for': '198.51.100.7' };
  const elsewhere = { 'x-forwarded-for': '203.0.113.9' };
  const bound = await challengeFor(t, api, account, home);
  const stored = await query<{ ip: string; ttl: number }>(
    service,
    'SELECT host(ip) AS ip, extract(epoch FROM expires_at - created_at)::int AS ttl FROM mfa_challenges WHERE token_hash = $1',
    [sha256(bound)],
  );
  t.is(stored[0]!.ip, '198.51.100.7');
  t.true(stored[0]!.ttl <= 300);
  const foreign = await verify(api, bound, code(1), elsewhere);
  t.is(foreign.status, 401);
  t.is(foreign.body.error.code, 'invalid_mfa_token');
  const home1 = await verify(api, bound, code(1), home);
  t.is(home1.status, 200, 'a wrong-IP attempt does not burn the challenge');

  const reused = await verify(api, bound, code(2), home);
  t.is(reused.status, 401);
  t.is(reused.body.error.code, 'invalid_mfa_token');

  const wrongCodeToken = await challengeFor(t, api, account);
  const wrongCode = await verify(api, wrongCodeToken, wrongCodeFor(account.secret));
  t.is(wrongCode.body.error.code, 'invalid_mfa_code');
  const afterWrong = await verify(api, wrongCodeToken, code(2));
  t.is(afterWrong.body.error.code, 'invalid_mfa_token', 'any attempt consumes the challenge');

  for (const mfaToken of ['kxm_' + 'A'.repeat(43), 'not-a-token', `kxm_${randomBytes(32).toString('base64url')}`]) {
    const unknown = await verify(api, mfaToken, code(2));
    t.is(unknown.status, 401);
    t.is(unknown.body.error.code, 'invalid_mfa_token');
  }
  const stillFine = await verify(api, await challengeFor(t, api, account), code(2));
  t.is(stillFine.status, 200, 'none of that spent the S+1 code');

  const reasons = await query<{ reason: string }>(
    service,
    "SELECT details->>'reason' AS reason FROM security_event_audit WHERE user_id = $1 AND event_type = 'mfa_failed' ORDER BY seq",
    [account.id],
  );
  t.deepEqual(
    reasons.map((row) => row.reason),
    ['challenge_ip_mismatch', 'challenge_reused', 'wrong_code', 'challenge_reused'],
  );
});

test('wrong codes count toward the account lockout; a locked account gets 429 account_locked', async (t) => {
  const base = await shared();
  const service = await startTestService(t, { AUTH_LOCKOUT_THRESHOLD: '3' }, { database: base.database });
  const api = createApi(service.url);
  const account = await mfaAccount(t, api);
  const tokens = [];
  for (let index = 0; index < 4; index += 1) tokens.push(await challengeFor(t, api, account));
  const wrong = wrongCodeFor(account.secret);
  const first = await verify(api, tokens[0]!, wrong);
  t.is(first.body.error.code, 'invalid_mfa_code');
  const second = await verify(api, tokens[1]!, 'ABCD-EFGH-JKMN-PQRS');
  t.is(second.body.error.code, 'invalid_mfa_code', 'a wrong recovery code counts too');
  const third = await verify(api, tokens[2]!, wrong);
  t.is(third.status, 429);
  t.is(third.body.error.code, 'account_locked');
  t.truthy(third.headers.get('retry-after'));
  const valid = await verify(api, tokens[3]!, totpForStep(account.secret, account.activatedStep + 1));
  t.is(valid.status, 429, 'even a valid code waits for the lock to end');
  t.is(valid.body.error.code, 'account_locked');
  const login = await api.post<ErrorBody>('/auth/login', { email: account.email, password: account.password });
  t.is(login.body.error.code, 'account_locked');

  const events = await eventCounts(service, account.id);
  t.is(events.mfa_failed, 3);
  t.is(events.account_locked, 1);
  const disable = await api.post<ErrorBody>('/auth/mfa/totp/disable', { code: totpForStep(account.secret, account.activatedStep + 1) }, account.accessToken);
  t.is(disable.body.error.code, 'account_locked', 'the authenticated code checks honour the lock as well');
});

test('an admin with MFA gets the admin refresh lifetime and no refresh grace', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await mfaAccount(t, api);
  await query(service, "UPDATE users SET role = 'admin' WHERE id = $1", [account.id]);
  const player = await api.login(await api.register());

  const pair = await verify(api, await challengeFor(t, api, account), totpForStep(account.secret, account.activatedStep + 1));
  t.is(pair.status, 200);
  const claims = claimsOf(pair.body.accessToken);
  t.is(claims.role, 'admin');
  t.deepEqual(claims.amr, ['pwd', 'otp']);
  t.true(pair.body.refreshExpiresIn <= ADMIN_TTL_SECONDS, `admin refreshExpiresIn ${pair.body.refreshExpiresIn}`);
  t.true(player.refreshExpiresIn > ADMIN_TTL_SECONDS);

  const rotated = await api.post<TokenPair>('/auth/refresh', { refreshToken: pair.body.refreshToken });
  t.is(rotated.status, 200);
  const retry = await api.post<ErrorBody>('/auth/refresh', { refreshToken: pair.body.refreshToken });
  t.is(retry.body.error.code, 'refresh_token_reused', 'no grace for admin sessions');

  const later = await verify(api, await challengeFor(t, api, account), totpForStep(account.secret, account.activatedStep + 2));
  t.is(later.status, 200);
  await sleep(ADMIN_TTL_SECONDS * 1000 + 300);
  const expired = await api.post<ErrorBody>('/auth/refresh', { refreshToken: later.body.refreshToken });
  t.is(expired.body.error.code, 'invalid_refresh_token', 'the admin session ended after ADMIN_REFRESH_TOKEN_TTL_SECONDS');
  t.is((await api.post('/auth/refresh', { refreshToken: player.refreshToken })).status, 200, "a player's session outlives it");
});

test('disable: needs a current code (or a recovery code), signs out every session, login is password-only again', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await mfaAccount(t, api);
  const second = await verify(api, await challengeFor(t, api, account), totpForStep(account.secret, account.activatedStep + 1));
  t.is(second.status, 200);

  const wrong = await api.post<ErrorBody>('/auth/mfa/totp/disable', { code: totpForStep(account.secret, account.activatedStep) }, account.accessToken);
  t.is(wrong.status, 401, 'a spent code does not disable');
  t.is(wrong.body.error.code, 'invalid_mfa_code');
  const disabled = await api.post('/auth/mfa/totp/disable', { code: totpForStep(account.secret, account.activatedStep + 2) }, account.accessToken);
  t.is(disabled.status, 204);
  t.is((await api.get('/auth/me', account.accessToken)).status, 401, 'the calling session ended');
  t.is((await api.get('/auth/me', second.body.accessToken)).status, 401, 'every other session ended');
  const rows = await query<{ n: string }>(
    service,
    'SELECT (SELECT count(*) FROM mfa_totp WHERE user_id = $1) + (SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1) AS n',
    [account.id],
  );
  t.is(Number(rows[0]!.n), 0, 'secret and recovery codes are gone');
  const pair = await api.login(account);
  t.deepEqual(claimsOf(pair.accessToken).amr, ['pwd']);
  const me = await api.get<{ user: { mfaEnabled: boolean } }>('/auth/me', pair.accessToken);
  t.false(me.body.user.mfaEnabled);
  const notEnabled = await api.post<ErrorBody>('/auth/mfa/totp/disable', { code: '123456' }, pair.accessToken);
  t.is(notEnabled.status, 409);
  t.is(notEnabled.body.error.code, 'mfa_not_enabled');
  const events = await eventCounts(service, account.id);
  t.is(events.mfa_disabled, 1);

  // Lost device: a recovery code disables too.
  const other = await mfaAccount(t, api);
  const byRecovery = await api.post('/auth/mfa/totp/disable', { code: other.recoveryCodes[4] }, other.accessToken);
  t.is(byRecovery.status, 204);
  const otherEvents = await eventCounts(service, other.id);
  t.is(otherEvents.recovery_code_used, 1);
  t.is(otherEvents.mfa_disabled, 1);
});

test('enrollment: activate needs an enrollment; re-enrolling while pending replaces the secret', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await api.register();
  const pair = await api.login(account);
  const early = await api.post<ErrorBody>('/auth/mfa/totp/activate', { code: '123456' }, pair.accessToken);
  t.is(early.status, 409);
  t.is(early.body.error.code, 'mfa_not_enabled');

  const first = await api.post<Enrollment>('/auth/mfa/totp/enroll', undefined, pair.accessToken);
  const second = await api.post<Enrollment>('/auth/mfa/totp/enroll', undefined, pair.accessToken);
  t.not(first.body.secret, second.body.secret);
  const step = await settledStep(8_000);
  const stale = await api.post<ErrorBody>('/auth/mfa/totp/activate', { code: totpForStep(first.body.secret, step) }, pair.accessToken);
  t.is(stale.body.error.code, 'invalid_mfa_code', 'the replaced secret is void');
  const activated = await api.post('/auth/mfa/totp/activate', { code: totpForStep(second.body.secret, step) }, pair.accessToken);
  t.is(activated.status, 200);
  const invalid = await api.post<ErrorBody>('/auth/mfa/totp/activate', { code: 'x'.repeat(65) }, pair.accessToken);
  t.is(invalid.status, 400);
  t.is((await eventCounts(service, account.id)).mfa_enrolled, 2);
});

test('the MFA routes are in the OpenAPI document', async (t) => {
  const api = createApi((await shared()).url);
  const document = await api.get<{ paths: Record<string, unknown> }>('/openapi.json');
  for (const path of ['/auth/mfa/verify', '/auth/mfa/totp/enroll', '/auth/mfa/totp/activate', '/auth/mfa/totp/disable', '/auth/mfa/recovery-codes']) {
    t.truthy(document.body.paths[path], path);
  }
});
