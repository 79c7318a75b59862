/**
 * Redis killed under traffic (REDIS_URL set). Two instances share a throwaway `redis-server`
 * (its own child process on a free port: a shared CI Redis must not be killed) and a stream of
 * concurrent credential requests; the Redis process is then SIGKILLed mid-stream:
 * - no request fails (no 5xx) or hangs, including those in flight at the kill;
 * - the per-IP limit falls back to each instance's own memory budget, and each instance logs
 *   the fallback once;
 * - when Redis is back on the same port the instances return to the shared budget and say so.
 * Without a redis-server binary the same fallback is asserted against an unreachable REDIS_URL.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { Redis } from 'ioredis';
import { createTestDatabase } from './support/database.js';
import { startTestService, type TestService } from './support/service.js';

const BUDGET = 150;
/** No request may take longer than this, Redis up or down (ioredis connectTimeout is 2 s). */
const DEADLINE_MS = 3_000;
const FALLBACK_MESSAGE = 'Redis unavailable; rate limiting per instance';
const RECOVERY_MESSAGE = 'rate limiting back on the shared Redis budget';

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const hasRedisServer = () => !spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error;

/** A `redis-server` child on `port`, resolved once it answers PING. */
const startRedis = async (t: ExecutionContext, port: number) => {
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      if ((await probe.ping()) === 'PONG') break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    } finally {
      probe.disconnect();
    }
    await sleep(50);
  }
  return { child, exited };
};

type Outcome = { instance: string; status: number; code?: string; ms: number; remaining: number; afterKill: boolean };

/** A throttled request that does no hashing: the body fails validation after the limiter counted it. */
const probe = async (service: TestService, name: string, afterKill: boolean): Promise<Outcome> => {
  const started = performance.now();
  try {
    const response = await fetch(`${service.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      signal: AbortSignal.timeout(DEADLINE_MS + 5_000),
    });
    const body = (await response.json()) as { error?: { code?: string } };
    return { instance: name, status: response.status, code: body.error?.code, ms: performance.now() - started, remaining: Number(response.headers.get('ratelimit-remaining')), afterKill };
  } catch {
    return { instance: name, status: 0, ms: performance.now() - started, remaining: Number.NaN, afterKill };
  }
};

const logEntries = (service: TestService, message: string) => service.logs.entries().filter((entry) => entry.message === message);
const serverErrors = (service: TestService) =>
  service.logs.entries().filter((entry) => ((entry.httpRequest as { status?: number } | undefined)?.status ?? 0) >= 500);

test('Redis killed mid-traffic: no failed or hung request, per-instance budgets, logged once, shared again after it returns', async (t) => {
  t.timeout(60_000);
  const redisPort = await freePort();
  const haveRedis = hasRedisServer();
  if (!haveRedis) t.log('no redis-server binary on PATH: asserting the fallback against an unreachable REDIS_URL instead');
  let redis = haveRedis ? await startRedis(t, redisPort) : undefined;

  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, AUTH_RATE_LIMIT_MAX: String(BUDGET), AUTH_RATE_LIMIT_WINDOW_SECONDS: '60', LOG_LEVEL: 'info' };
  const a = await startTestService(t, env, { database });
  const b = await startTestService(t, env, { database });
  const outcomes: Outcome[] = [];
  let killed = !haveRedis;

  if (redis) {
    // Wait until both instances have connected, so that no request below takes the fallback early.
    const watcher = new Redis(`redis://127.0.0.1:${redisPort}`);
    watcher.on('error', () => undefined);
    const deadline = Date.now() + 5_000;
    while ((String(await watcher.client('LIST')).match(/^id=/gm) ?? []).length < 3 && Date.now() < deadline) await sleep(50);
    watcher.disconnect();

    // Shared budget: 5 on A and 5 on B count against one counter.
    for (let i = 0; i < 5; i += 1) outcomes.push(await probe(a, 'A', false), await probe(b, 'B', false));
    t.is(Math.min(...outcomes.map((o) => o.remaining)), BUDGET - 10, 'one budget counted across both instances');
    t.deepEqual(logEntries(a, FALLBACK_MESSAGE).length + logEntries(b, FALLBACK_MESSAGE).length, 0);

    // A concurrent stream on both instances; Redis dies in the middle of it.
    let streaming = true;
    const stream = async (service: TestService, name: string) => {
      while (streaming) {
        outcomes.push(await probe(service, name, killed));
        await sleep(20);
      }
    };
    const streams = [stream(a, 'A'), stream(a, 'A'), stream(b, 'B'), stream(b, 'B')];
    await sleep(250);
    redis.child.kill('SIGKILL');
    killed = true;
    await redis.exited;
    await sleep(500);
    streaming = false;
    await Promise.all(streams);
  }

  // Each instance now has its own budget: exhaust A; B still has room.
  let sentToA = 0;
  for (; sentToA < BUDGET + 5; sentToA += 1) {
    const outcome = await probe(a, 'A', killed);
    outcomes.push(outcome);
    if (outcome.status === 429) break;
  }
  t.true(sentToA < BUDGET + 5, 'instance A limits on its own once Redis is gone');
  const onB = await probe(b, 'B', killed);
  outcomes.push(onB);
  t.is(onB.status, 400, `B's budget is its own, untouched by A's (${outcomes.filter((o) => o.instance === 'B' && o.afterKill).length} requests on B since the kill)`);

  t.deepEqual(outcomes.filter((o) => o.status === 0 || o.status >= 500).map((o) => `${o.instance} ${o.status} ${o.code}`), [], 'no request failed');
  t.deepEqual(outcomes.filter((o) => o.ms > DEADLINE_MS).map((o) => `${o.instance} ${Math.round(o.ms)} ms`), [], `no request took over ${DEADLINE_MS} ms`);
  t.deepEqual(
    outcomes.filter((o) => !(o.status === 400 && o.code === 'validation_failed') && !(o.status === 429 && o.code === 'rate_limited')).map((o) => `${o.status} ${o.code}`),
    [],
    'every answer is the validation error or the rate limit',
  );
  for (const [name, service] of [['A', a] as const, ['B', b] as const]) {
    t.is(logEntries(service, FALLBACK_MESSAGE).length, 1, `instance ${name} logs the fallback once`);
    t.deepEqual(serverErrors(service), [], `instance ${name} answered no 5xx`);
  }
  t.log(`${outcomes.length} requests, ${outcomes.filter((o) => o.afterKill).length} after Redis went away; slowest ${Math.round(Math.max(...outcomes.map((o) => o.ms)))} ms`);

  if (haveRedis) {
    // Back on the same port: ioredis reconnects by itself and the limiter returns to the shared budget.
    redis = await startRedis(t, redisPort);
    const deadline = Date.now() + 15_000;
    while (logEntries(b, RECOVERY_MESSAGE).length === 0) {
      if (Date.now() > deadline) {
        t.fail('instance B did not return to the shared Redis budget within 15 s');
        break;
      }
      await probe(b, 'B', true);
      await sleep(100);
    }
    const checker = new Redis(`redis://127.0.0.1:${redisPort}`);
    checker.on('error', () => undefined);
    t.is(await checker.exists('karaxas:rl:auth:127.0.0.1'), 1, 'counting in Redis again');
    checker.disconnect();
  }
});
