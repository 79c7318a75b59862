/**
 * Access-token attacks through the real server (issue 3, contract §3): every forged, confused,
 * expired, tampered or misrouted token gets `401 unauthorized` on GET /auth/me; a token signed
 * with the previous secret verifies only while JWT_SECRET_PREVIOUS is configured; a revoked
 * session's still-unexpired access token stops working on the very next request.
 *
 * Forged tokens are built by hand (node:crypto HMAC) or with jose using the service's own
 * JWT_SECRET, which the test chooses, so that each one differs from a valid token in exactly
 * the one property under test. Positive controls prove the hand-built tokens are otherwise valid.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { SignJWT } from 'jose';
import { createApi, type Api, type ErrorBody, type TokenPair } from './support/api.js';
import { createTestDatabase } from './support/database.js';
import { startTestService, type TestService } from './support/service.js';

// ---------------------------------------------------------------------------------------------
// Token construction
// ---------------------------------------------------------------------------------------------

const b64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');
const json64 = (value: unknown) => b64url(JSON.stringify(value));

/** The `kid` tokens.ts derives from a secret, computed independently: base64url(SHA-256)[0..16). */
const kidOf = (secret: string) => createHash('sha256').update(secret).digest('base64url').slice(0, 16);

/** A compact JWS signed with HMAC (or not at all) whatever `header.alg` claims. */
const handBuilt = (header: Record<string, unknown>, payload: Record<string, unknown>, sign?: { secret: string; hash: string }) => {
  const input = `${json64(header)}.${json64(payload)}`;
  const signature = sign ? createHmac(sign.hash, sign.secret).update(input).digest('base64url') : '';
  return `${input}.${signature}`;
};

const decodePayload = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;

type Claims = { sub: string; sid: string; role: string; amr: string[]; iss: string; aud: string; iat: number; exp: number };

const secretOf = () => randomBytes(48).toString('base64url');

// ---------------------------------------------------------------------------------------------
// Fixture: one service whose JWT secret the test knows, one signed-in player
// ---------------------------------------------------------------------------------------------

type Fixture = { service: TestService; api: Api; secret: string; pair: TokenPair; claims: Claims; account: { email: string; password: string; id: string } };

// The shared service outlives the individual test that happened to start it: stopped when the file ends.
const fileTeardowns: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const teardown of fileTeardowns.reverse()) await teardown();
});

let fixture: Promise<Fixture> | undefined;
const getFixture = (t: ExecutionContext) =>
  (fixture ??= (async () => {
    const secret = secretOf();
    const service = await startTestService({ teardown: (fn: () => Promise<void>) => void fileTeardowns.push(fn) }, { JWT_SECRET: secret });
    const api = createApi(service.url);
    const account = await api.register();
    const pair = await api.login(credentials(account));
    const claims = decodePayload(pair.accessToken) as Claims;
    t.log(`service at ${service.url}`);
    return { service, api, secret, pair, claims, account };
  })());

/** Expects GET /auth/me with `authorization` (a raw header value) to answer 401 unauthorized in the envelope. */
const assertUnauthorized = async (t: ExecutionContext, api: Api, authorization: string | undefined, label: string) => {
  const response = await api.request<ErrorBody>('GET', '/auth/me', { headers: authorization === undefined ? {} : { authorization } });
  t.is(response.status, 401, `${label}: status`);
  t.deepEqual(Object.keys(response.body ?? {}), ['error'], `${label}: envelope`);
  t.is(response.body?.error?.code, 'unauthorized', `${label}: code`);
  t.is(response.body?.error?.requestId, response.headers.get('x-request-id') ?? '', `${label}: request id`);
  t.deepEqual(Object.keys(response.body.error).sort(), ['code', 'message', 'requestId'], `${label}: error fields`);
  t.is(response.headers.get('www-authenticate'), 'Bearer', `${label}: WWW-Authenticate`);
};

const assertAccepted = async (t: ExecutionContext, api: Api, token: string, label: string, userId: string) => {
  const response = await api.get<{ user: { id: string } }>('/auth/me', token);
  t.is(response.status, 200, `${label}: status ${JSON.stringify(response.body)}`);
  t.is(response.body.user?.id, userId, `${label}: user`);
};

/** Valid claims for the fixture's session, `iat` now and `exp` in 10 minutes; `overrides` replace or (with undefined) remove. */
const claimsFor = (base: Claims, overrides: Record<string, unknown> = {}) => {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    sub: base.sub,
    sid: base.sid,
    role: base.role,
    amr: base.amr,
    iss: base.iss,
    aud: base.aud,
    iat: now,
    exp: now + 600,
    ...overrides,
  };
  for (const [key, value] of Object.entries(claims)) if (value === undefined) delete claims[key];
  return claims;
};

const validHeader = (secret: string) => ({ alg: 'HS256', kid: kidOf(secret), typ: 'at+jwt' });

// ---------------------------------------------------------------------------------------------
// Controls: the hand-built and jose-built tokens are valid when nothing is wrong with them
// ---------------------------------------------------------------------------------------------

test('controls: the issued token, a hand-built HS256 token and a jose-built token with the right kid all verify', async (t) => {
  const { api, secret, pair, claims, account } = await getFixture(t);
  t.is(claims.iss, 'karaxas-backend');
  t.is(claims.aud, 'karaxas-game');
  const header = JSON.parse(Buffer.from(pair.accessToken.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;
  t.deepEqual(header, { alg: 'HS256', kid: kidOf(secret), typ: 'at+jwt' }, 'the issued header');

  await assertAccepted(t, api, pair.accessToken, 'issued token', account.id);
  await assertAccepted(t, api, handBuilt(validHeader(secret), claimsFor(claims), { secret, hash: 'sha256' }), 'hand-built', account.id);
  const joseBuilt = await new SignJWT({ sid: claims.sid, role: claims.role, amr: claims.amr })
    .setProtectedHeader(validHeader(secret))
    .setSubject(claims.sub)
    .setIssuer(claims.iss)
    .setAudience(claims.aud)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(secret));
  await assertAccepted(t, api, joseBuilt, 'jose-built', account.id);
});

// ---------------------------------------------------------------------------------------------
// Algorithm attacks
// ---------------------------------------------------------------------------------------------

test('alg none (unsigned, hand-built) is rejected in every spelling', async (t) => {
  const { api, secret, claims } = await getFixture(t);
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const header = { alg, kid: kidOf(secret), typ: 'at+jwt' };
    const unsigned = handBuilt(header, claimsFor(claims));
    await assertUnauthorized(t, api, `Bearer ${unsigned}`, `alg ${alg}, empty signature`);
    // Some libraries accepted `none` tokens only when the signature segment was dropped entirely.
    await assertUnauthorized(t, api, `Bearer ${unsigned.slice(0, -1)}`, `alg ${alg}, no signature segment`);
    // ...or carried a leftover signature.
    const withSignature = `${unsigned}${createHmac('sha256', secret).update('x').digest('base64url')}`;
    await assertUnauthorized(t, api, `Bearer ${withSignature}`, `alg ${alg}, stray signature`);
  }
});

test('RS256/ES256/PS256 headers over an HMAC signature (key confusion) are rejected', async (t) => {
  const { api, secret, claims } = await getFixture(t);
  // The classic confusion: the verifier treats the HMAC secret (or an RSA public key) as the
  // "public key" of an asymmetric algorithm. The signature is a valid HMAC-SHA256 with the real
  // secret; only the declared alg differs, so a verifier that trusted the header would accept it.
  for (const alg of ['RS256', 'ES256', 'PS256', 'EdDSA']) {
    const forged = handBuilt({ alg, kid: kidOf(secret), typ: 'at+jwt' }, claimsFor(claims), { secret, hash: 'sha256' });
    await assertUnauthorized(t, api, `Bearer ${forged}`, `alg ${alg} with HMAC signature`);
  }
});

test('HS384 and HS512 with the right secret and kid are rejected (HS256 only)', async (t) => {
  const { api, secret, claims } = await getFixture(t);
  for (const [alg, hash] of [
    ['HS384', 'sha384'],
    ['HS512', 'sha512'],
  ] as const) {
    const forged = handBuilt({ alg, kid: kidOf(secret), typ: 'at+jwt' }, claimsFor(claims), { secret, hash });
    await assertUnauthorized(t, api, `Bearer ${forged}`, alg);
  }
  // The same with jose, in case the hand-built encoding differed from a library's.
  const joseHs512 = await new SignJWT({ sid: claims.sid, role: claims.role, amr: claims.amr })
    .setProtectedHeader({ alg: 'HS512', kid: kidOf(secret), typ: 'at+jwt' })
    .setSubject(claims.sub)
    .setIssuer(claims.iss)
    .setAudience(claims.aud)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(secret));
  await assertUnauthorized(t, api, `Bearer ${joseHs512}`, 'HS512 via jose');
});

// ---------------------------------------------------------------------------------------------
// Claims and headers
// ---------------------------------------------------------------------------------------------

test('wrong aud, wrong iss, expired, missing exp and mismatched sub are rejected even when correctly signed', async (t) => {
  const { api, secret, claims } = await getFixture(t);
  const sign = (overrides: Record<string, unknown>) => handBuilt(validHeader(secret), claimsFor(claims, overrides), { secret, hash: 'sha256' });
  const now = Math.floor(Date.now() / 1000);

  await assertUnauthorized(t, api, `Bearer ${sign({ aud: 'some-other-api' })}`, 'wrong aud');
  await assertUnauthorized(t, api, `Bearer ${sign({ aud: ['some-other-api'] })}`, 'wrong aud (array)');
  await assertUnauthorized(t, api, `Bearer ${sign({ aud: undefined })}`, 'missing aud');
  await assertUnauthorized(t, api, `Bearer ${sign({ iss: 'https://evil.example' })}`, 'wrong iss');
  await assertUnauthorized(t, api, `Bearer ${sign({ iss: undefined })}`, 'missing iss');
  await assertUnauthorized(t, api, `Bearer ${sign({ exp: undefined })}`, 'missing exp (a token that never expires)');
  await assertUnauthorized(t, api, `Bearer ${sign({ sub: randomUuid() })}`, 'sub of another (unknown) user for this session');
  await assertUnauthorized(t, api, `Bearer ${sign({ sid: randomUuid() })}`, 'unknown session id');
  await assertUnauthorized(t, api, `Bearer ${sign({ sid: "' OR 1=1 --" })}`, 'non-uuid session id');
  await assertUnauthorized(t, api, `Bearer ${sign({ nbf: now + 3600 })}`, 'not yet valid (nbf)');

  // Expired: signed with jose and the service's own secret and kid, exp a minute ago (beyond any clock tolerance).
  const expired = await new SignJWT({ sid: claims.sid, role: claims.role, amr: claims.amr })
    .setProtectedHeader(validHeader(secret))
    .setSubject(claims.sub)
    .setIssuer(claims.iss)
    .setAudience(claims.aud)
    .setIssuedAt(now - 1000)
    .setExpirationTime(now - 60)
    .sign(new TextEncoder().encode(secret));
  await assertUnauthorized(t, api, `Bearer ${expired}`, 'expired');
});

test('a tampered payload (role flipped to admin, or another sub) with the original signature is rejected', async (t) => {
  const { api, pair } = await getFixture(t);
  const [header, payload, signature] = pair.accessToken.split('.') as [string, string, string];
  const original = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  const tamperedRole = `${header}.${json64({ ...original, role: 'admin' })}.${signature}`;
  await assertUnauthorized(t, api, `Bearer ${tamperedRole}`, 'role flipped to admin');
  const tamperedAmr = `${header}.${json64({ ...original, amr: ['pwd', 'otp'] })}.${signature}`;
  await assertUnauthorized(t, api, `Bearer ${tamperedAmr}`, 'amr upgraded to otp');
  const tamperedExp = `${header}.${json64({ ...original, exp: Number(original.exp) + 86_400 })}.${signature}`;
  await assertUnauthorized(t, api, `Bearer ${tamperedExp}`, 'exp extended');
  // A flipped bit in the signature itself.
  const bytes = Buffer.from(signature, 'base64url');
  bytes[0] = bytes[0]! ^ 0x01;
  await assertUnauthorized(t, api, `Bearer ${header}.${payload}.${bytes.toString('base64url')}`, 'signature bit flipped');
  await assertUnauthorized(t, api, `Bearer ${header}.${payload}.`, 'signature stripped');
});

test('unknown kid, missing kid and a wrong or missing typ are rejected even with the right secret', async (t) => {
  const { api, secret, claims } = await getFixture(t);
  const payload = claimsFor(claims);
  const sign = (header: Record<string, unknown>) => handBuilt(header, payload, { secret, hash: 'sha256' });

  for (const kid of ['AAAAAAAAAAAAAAAA', kidOf(secretOf()), '../../../../dev/null', "' OR '1'='1", '', 'x'.repeat(2000)]) {
    await assertUnauthorized(t, api, `Bearer ${sign({ alg: 'HS256', kid, typ: 'at+jwt' })}`, `unknown kid ${kid.slice(0, 24)}`);
  }
  await assertUnauthorized(t, api, `Bearer ${sign({ alg: 'HS256', typ: 'at+jwt' })}`, 'missing kid');
  await assertUnauthorized(t, api, `Bearer ${sign({ alg: 'HS256', kid: 42, typ: 'at+jwt' })}`, 'numeric kid');
  for (const typ of ['JWT', 'jwt', 'id_token+jwt', 'refresh+jwt']) {
    await assertUnauthorized(t, api, `Bearer ${sign({ alg: 'HS256', kid: kidOf(secret), typ })}`, `typ ${typ}`);
  }
  await assertUnauthorized(t, api, `Bearer ${sign({ alg: 'HS256', kid: kidOf(secret) })}`, 'missing typ');
  // An unknown critical header parameter must make the token unusable (RFC 7515 §4.1.11).
  await assertUnauthorized(t, api, `Bearer ${sign({ ...validHeader(secret), crit: ['x-unknown'], 'x-unknown': true })}`, 'unknown crit');
});

test('a refresh token, garbage, empty and malformed Authorization headers are rejected', async (t) => {
  const { api, pair } = await getFixture(t);
  await assertUnauthorized(t, api, `Bearer ${pair.refreshToken}`, 'refresh token as access token');
  await assertUnauthorized(t, api, undefined, 'no Authorization header');
  await assertUnauthorized(t, api, 'Bearer', 'Bearer without token');
  await assertUnauthorized(t, api, 'Bearer ', 'Bearer with empty token');
  await assertUnauthorized(t, api, 'Bearer  ', 'Bearer with blank token');
  // RFC 7235: the auth scheme is case-insensitive.
  for (const scheme of ['bearer', 'BEARER']) {
    const response = await api.get('/auth/me', undefined, { authorization: `${scheme} ${pair.accessToken}` });
    t.is(response.status, 200, `${scheme} scheme`);
  }
  await assertUnauthorized(t, api, pair.accessToken, 'token without scheme');
  await assertUnauthorized(t, api, `Basic ${b64url('a:b')}`, 'Basic scheme');
  await assertUnauthorized(t, api, `Bearer ${pair.accessToken} ${pair.accessToken}`, 'two tokens');
  await assertUnauthorized(t, api, `Bearer  ${pair.accessToken}`, 'double space');
  await assertUnauthorized(t, api, `Bearer ${pair.accessToken},Bearer ${pair.accessToken}`, 'comma-joined duplicate header');
  for (const garbage of [
    'garbage',
    'a.b.c',
    '...',
    'e30.e30.',
    `${b64url('null')}.${b64url('null')}.x`,
    `${b64url('[]')}.${b64url('{}')}.x`,
    `${json64(validHeaderFor())}.${b64url('not json')}.x`,
    `${json64(validHeaderFor())}.${b64url('"a string"')}.x`,
    'x'.repeat(8_000),
    `${pair.accessToken}.extra`,
  ]) {
    await assertUnauthorized(t, api, `Bearer ${garbage}`, `garbage ${garbage.slice(0, 24)}`);
  }
  // Never from the query string.
  const response = await api.request<ErrorBody>('GET', `/auth/me?access_token=${encodeURIComponent(pair.accessToken)}`);
  t.is(response.status, 401, 'token in the query string');
});

// ---------------------------------------------------------------------------------------------
// Session revocation
// ---------------------------------------------------------------------------------------------

test("a revoked session's still-valid access token is refused on the next request (logout, revoke one, revoke all)", async (t) => {
  const { api, account } = await getFixture(t);

  const first = await api.login(credentials(account));
  await assertAccepted(t, api, first.accessToken, 'before logout', account.id);
  t.is((await api.post('/auth/logout', undefined, first.accessToken)).status, 204);
  await assertUnauthorized(t, api, `Bearer ${first.accessToken}`, 'after logout');

  const victim = await api.login(credentials(account));
  const other = await api.login(credentials(account));
  await assertAccepted(t, api, victim.accessToken, 'victim before revocation', account.id);
  t.is((await api.delete(`/auth/sessions/${victim.sessionId}`, other.accessToken)).status, 204);
  await assertUnauthorized(t, api, `Bearer ${victim.accessToken}`, 'after DELETE /auth/sessions/:id');
  await assertAccepted(t, api, other.accessToken, 'the revoking session stays valid', account.id);

  const third = await api.login(credentials(account));
  const revokeAll = await api.post<{ revoked: number }>('/auth/sessions/revoke-all', undefined, other.accessToken);
  t.is(revokeAll.status, 200);
  t.true(revokeAll.body.revoked >= 2);
  await assertUnauthorized(t, api, `Bearer ${other.accessToken}`, 'caller after revoke-all');
  await assertUnauthorized(t, api, `Bearer ${third.accessToken}`, 'sibling after revoke-all');
});

// ---------------------------------------------------------------------------------------------
// Secret rotation: JWT_SECRET_PREVIOUS is verify-only and only while configured
// ---------------------------------------------------------------------------------------------

test('a token signed with the previous secret verifies only while JWT_SECRET_PREVIOUS is set', async (t) => {
  const secretA = secretOf();
  const secretB = secretOf();
  // Two instances on one database, so that the session is the same and only the key set differs.
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const rotating = await startTestService(t, { JWT_SECRET: secretB, JWT_SECRET_PREVIOUS: secretA }, { database });
  const rotated = await startTestService(t, { JWT_SECRET: secretB }, { database });
  const rotatingApi = createApi(rotating.url);
  const rotatedApi = createApi(rotated.url);

  const account = await rotatingApi.register();
  const pair = await rotatingApi.login(credentials(account));
  const claims = decodePayload(pair.accessToken) as Claims;
  const issuedHeader = JSON.parse(Buffer.from(pair.accessToken.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string };
  t.is(issuedHeader.kid, kidOf(secretB), 'new tokens are signed with the current secret, never the previous one');

  const signedWith = (secret: string, kid = kidOf(secret)) =>
    new SignJWT({ sid: claims.sid, role: claims.role, amr: claims.amr })
      .setProtectedHeader({ alg: 'HS256', kid, typ: 'at+jwt' })
      .setSubject(claims.sub)
      .setIssuer(claims.iss)
      .setAudience(claims.aud)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(secret));

  const withA = await signedWith(secretA);
  const withB = await signedWith(secretB);
  await assertAccepted(t, rotatingApi, withA, 'previous secret A while JWT_SECRET_PREVIOUS=A', account.id);
  await assertAccepted(t, rotatingApi, withB, 'current secret B (rotating)', account.id);
  await assertAccepted(t, rotatedApi, withB, 'current secret B (rotated)', account.id);
  await assertAccepted(t, rotatedApi, pair.accessToken, 'token issued during the rotation, after it', account.id);
  await assertUnauthorized(t, rotatedApi, `Bearer ${withA}`, 'previous secret A once JWT_SECRET_PREVIOUS is gone');

  // The kid selects the key: A's signature under B's kid (or B's under A's) is not accepted by trial.
  await assertUnauthorized(t, rotatingApi, `Bearer ${await signedWith(secretA, kidOf(secretB))}`, "A's signature under B's kid");
  await assertUnauthorized(t, rotatingApi, `Bearer ${await signedWith(secretB, kidOf(secretA))}`, "B's signature under A's kid");
  // An attacker-chosen secret under the right kid.
  await assertUnauthorized(t, rotatingApi, `Bearer ${await signedWith(secretOf(), kidOf(secretB))}`, "a random secret under B's kid");
});

// ---------------------------------------------------------------------------------------------

function randomUuid() {
  return crypto.randomUUID();
}

function validHeaderFor() {
  return { alg: 'HS256', kid: 'AAAAAAAAAAAAAAAA', typ: 'at+jwt' };
}

/** Only what POST /auth/login accepts (its body schema is strict). */
function credentials(account: { email: string; password: string }) {
  return { email: account.email, password: account.password };
}
