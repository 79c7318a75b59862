/**
 * Throttling through the real server (issue 3, contract §1, §3, §9): the per-account lockout
 * with exponential backoff kept in PostgreSQL, and the per-IP limit on the credential
 * endpoints (koa-ratelimit: memory per instance, Redis shared across instances, per-instance
 * fallback when Redis is down).
 *
 * Redis: with REDIS_URL set (CI's second pass) that server is used; otherwise a throwaway
 * `redis-server` child process is started when the binary exists. Rate-limit keys live under
 * koa-ratelimit's fixed namespace `karaxas:rl:auth:<client ip>`, so each test uses its own random
 * client address (TRUST_PROXY) and deletes its key first: runs never share a budget.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { Redis } from 'ioredis';
import { createApi, type Api, type ErrorBody, type TokenPair } from './support/api.js';
import { createTestDatabase, withAdminClient } from './support/database.js';
import { startTestService, type TestService } from './support/service.js';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const LOCKOUT = { AUTH_LOCKOUT_THRESHOLD: '3', AUTH_LOCKOUT_BASE_SECONDS: '2', AUTH_LOCKOUT_MAX_SECONDS: '8' };
const RATE = { AUTH_RATE_LIMIT_MAX: '5', AUTH_RATE_LIMIT_WINDOW_SECONDS: '30' };

type Attempt = {
  status: number;
  code: string | undefined;
  message: string | undefined;
  retryAfter: string | null;
  /** The body's shape: its keys, and the error object's keys. */
  shape: string;
  ms: number;
};

const attempt = async (api: Api, email: string, password: string, headers: Record<string, string> = {}): Promise<Attempt> => {
  const started = performance.now();
  const response = await api.post<ErrorBody | TokenPair>('/auth/login', { email, password }, undefined, headers);
  const ms = performance.now() - started;
  const body = response.body as ErrorBody;
  return {
    status: response.status,
    code: body?.error?.code,
    message: body?.error?.message,
    retryAfter: response.headers.get('retry-after'),
    shape: JSON.stringify([Object.keys(response.body ?? {}).sort(), Object.keys(body?.error ?? {}).sort()]),
    ms,
  };
};

const uniqueEmail = (label: string) => `${label}-${randomBytes(6).toString('hex')}@example.test`;
const wrongPassword = () => `wrong-${randomBytes(9).toString('base64url')}`;

type AuditRow = { event_type: string; user_id: string | null; request_id: string | null; ip: string | null; details: Record<string, unknown> };

/** security_event_audit rows, read as the superuser. */
const auditRows = (service: TestService, where = 'true', params: unknown[] = []) =>
  withAdminClient(
    async (client) =>
      (
        await client.query<AuditRow>(
          `SELECT event_type, user_id::text, request_id, host(ip) AS ip, details FROM security_event_audit WHERE ${where} ORDER BY seq`,
          params,
        )
      ).rows,
    service.database.name,
  );

/** Polls until `check` holds (events recorded after the response, e.g. rate_limited). */
const eventually = async <T>(read: () => Promise<T>, check: (value: T) => boolean, timeoutMs = 3_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!check(value) && Date.now() < deadline) {
    await sleep(50);
    value = await read();
  }
  return value;
};

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Waits out a lock whose Retry-After was just answered. */
const waitOut = (retryAfter: string | null) => sleep(Number(retryAfter) * 1000 + 400);

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

/** A random documentation-range client address, so Redis-backed budgets never collide between runs. */
const randomClientIp = () => `198.18.${randomInt(0, 256)}.${randomInt(1, 255)}`;
/** X-Forwarded-For as GCP's load balancer sends it: whatever the client claimed, the client, the LB. */
const forwardedFor = (clientIp: string, spoofed = `203.0.113.${randomInt(1, 255)}`) => ({
  'x-forwarded-for': `${spoofed}, ${clientIp}, 35.191.0.1`,
});

// ---------------------------------------------------------------------------------------------
// Redis for the shared-budget tests
// ---------------------------------------------------------------------------------------------

const hasRedisServerBinary = () => !spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error;

const waitForRedis = async (url: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    } finally {
      client.disconnect();
    }
    await sleep(50);
  }
};

/** Starts `redis-server` on a free port (no persistence); stopped when the test ends. */
const startThrowawayRedis = async (t: ExecutionContext) => {
  const port = await freePort();
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  t.teardown(stop);
  const url = `redis://127.0.0.1:${port}`;
  await waitForRedis(url);
  return { url, stop, port };
};

/** REDIS_URL when set (CI), else a throwaway redis-server, else undefined (with the reason logged). */
/**
 * The Redis cases exist where Redis can be had (REDIS_URL, or a redis-server binary to start a
 * throwaway one — true on these machines and in CI); elsewhere they are not registered, and the
 * output says so once, rather than passing without asserting anything.
 */
const registerIf = (available: boolean, what: string): typeof test => {
  if (!available) console.log(`auth-throttle: ${what}; those cases are not registered`);
  return (available ? test : Object.assign(() => undefined, test)) as typeof test;
};
const withRedis = registerIf(Boolean(process.env.REDIS_URL) || hasRedisServerBinary(), 'no REDIS_URL and no redis-server binary');
const withRedisServer = registerIf(hasRedisServerBinary(), 'no redis-server binary to stop and restart');

const redisForTest = async (t: ExecutionContext): Promise<string | undefined> => {
  if (process.env.REDIS_URL) {
    t.log(`using REDIS_URL from the environment`);
    return process.env.REDIS_URL;
  }
  if (hasRedisServerBinary()) {
    const { url } = await startThrowawayRedis(t);
    t.log(`REDIS_URL is not set; started a throwaway redis-server at ${url}`);
    return url;
  }
  return undefined;
};

const redisClient = (t: ExecutionContext, url: string) => {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  t.teardown(async () => {
    await client.quit().catch(() => client.disconnect());
  });
  return client;
};

const connectedClients = async (client: Redis) => (String(await client.client('LIST')).match(/^id=/gm) ?? []).length;

// ---------------------------------------------------------------------------------------------
// Per-account lockout
// ---------------------------------------------------------------------------------------------

let lockoutService: Promise<TestService> | undefined;
const lockoutFixture = (t: ExecutionContext) => (lockoutService ??= startTestService({ teardown: (fn: () => Promise<void>) => void fileTeardowns.push(fn) }, LOCKOUT)).then((service) => {
  t.log(`lockout service ${service.url}`);
  return service;
});
const fileTeardowns: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const teardown of fileTeardowns.reverse()) await teardown();
});

/**
 * The lockout observed for one address: three rounds of three failures (locks of 2, 4, 8 s),
 * a probe with `probePassword` while each lock holds, and a fourth round that shows the cap.
 */
const lockoutSequence = async (api: Api, email: string, probePassword: string, requestIdPrefix: string) => {
  let n = 0;
  const headers = () => ({ 'x-request-id': `${requestIdPrefix}-${++n}` });
  const observed: Array<Omit<Attempt, 'ms' | 'retryAfter'> & { retryAfter: string | null | number[] }> = [];
  const strip = ({ ms: _ms, ...rest }: Attempt) => rest;
  for (let round = 0; round < 4; round += 1) {
    for (let failure = 0; failure < 3; failure += 1) observed.push(strip(await attempt(api, email, wrongPassword(), headers())));
    const lockedFor = observed.at(-1)!.retryAfter as string | null;
    // While locked even the right password is refused; Retry-After counts down (allow one second).
    const probe = await attempt(api, email, probePassword, headers());
    const probeRetry = Number(probe.retryAfter);
    observed.push({ ...strip(probe), retryAfter: probeRetry >= 1 && probeRetry <= Number(lockedFor) ? [1, Number(lockedFor)] : [probeRetry] });
    await waitOut(lockedFor);
  }
  return observed;
};

test('lockout: the 3rd failure locks for 2 s, repeats double to the 8 s cap, and unknown addresses look exactly the same', async (t) => {
  t.timeout(90_000);
  const service = await lockoutFixture(t);
  const api = createApi(service.url);
  const known = await api.register({ email: uniqueEmail('known') });
  const unknownEmail = uniqueEmail('unknown');

  const [knownSeq, unknownSeq] = await Promise.all([
    lockoutSequence(api, known.email, known.password, 'lock-known'),
    lockoutSequence(api, unknownEmail, known.password, 'lock-unknown'),
  ]);

  const failure = { status: 401, code: 'invalid_credentials', message: 'The e-mail address or password is incorrect.', retryAfter: null };
  const locked = (retryAfter: string | number[]) => ({ status: 429, code: 'account_locked', message: 'Too many failed attempts; retry later.', retryAfter });
  const shape = JSON.stringify([['error'], ['code', 'message', 'requestId']]);
  const expected = [2, 4, 8, 8].flatMap((seconds) => [
    { ...failure, shape },
    { ...failure, shape },
    { ...locked(String(seconds)), shape },
    { ...locked([1, seconds]), shape },
  ]);
  t.deepEqual(knownSeq, expected, 'known address');
  t.deepEqual(unknownSeq, expected, 'unknown address: the same statuses, bodies, shapes and Retry-After sequence');

  // After the last lock the right password works again, and resets the state.
  t.is((await attempt(api, known.email, known.password)).status, 200);

  // The lockout table: keyed without the address, the same rows for known and unknown addresses.
  const rows = await withAdminClient(
    async (client) => (await client.query<{ row: string; key_length: number }>('SELECT row_to_json(l)::text AS row, octet_length(account_key) AS key_length FROM auth_lockouts l')).rows,
    service.database.name,
  );
  const dump = rows.map((row) => row.row).join('\n').toLowerCase();
  for (const email of [known.email, unknownEmail]) {
    const local = email.split('@')[0]!;
    for (const needle of [email.toLowerCase(), local, Buffer.from(email).toString('hex'), Buffer.from(local).toString('hex'), Buffer.from(email).toString('base64')]) {
      t.false(dump.includes(needle.toLowerCase()), `auth_lockouts holds no form of ${email}`);
    }
  }
  for (const row of rows) t.is(row.key_length, 32, 'account keys are fixed-size digests');

  // The trail: login_failed for every counted failure, account_locked for every lock, both for
  // known (user id set) and unknown (no user id) addresses; nothing for the refused probes.
  for (const [prefix, userId] of [
    ['lock-known', known.id],
    ['lock-unknown', null],
  ] as const) {
    const events = await auditRows(service, 'request_id LIKE $1', [`${prefix}-%`]);
    const failed = events.filter((event) => event.event_type === 'login_failed');
    const locks = events.filter((event) => event.event_type === 'account_locked');
    t.is(failed.length, 12, `${prefix}: login_failed per counted failure`);
    t.is(locks.length, 4, `${prefix}: account_locked per lock`);
    t.deepEqual(
      locks.map((event) => event.details.lockedForSeconds),
      [2, 4, 8, 8],
      `${prefix}: the recorded lock durations`,
    );
    t.true([...failed, ...locks].every((event) => event.user_id === userId), `${prefix}: user id`);
    t.is(events.length, 16, `${prefix}: no event for requests refused while locked`);
    t.false(JSON.stringify(events).toLowerCase().includes(prefix === 'lock-known' ? known.email : unknownEmail), `${prefix}: no address in the trail`);
  }
});

test('lockout: a success resets the count and the backoff (the next lock is back to the base duration)', async (t) => {
  t.timeout(60_000);
  const service = await lockoutFixture(t);
  const api = createApi(service.url);
  const account = await api.register({ email: uniqueEmail('reset') });

  // Two failures, a success, two failures: never three in a row, never locked.
  for (const expected of [401, 401, 200, 401, 401, 200]) {
    const result = await attempt(api, account.email, expected === 200 ? account.password : wrongPassword());
    t.is(result.status, expected);
  }

  // Lock (2 s), wait, lock again (4 s: doubled), wait, succeed, lock again: back to 2 s.
  const lockOnce = async () => {
    let last: Attempt | undefined;
    for (let i = 0; i < 3; i += 1) last = await attempt(api, account.email, wrongPassword());
    return last!;
  };
  const first = await lockOnce();
  t.is(first.code, 'account_locked');
  t.is(first.retryAfter, '2');
  await waitOut(first.retryAfter);
  const second = await lockOnce();
  t.is(second.retryAfter, '4', 'doubled');
  await waitOut(second.retryAfter);
  t.is((await attempt(api, account.email, account.password)).status, 200, 'success after the lock expired');
  const third = await lockOnce();
  t.is(third.code, 'account_locked');
  t.is(third.retryAfter, '2', 'back to the base duration after a success');
});

test('lockout: changing the case or padding of the address does not get around it', async (t) => {
  const service = await lockoutFixture(t);
  const api = createApi(service.url);
  const account = await api.register({ email: uniqueEmail('casing') });
  const [local, domain] = account.email.split('@') as [string, string];
  const variants = [`${local.toUpperCase()}@${domain}`, `  ${account.email}  `, `${local}@${domain.toUpperCase()}`];
  const results = [];
  for (const email of variants) results.push(await attempt(api, email, wrongPassword()));
  t.deepEqual(
    results.map((result) => result.status),
    [401, 401, 429],
  );
  const probe = await attempt(api, account.email, account.password);
  t.is(probe.status, 429);
  t.is(probe.code, 'account_locked');
});

test('lockout: while locked no password hashing happens (timing, loosely)', async (t) => {
  t.timeout(60_000);
  // Expensive hashing (≈150 ms per verification here) makes the difference unmistakable.
  const service = await startTestService(t, { ...LOCKOUT, AUTH_LOCKOUT_BASE_SECONDS: '60', AUTH_LOCKOUT_MAX_SECONDS: '60', ARGON2_MEMORY_KIB: '65536', ARGON2_TIME_COST: '4' });
  const api = createApi(service.url);
  const account = await api.register({ email: uniqueEmail('timing') });
  const unknownEmail = uniqueEmail('timing-unknown');

  const hashing: number[] = [];
  const lockedTimes: number[] = [];
  for (const email of [account.email, unknownEmail]) {
    for (let i = 0; i < 3; i += 1) {
      const result = await attempt(api, email, wrongPassword());
      t.is(result.status, i < 2 ? 401 : 429);
      hashing.push(result.ms);
    }
    for (let i = 0; i < 5; i += 1) {
      const result = await attempt(api, email, account.password);
      t.is(result.code, 'account_locked');
      lockedTimes.push(result.ms);
    }
  }
  t.log(`median with hashing ${median(hashing).toFixed(1)} ms, while locked ${median(lockedTimes).toFixed(1)} ms`);
  t.true(median(lockedTimes) < median(hashing) / 3, 'locked answers do not spend a password verification');
});

// ---------------------------------------------------------------------------------------------
// Per-IP limit
// ---------------------------------------------------------------------------------------------

const assertRateLimited = (t: ExecutionContext, response: { status: number; body: unknown; headers: Headers }, label: string, windowSeconds = 30) => {
  t.is(response.status, 429, `${label}: status`);
  const body = response.body as ErrorBody;
  t.deepEqual(Object.keys(body), ['error'], `${label}: envelope`);
  t.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'requestId'], `${label}: error fields`);
  t.is(body.error.code, 'rate_limited', `${label}: code`);
  t.is(body.error.requestId, response.headers.get('x-request-id') ?? '', `${label}: request id`);
  const retryAfter = response.headers.get('retry-after') ?? '';
  t.regex(retryAfter, /^\d+$/, `${label}: Retry-After is integer seconds`);
  t.true(Number(retryAfter) >= 1 && Number(retryAfter) <= windowSeconds, `${label}: Retry-After ${retryAfter} within the window`);
  t.is(response.headers.get('ratelimit-limit'), '5', `${label}: RateLimit-Limit`);
  t.is(response.headers.get('ratelimit-remaining'), '0', `${label}: RateLimit-Remaining`);
  const reset = response.headers.get('ratelimit-reset') ?? '';
  t.regex(reset, /^\d+$/, `${label}: RateLimit-Reset is delta seconds`);
  t.true(Number(reset) >= 1 && Number(reset) <= windowSeconds, `${label}: RateLimit-Reset ${reset} within the window`);
};

const assertBudgetHeaders = (t: ExecutionContext, response: { headers: Headers }, remaining: number, label: string) => {
  t.is(response.headers.get('ratelimit-limit'), '5', `${label}: RateLimit-Limit`);
  t.is(response.headers.get('ratelimit-remaining'), String(remaining), `${label}: RateLimit-Remaining`);
  const reset = response.headers.get('ratelimit-reset') ?? '';
  t.regex(reset, /^\d+$/, `${label}: RateLimit-Reset is delta seconds, not a timestamp`);
  t.true(Number(reset) >= 1 && Number(reset) <= 30, `${label}: RateLimit-Reset ${reset}`);
};

test('per-IP limit: login, register and refresh share one budget; the 6th request gets 429 rate_limited with the headers, recorded once', async (t) => {
  const service = await startTestService(t, { ...RATE, ...LOCKOUT, AUTH_LOCKOUT_THRESHOLD: '10' });
  const api = createApi(service.url);

  const account = { email: uniqueEmail('rate'), password: `pw-${randomBytes(12).toString('base64url')}`, displayName: 'Rate' };
  const registered = await api.post('/auth/register', account);
  t.is(registered.status, 201);
  assertBudgetHeaders(t, registered, 4, 'register');
  const login = await api.post<TokenPair>('/auth/login', { email: account.email, password: account.password });
  t.is(login.status, 200);
  assertBudgetHeaders(t, login, 3, 'login');
  const refreshed = await api.post<TokenPair>('/auth/refresh', { refreshToken: login.body.refreshToken });
  t.is(refreshed.status, 200);
  assertBudgetHeaders(t, refreshed, 2, 'refresh');
  const again = await api.post('/auth/login', { email: account.email, password: account.password });
  t.is(again.status, 200);
  assertBudgetHeaders(t, again, 1, 'login again');
  const failed = await api.post('/auth/login', { email: account.email, password: wrongPassword() });
  t.is(failed.status, 401, 'an error answer carries the budget too');
  assertBudgetHeaders(t, failed, 0, 'the 5th request, a failed login');

  // Over budget: wrong passwords here must not reach the handler (no lockout count, no hashing).
  assertRateLimited(t, await api.post('/auth/login', { email: account.email, password: wrongPassword() }), '6th: login');
  assertRateLimited(t, await api.post('/auth/refresh', { refreshToken: refreshed.body.refreshToken }), '7th: refresh');
  assertRateLimited(t, await api.post('/auth/register', { ...account, email: uniqueEmail('rate2') }), '8th: register');
  assertRateLimited(t, await api.post('/auth/login', { email: account.email, password: wrongPassword() }), '9th: login');
  // A malformed body is throttled before it is read.
  assertRateLimited(t, await api.request('POST', '/auth/login', { headers: { 'content-type': 'application/json' }, body: undefined }), '10th: no body');

  // Other endpoints are not part of this budget.
  t.is((await api.get('/auth/me', refreshed.body.accessToken)).status, 200, 'authenticated calls are unaffected');

  const lockouts = await withAdminClient(
    async (client) => (await client.query<{ consecutive_failures: number }>('SELECT consecutive_failures FROM auth_lockouts')).rows,
    service.database.name,
  );
  t.deepEqual(lockouts, [{ consecutive_failures: 1 }], 'only the failure inside the budget counted toward the lockout');
  t.is((await auditRows(service, "event_type = 'refresh_rotated'")).length, 1, 'the throttled refresh did not rotate');
  t.is((await auditRows(service, "event_type = 'user_registered'")).length, 1, 'the throttled register did not register');

  const limited = await eventually(
    () => auditRows(service, "event_type = 'rate_limited'"),
    (rows) => rows.length > 0,
  );
  await sleep(300);
  const settled = await auditRows(service, "event_type = 'rate_limited'");
  t.is(settled.length, 1, 'rate_limited is recorded once per client and window, not per request');
  t.is(limited[0]!.ip, '127.0.0.1');
  t.is(limited[0]!.details.path, '/auth/login');
});

test('per-IP limit behind the trusted proxy: rotating the client-supplied part of X-Forwarded-For does not reset the budget', async (t) => {
  const service = await startTestService(t, { ...RATE, TRUST_PROXY: 'true', TRUSTED_PROXY_HOPS: '2' });
  const api = createApi(service.url);
  const client = randomClientIp();
  const spoofs = ['198.51.100.1', '198.51.100.2', '10.0.0.1', '127.0.0.1', '::1', 'unknown', '198.51.100.3, 198.51.100.4'];

  for (let i = 0; i < 5; i += 1) {
    const response = await api.post('/auth/login', { email: uniqueEmail('proxy'), password: wrongPassword() }, undefined, forwardedFor(client, spoofs[i]));
    t.is(response.status, 401, `request ${i + 1}`);
    t.is(response.headers.get('ratelimit-remaining'), String(4 - i), `request ${i + 1}: remaining`);
  }
  for (const spoofed of spoofs.slice(5)) {
    assertRateLimited(
      t,
      await api.post('/auth/login', { email: uniqueEmail('proxy'), password: wrongPassword() }, undefined, forwardedFor(client, spoofed)),
      `spoofed ${spoofed}`,
    );
  }
  // No spoofed prefix at all: still the same client.
  assertRateLimited(
    t,
    await api.post('/auth/login', { email: uniqueEmail('proxy'), password: wrongPassword() }, undefined, { 'x-forwarded-for': `${client}, 35.191.0.1` }),
    'no spoofed prefix',
  );
  // Control: another client behind the same load balancer has its own budget.
  const other = await api.post('/auth/login', { email: uniqueEmail('proxy'), password: wrongPassword() }, undefined, forwardedFor(randomClientIp()));
  t.is(other.status, 401, 'another client is not limited');
  t.is(other.headers.get('ratelimit-remaining'), '4');

  const limited = await eventually(
    () => auditRows(service, "event_type = 'rate_limited'"),
    (rows) => rows.length > 0,
  );
  t.is(limited.length, 1);
  t.is(limited[0]!.ip, client, 'the event names the real client, not a spoofed address');
});

// ---------------------------------------------------------------------------------------------
// Redis: one budget across instances; per-instance fallback when Redis is unreachable
// ---------------------------------------------------------------------------------------------

withRedis('per-IP limit with REDIS_URL: two instances share one budget (3 on A + 3 on B → the 6th is 429)', async (t) => {
  const redisUrl = await redisForTest(t);
  if (redisUrl === undefined) return t.fail('no Redis to test against');
  const redis = redisClient(t, redisUrl);
  const clientIp = randomClientIp();
  const key = `karaxas:rl:auth:${clientIp}`;
  await redis.del(key);
  t.teardown(async () => {
    await redis.del(key).catch(() => undefined);
  });

  const clientsBefore = await connectedClients(redis);
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const env = { ...RATE, REDIS_URL: redisUrl, TRUST_PROXY: 'true', TRUSTED_PROXY_HOPS: '2' };
  const instanceA = await startTestService(t, env, { database });
  const instanceB = await startTestService(t, env, { database });
  // Both instances connect to Redis in the background; wait until they have, so that no request
  // takes the per-instance fallback.
  await eventually(
    () => connectedClients(redis),
    (count) => count >= clientsBefore + 2,
    5_000,
  );
  const apiA = createApi(instanceA.url);
  const apiB = createApi(instanceB.url);
  // Registered as yet another client, so that the budget under test starts untouched (and so
  // that 127.0.0.1's budget in a shared Redis is never involved).
  const account = { email: uniqueEmail('redis'), password: `pw-${randomBytes(12).toString('base64url')}` };
  const registered = await apiA.post('/auth/register', { ...account, displayName: 'Redis' }, undefined, forwardedFor(randomClientIp()));
  t.is(registered.status, 201);

  const headers = () => forwardedFor(clientIp);
  const remaining: Array<string | null> = [];
  for (const api of [apiA, apiA, apiA, apiB, apiB]) {
    const response = await api.post('/auth/login', { email: account.email, password: account.password }, undefined, headers());
    t.is(response.status, 200);
    remaining.push(response.headers.get('ratelimit-remaining'));
    const reset = Number(response.headers.get('ratelimit-reset'));
    t.true(reset >= 1 && reset <= 30, `RateLimit-Reset ${reset} is delta seconds`);
  }
  t.deepEqual(remaining, ['4', '3', '2', '1', '0'], 'one budget counted across both instances');
  assertRateLimited(t, await apiB.post('/auth/login', { email: account.email, password: account.password }, undefined, headers()), '6th on B');
  assertRateLimited(t, await apiA.post('/auth/login', { email: account.email, password: account.password }, undefined, headers()), '7th on A');
  t.true((await redis.exists(key)) === 1, 'the counter lives in Redis');

  for (const [name, instance] of [
    ['A', instanceA],
    ['B', instanceB],
  ] as const) {
    t.false(
      instance.logs.lines.some((line) => line.includes('Redis unavailable')),
      `instance ${name} never fell back to its memory budget`,
    );
  }
  // One rate_limited event per instance at most (each instance notifies once per window).
  const events = await eventually(
    () => auditRows(instanceA, "event_type = 'rate_limited'"),
    (rows) => rows.length > 0,
  );
  t.true(events.length >= 1 && events.length <= 2);
});

test('per-IP limit with Redis unreachable: logins still work (no 500) and each instance applies its own budget', async (t) => {
  const deadPort = await freePort();
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const env = { ...RATE, REDIS_URL: `redis://127.0.0.1:${deadPort}` };
  const instanceA = await startTestService(t, env, { database });
  const instanceB = await startTestService(t, env, { database });
  const apiA = createApi(instanceA.url);
  const apiB = createApi(instanceB.url);

  const account = await apiA.register({ email: uniqueEmail('fallback') }); // request 1 on A
  const statusesA: number[] = [];
  for (let i = 0; i < 4; i += 1) statusesA.push((await apiA.post('/auth/login', { email: account.email, password: account.password })).status);
  t.deepEqual(statusesA, [200, 200, 200, 200], 'logins work while Redis is down');
  assertRateLimited(t, await apiA.post('/auth/login', { email: account.email, password: account.password }), 'A over its own budget');

  const statusesB: number[] = [];
  for (let i = 0; i < 5; i += 1) statusesB.push((await apiB.post('/auth/login', { email: account.email, password: account.password })).status);
  t.deepEqual(statusesB, [200, 200, 200, 200, 200], "B has its own budget, untouched by A's requests");
  assertRateLimited(t, await apiB.post('/auth/login', { email: account.email, password: account.password }), 'B over its own budget');

  for (const instance of [instanceA, instanceB]) {
    const warnings = instance.logs.entries().filter((entry) => entry.message === 'Redis unavailable; rate limiting per instance');
    t.is(warnings.length, 1, 'the fallback is logged once, not per request');
    t.false(
      instance.logs.entries().some((entry) => (entry.httpRequest as { status?: number } | undefined)?.status === 500),
      'no request failed',
    );
  }
});

withRedisServer('per-IP limit when Redis goes away mid-flight: requests keep working on the memory budget and return to Redis after it is back', async (t) => {
  const first = await startThrowawayRedis(t);
  const service = await startTestService(t, { ...RATE, AUTH_RATE_LIMIT_MAX: '50', REDIS_URL: first.url });
  const api = createApi(service.url);
  const redis = redisClient(t, first.url);
  await eventually(
    () => connectedClients(redis),
    (count) => count >= 2,
    5_000,
  );
  const account = await api.register({ email: uniqueEmail('midflight') });
  t.is((await api.post('/auth/login', { email: account.email, password: account.password })).status, 200);
  t.is(await redis.exists('karaxas:rl:auth:127.0.0.1'), 1, 'counting in Redis');
  redis.disconnect();

  await first.stop();
  const statuses: number[] = [];
  for (let i = 0; i < 3; i += 1) statuses.push((await api.post('/auth/login', { email: account.email, password: account.password })).status);
  t.deepEqual(statuses, [200, 200, 200], 'logins keep working without Redis');
  t.true(service.logs.lines.some((line) => line.includes('Redis unavailable; rate limiting per instance')));

  // The same port again: ioredis reconnects by itself and the limiter goes back to the shared budget.
  const child = spawn('redis-server', ['--port', String(first.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  await waitForRedis(first.url);
  const again = redisClient(t, first.url);
  await eventually(
    async () => {
      await api.post('/auth/login', { email: account.email, password: account.password });
      return again.exists('karaxas:rl:auth:127.0.0.1');
    },
    (exists) => exists === 1,
    10_000,
  );
  t.is(await again.exists('karaxas:rl:auth:127.0.0.1'), 1, 'counting in Redis again');
  t.true(service.logs.lines.some((line) => line.includes('rate limiting back on the shared Redis budget')));
});
