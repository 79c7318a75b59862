/**
 * `npm run soak -- --minutes N [--rate R] [--warmup S] [--pool P] [--users U]` — not part of CI.
 *
 * Runs two real instances (`app/main.ts` in child processes) on a throwaway embedded PostgreSQL
 * and drives mixed, realistic traffic at a fixed rate (open model: requests start on schedule
 * whatever the latency) across both: register, login, me, sessions, refresh, ws tickets with
 * websocket connects, chat sends and history reads, the public release policy, logout; plus
 * listeners that stay connected to the chat channels. Then it reports, and exits 1 unless:
 * - there was no 5xx and no failed connection;
 * - each instance's resident memory grew at most 10% from the end of the warm-up to the end;
 * - database connections stayed within 2 × DB_POOL_SIZE (+ one listener connection per instance);
 * and it reports each instance's event-loop delay p99 (the instance samples its own loop).
 *
 * `--instance` is internal: the child entry that samples its event loop, then loads app/main.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { WebSocket } from 'ws';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../app/db/embedded.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---- the instance entry -----------------------------------------------------------------------

const runInstance = async () => {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  setInterval(() => {
    process.stdout.write(
      `${JSON.stringify({ soakMetrics: { eventLoopDelayP99Ms: histogram.percentile(99) / 1e6, eventLoopDelayMaxMs: histogram.max / 1e6, rssBytes: process.memoryUsage.rss() } })}\n`,
    );
    histogram.reset();
  }, 1_000).unref();
  await import('../app/main.js');
};

// ---- the driver -------------------------------------------------------------------------------

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const percentile = (values: readonly number[], p: number) => {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};
const mean = (values: readonly number[]) => values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

type Instance = {
  name: string;
  url: string;
  child: ChildProcess;
  exited: Promise<void>;
  loopP99: Array<{ at: number; ms: number }>;
  rss: Array<{ at: number; bytes: number }>;
  errorLines: string[];
};

const startInstance = async (name: string, env: Record<string, string>): Promise<Instance> => {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/soak.ts', '--instance'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const instance: Instance = {
    name,
    url: `http://127.0.0.1:${port}`,
    child,
    exited: new Promise((resolve) => child.once('exit', () => resolve())),
    loopP99: [],
    rss: [],
    errorLines: [],
  };
  let listening = false;
  let buffered = '';
  const onLine = (line: string) => {
    if (line.includes('"soakMetrics"')) {
      const metrics = (JSON.parse(line) as { soakMetrics: { eventLoopDelayP99Ms: number } }).soakMetrics;
      instance.loopP99.push({ at: Date.now(), ms: metrics.eventLoopDelayP99Ms });
    } else if (/"severity":"(ERROR|CRITICAL|ALERT|EMERGENCY)"/.test(line)) {
      instance.errorLines.push(line.slice(0, 500));
    }
  };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // LOG_LEVEL=error hides the "listening" line: poll /healthz instead.
  const deadline = Date.now() + 60_000;
  while (!listening) {
    if (child.exitCode !== null) throw new Error(`instance ${name} exited at boot: ${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`instance ${name} did not listen within 60 s: ${stderr}`);
    }
    listening = await fetch(`${instance.url}/healthz`).then(
      (response) => response.ok,
      () => false,
    );
    if (!listening) await sleep(100);
  }
  return instance;
};

const rssOf = async (pid: number) => {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kib = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1]);
  return Number.isFinite(kib) ? kib * 1024 : Number.NaN;
};

type Pair = { accessToken: string; refreshToken: string; sessionId: string };
type User = { email: string; password: string; pair?: Pair; home: number };
type Result = { op: string; status: number; ms: number; at: number };

const main = async () => {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '5' },
      rate: { type: 'string', default: '40' },
      warmup: { type: 'string' },
      pool: { type: 'string', default: '10' },
      users: { type: 'string', default: '60' },
    },
    strict: true,
  });
  const minutes = Number(values.minutes);
  const rate = Number(values.rate);
  const poolSize = Number(values.pool);
  const userCount = Number(values.users);
  const durationMs = minutes * 60_000;
  const warmupMs = values.warmup === undefined ? Math.min(60_000, durationMs * 0.2) : Number(values.warmup) * 1000;
  if (![minutes, rate, poolSize, userCount, warmupMs].every((value) => Number.isFinite(value) && value > 0) || warmupMs >= durationMs) {
    process.stderr.write('usage: npm run soak -- --minutes N [--rate R] [--warmup S] [--pool P] [--users U] (warm-up shorter than the run)\n');
    process.exit(2);
  }

  const log = (line: string) => process.stdout.write(`${line}\n`);
  log(`soak: ${minutes} min at ${rate} req/s over two instances (warm-up ${Math.round(warmupMs / 1000)} s, DB_POOL_SIZE ${poolSize}, ${userCount} users)`);

  const scratch = await mkdtemp(join(tmpdir(), 'karaxas-soak-'));
  await chmod(scratch, 0o711);
  let database: EmbeddedDatabase | undefined;
  const instances: Instance[] = [];
  const sockets = new Set<WebSocket>();
  const cleanup = async () => {
    for (const socket of sockets) socket.terminate();
    for (const instance of instances) if (instance.child.exitCode === null) instance.child.kill('SIGTERM');
    await Promise.race([Promise.all(instances.map((instance) => instance.exited)), sleep(15_000)]);
    for (const instance of instances) if (instance.child.exitCode === null) instance.child.kill('SIGKILL');
    await database?.stop().catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

  try {
    database = await startEmbeddedDatabase({ directory: join(scratch, 'pg'), port: await freePort(), persistent: false, settings: { max_connections: '200' } });
    const env = {
      NODE_ENV: 'test',
      DATABASE_URL: database.url('postgres'),
      DB_SSLMODE: 'disable',
      DB_POOL_SIZE: String(poolSize),
      ALLOW_PLAIN_ENV_SECRETS: 'true',
      JWT_SECRET: randomBytes(48).toString('base64url'),
      OPS_API_TOKEN: randomBytes(32).toString('base64url'),
      TOTP_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      // One client address for all the traffic: budgets sized for the run, not for abuse.
      AUTH_RATE_LIMIT_MAX: '10000',
      CHAT_RATE_LIMIT_MAX: '1000',
      CHAT_RATE_LIMIT_WINDOW_SECONDS: '1',
      LOG_LEVEL: 'error',
    };
    instances.push(await startInstance('A', env));
    instances.push(await startInstance('B', env));

    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const results: Result[] = [];
    let failedConnections = 0;
    const call = (op: string, instance: Instance, method: string, path: string, body?: unknown, token?: string) =>
      new Promise<{ status: number; json: unknown }>((resolve) => {
        const started = performance.now();
        const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
        const req = request(
          `${instance.url}${path}`,
          {
            method,
            agent,
            headers: {
              ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
              ...(token ? { authorization: `Bearer ${token}` } : {}),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              results.push({ op, status: res.statusCode ?? 0, ms: performance.now() - started, at: Date.now() });
              let json: unknown;
              try {
                json = text ? JSON.parse(text) : undefined;
              } catch {
                json = undefined;
              }
              resolve({ status: res.statusCode ?? 0, json });
            });
          },
        );
        req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
        req.on('error', () => {
          failedConnections += 1;
          results.push({ op, status: 0, ms: performance.now() - started, at: Date.now() });
          resolve({ status: 0, json: undefined });
        });
        req.end(payload);
      });

    // ---- users and listeners ----
    const users: User[] = [];
    const newUser = async (home: number) => {
      const user: User = { email: `soak-${randomBytes(6).toString('hex')}@example.test`, password: `pw-${randomBytes(12).toString('base64url')}`, home };
      const registered = await call('register', instances[home]!, 'POST', '/auth/register', { email: user.email, password: user.password, displayName: 'Soak' });
      if (registered.status === 201) users.push(user);
      return user;
    };
    const login = async (user: User, instance: Instance) => {
      const signedIn = await call('login', instance, 'POST', '/auth/login', { email: user.email, password: user.password });
      if (signedIn.status === 200) user.pair = signedIn.json as Pair;
    };
    for (let i = 0; i < userCount; i += 1) await newUser(i % 2);
    for (const user of users) await login(user, instances[user.home]!);

    let received = 0;
    const listen = async (instance: Instance, user: User, channel: string) => {
      if (!user.pair) await login(user, instance);
      const ticket = await call('ws-ticket', instance, 'POST', '/auth/ws-ticket', undefined, user.pair?.accessToken);
      if (ticket.status !== 201) return;
      const socket = new WebSocket(`${instance.url.replace('http', 'ws')}/ws?ticket=${(ticket.json as { ticket: string }).ticket}`);
      sockets.add(socket);
      socket.on('open', () => socket.send(JSON.stringify({ type: 'chat.join', channel })));
      socket.on('message', () => (received += 1));
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    };
    // Listeners get their own accounts, so that the traffic's logouts never end them.
    for (const [index, instance] of instances.entries()) {
      for (const channel of ['soak-0', 'soak-1', 'soak-2']) {
        const listener: User = { email: `soak-listener-${randomBytes(6).toString('hex')}@example.test`, password: `pw-${randomBytes(12).toString('base64url')}`, home: index };
        await call('register', instance, 'POST', '/auth/register', { email: listener.email, password: listener.password, displayName: 'Listener' });
        await listen(instance, listener, channel);
      }
    }

    // ---- the mix ----
    const pick = () => users[Math.floor(Math.random() * users.length)]!;
    const withSession = async (user: User, instance: Instance, work: (pair: Pair) => Promise<void>) => {
      if (!user.pair) await login(user, instance);
      if (user.pair) await work(user.pair);
    };
    const operations: Array<[number, (instance: Instance) => Promise<void>]> = [
      [25, (instance) => withSession(pick(), instance, async (pair) => void (await call('me', instance, 'GET', '/auth/me', undefined, pair.accessToken)))],
      [8, (instance) => withSession(pick(), instance, async (pair) => void (await call('sessions', instance, 'GET', '/auth/sessions', undefined, pair.accessToken)))],
      [
        15,
        async (instance) => {
          const user = pick();
          await withSession(user, instance, async (pair) => {
            const rotated = await call('refresh', instance, 'POST', '/auth/refresh', { refreshToken: pair.refreshToken });
            if (rotated.status === 200) user.pair = rotated.json as Pair;
            else user.pair = undefined;
          });
        },
      ],
      [
        15,
        (instance) =>
          withSession(pick(), instance, async (pair) => {
            const channel = `soak-${Math.floor(Math.random() * 3)}`;
            await call('chat-send', instance, 'POST', `/chat/channels/${channel}/messages`, { text: `soak ${Date.now()}`, clientMsgId: randomBytes(8).toString('hex') }, pair.accessToken);
          }),
      ],
      [10, (instance) => withSession(pick(), instance, async (pair) => void (await call('chat-read', instance, 'GET', `/chat/channels/soak-${Math.floor(Math.random() * 3)}/messages?limit=20`, undefined, pair.accessToken)))],
      [5, async (instance) => void (await call('release-policy', instance, 'GET', '/release/policy?platform=ios&version=1.0.0'))],
      [
        5,
        (instance) =>
          withSession(pick(), instance, async (pair) => {
            const ticket = await call('ws-ticket', instance, 'POST', '/auth/ws-ticket', undefined, pair.accessToken);
            if (ticket.status !== 201) return;
            await new Promise<void>((resolve) => {
              const started = performance.now();
              const socket = new WebSocket(`${instance.url.replace('http', 'ws')}/ws?ticket=${(ticket.json as { ticket: string }).ticket}`);
              let finished = false;
              const done = (status: number) => {
                if (finished) return;
                finished = true;
                clearTimeout(timer);
                if (status === 0) failedConnections += 1;
                results.push({ op: 'ws-session', status, ms: performance.now() - started, at: Date.now() });
                socket.terminate();
                resolve();
              };
              const timer = setTimeout(() => done(0), 10_000);
              socket.on('open', () => socket.send(JSON.stringify({ type: 'ping' })));
              socket.on('message', () => {
                socket.close(1000);
                done(101);
              });
              socket.on('unexpected-response', (_req, response) => done(response.statusCode ?? 0));
              socket.on('error', () => done(0));
            });
          }),
      ],
      [7, async (instance) => void login(pick(), instance)],
      [
        5,
        async (instance) => {
          if (users.length < userCount * 5) await newUser(instances.indexOf(instance));
          else await login(pick(), instance);
        },
      ],
      [
        3,
        async (instance) => {
          const user = pick();
          if (!user.pair) return;
          const pair = user.pair;
          user.pair = undefined;
          await call('logout', instance, 'POST', '/auth/logout', undefined, pair.accessToken);
        },
      ],
    ];
    const totalWeight = operations.reduce((sum, [weight]) => sum + weight, 0);
    const chooseOperation = () => {
      let roll = Math.random() * totalWeight;
      for (const [weight, operation] of operations) {
        roll -= weight;
        if (roll < 0) return operation;
      }
      return operations[0]![1];
    };

    // ---- sampling ----
    const monitor = new pg.Client({ connectionString: database.url('postgres') });
    await monitor.connect();
    const connectionSamples: Array<{ at: number; app: number; byName: Record<string, number> }> = [];
    const sample = async () => {
      for (const instance of instances) instance.rss.push({ at: Date.now(), bytes: await rssOf(instance.child.pid!) });
      const { rows } = await monitor.query<{ name: string; n: number }>(
        "SELECT coalesce(nullif(application_name, ''), '(pool)') AS name, count(*)::int AS n FROM pg_stat_activity WHERE datname = 'postgres' AND pid <> pg_backend_pid() GROUP BY 1",
      );
      const byName = Object.fromEntries(rows.map((row) => [row.name, row.n]));
      connectionSamples.push({ at: Date.now(), app: rows.reduce((sum, row) => sum + row.n, 0), byName });
    };

    const started = Date.now();
    const warmupEnds = started + warmupMs;
    const ends = started + durationMs;
    let inFlight = 0;
    let skipped = 0;
    let scheduled = 0;
    const sampler = setInterval(() => void sample().catch(() => undefined), 5_000);
    const reporter = setInterval(() => {
      const recent = results.filter((result) => result.at > Date.now() - 30_000);
      log(
        `  ${Math.round((Date.now() - started) / 1000)} s: ${results.length} requests, ${(recent.length / 30).toFixed(1)} req/s, ` +
          `${results.filter((result) => result.status >= 500).length} 5xx, p99 ${percentile(recent.map((result) => result.ms), 99).toFixed(0)} ms, ` +
          `RSS ${instances.map((instance) => mib(instance.rss.at(-1)?.bytes ?? Number.NaN)).join(' / ')}, DB connections ${connectionSamples.at(-1)?.app ?? '-'}`,
      );
    }, 30_000);

    // Fixed-rate schedule: the n-th request starts at started + n / rate seconds.
    while (Date.now() < ends) {
      const due = started + (scheduled * 1000) / rate;
      if (due > Date.now()) await sleep(due - Date.now());
      scheduled += 1;
      if (inFlight >= 400) {
        skipped += 1;
        continue;
      }
      inFlight += 1;
      const instance = instances[scheduled % 2]!;
      void chooseOperation()(instance).finally(() => (inFlight -= 1));
    }
    clearInterval(sampler);
    clearInterval(reporter);
    while (inFlight > 0) await sleep(50);
    await sample();
    await monitor.end();

    // ---- the report ----
    const measured = results.filter((result) => result.at >= warmupEnds);
    const byOp = new Map<string, Result[]>();
    for (const result of measured) byOp.set(result.op, [...(byOp.get(result.op) ?? []), result]);
    const serverErrors = results.filter((result) => result.status >= 500);
    const statusCounts = Object.fromEntries(
      [...new Set(results.map((result) => result.status))].sort((a, b) => a - b).map((status) => [status, results.filter((result) => result.status === status).length]),
    );
    const connectionLimit = 2 * poolSize + instances.length;
    const maxConnections = Math.max(...connectionSamples.map((entry) => entry.app));
    const maxSample = connectionSamples.find((entry) => entry.app === maxConnections);
    const window = 20_000;
    const memory = instances.map((instance) => {
      const first = instance.rss.filter((entry) => entry.at >= warmupEnds && entry.at < warmupEnds + window).map((entry) => entry.bytes);
      const last = instance.rss.filter((entry) => entry.at >= ends - window).map((entry) => entry.bytes);
      const start = mean(first);
      const end = mean(last);
      return { name: instance.name, start, end, growth: (end - start) / start };
    });
    const loops = instances.map((instance) => {
      const values = instance.loopP99.filter((entry) => entry.at >= warmupEnds).map((entry) => entry.ms);
      return { name: instance.name, median: percentile(values, 50), p99: percentile(values, 99), worst: Math.max(...values) };
    });

    const checks = [
      { ok: serverErrors.length === 0 && failedConnections === 0, text: `zero 5xx: ${serverErrors.length} 5xx, ${failedConnections} failed connections` },
      ...memory.map((entry) => ({
        ok: entry.growth <= 0.1,
        text: `RSS ${entry.name} after warm-up ${mib(entry.start)} → end ${mib(entry.end)} (${(entry.growth * 100).toFixed(1)}%, limit 10%)`,
      })),
      { ok: maxConnections <= connectionLimit, text: `database connections: max ${maxConnections} (limit 2 × DB_POOL_SIZE + ${instances.length} listeners = ${connectionLimit}) ${JSON.stringify(maxSample?.byName ?? {})}` },
      { ok: instances.every((instance) => instance.errorLines.length === 0), text: `error log lines: ${instances.map((instance) => `${instance.name} ${instance.errorLines.length}`).join(', ')}` },
    ];
    const seconds = (Date.now() - started) / 1000;
    log('');
    log(`Soak summary — ${minutes} min, target ${rate} req/s, two instances, DB_POOL_SIZE ${poolSize}`);
    log(`  requests: ${results.length} (${(results.length / seconds).toFixed(1)}/s achieved), skipped (over 400 in flight): ${skipped}; statuses ${JSON.stringify(statusCounts)}`);
    log(`  websocket listeners: ${sockets.size} connected at the end, ${received} frames received`);
    log('  latency after warm-up (ms):');
    for (const [op, list] of [...byOp].sort(([a], [b]) => a.localeCompare(b))) {
      const ms = list.map((result) => result.ms);
      log(`    ${op.padEnd(15)} n=${String(list.length).padStart(6)}  p50 ${percentile(ms, 50).toFixed(1).padStart(7)}  p99 ${percentile(ms, 99).toFixed(1).padStart(7)}  max ${Math.max(...ms).toFixed(1).padStart(8)}`);
    }
    for (const loop of loops) {
      log(`  event-loop delay p99 ${loop.name} (1 s windows after warm-up): median ${loop.median.toFixed(1)} ms, p99 ${loop.p99.toFixed(1)} ms, worst ${loop.worst.toFixed(1)} ms`);
    }
    for (const check of checks) log(`  ${check.ok ? 'PASS' : 'FAIL'}  ${check.text}`);
    for (const instance of instances) for (const line of instance.errorLines.slice(0, 5)) log(`    ${instance.name}: ${line}`);
    const ok = checks.every((check) => check.ok);
    log(ok ? 'RESULT: PASS' : 'RESULT: FAIL');
    agent.destroy();
    await cleanup();
    process.exit(ok ? 0 : 1);
  } catch (error) {
    process.stderr.write(`soak failed: ${error instanceof Error ? error.message : String(error)}\n`);
    await cleanup();
    process.exit(1);
  }
};

if (process.argv.includes('--instance')) await runInstance();
else await main();
