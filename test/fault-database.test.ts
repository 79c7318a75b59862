/**
 * PostgreSQL stopped under traffic. The service runs on its own embedded PostgreSQL (persistent,
 * so it can be stopped and started again on the same folder and port) while clients register,
 * sign in and rotate refresh tokens in a loop:
 * - while the database is down every request ends within a deadline, failures are 503
 *   `service_unavailable` envelopes (never a 500, never an internal), and /readyz is 503;
 * - after the database is back the same process recovers (no restart), traffic succeeds again,
 *   the LISTEN/NOTIFY listener re-subscribes (a socket opened before the outage receives a chat
 *   message sent after it), and every acknowledged write is in the database.
 *
 * PostgreSQL frozen (SIGSTOP: connections stay open, nothing answers, nothing is refused — what a
 * network partition or a stuck failover looks like):
 * - with no connection left in the pool, requests fail on the connect timeout;
 * - with idle connections held by the pool (the common case under traffic), requests that take
 *   one fail on the client-side query bound (app/db/driver.ts), their connections are closed,
 *   and every answer is a 503 envelope within a stated deadline; /healthz stays 200; after
 *   SIGCONT the same process serves again and no request was ever a 500; a shutdown during a
 *   freeze ends within its deadline.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../app/db/embedded.js';
import { clientQueryTimeoutMs } from '../app/db/pool.js';
import { createApi } from './support/api.js';
import { openSocket, signedInPlayer } from './support/realtime.js';
import { startTestService } from './support/service.js';

const CONNECT_TIMEOUT_MS = 1_000;
/** No request may take longer than this, database up or down. */
const DEADLINE_MS = CONNECT_TIMEOUT_MS + 2_500;

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

type Outcome = { op: string; phase: string; status: number; code?: string; ms: number; startedAt: number; endedAt: number; text: string };

const internals = /\bat [\w$.<>]+ \(|node_modules|\.ts:\d+|SELECT |INSERT |relation "|ECONNREFUSED|slonik|postgres/i;

// Serial: it runs first and alone. Its traffic (argon2 on every register and login) must flow
// before the outage, which the other tests' own PostgreSQL servers and warm-up slowed too much
// on a 2-core machine.
test.serial('PostgreSQL stopped mid-traffic: bounded 503s, /readyz 503, recovery without a restart, no acknowledged write lost', async (t) => {
  t.timeout(90_000);
  const scratch = await mkdtemp(join(tmpdir(), 'karaxas-fault-db-'));
  // World-traversable only: the embedded server's OS user must reach its data when we are root.
  await chmod(scratch, 0o711);
  const directory = join(scratch, 'pg');
  const port = await freePort();
  let database: EmbeddedDatabase | undefined = await startEmbeddedDatabase({ directory, port, persistent: true });
  t.teardown(async () => {
    await database?.stop().catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  });
  const url = database.url('postgres');
  const service = await startTestService(
    t,
    { DB_SSLMODE: 'disable', DB_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS), LOG_LEVEL: 'info' },
    { database: { name: 'postgres', url, drop: async () => undefined } },
  );
  const api = createApi(service.url);

  // A websocket in a chat channel from before the outage: it must hear messages sent after it.
  // On failure, show what the service logged as errors (the answers only say internal_error).
  t.teardown(() => {
    for (const line of service.logs.lines.filter((entry) => entry.includes('"severity":"ERROR"')).slice(0, 5)) t.log(line.slice(0, 1_500));
  });
  const listener = await signedInPlayer(api, 'Listener');
  const speaker = await signedInPlayer(api, 'Speaker');
  const socket = await openSocket(api, service.url, listener.token);
  t.teardown(() => socket.close());
  await socket.join('fault-db');

  let phase = 'before';
  const outcomes: Outcome[] = [];
  const acknowledged = { users: [] as string[], sessions: [] as string[], refreshTokens: [] as string[] };
  const call = async (op: string, method: string, path: string, body?: unknown, token?: string) => {
    const started = performance.now();
    const startedAt = Date.now();
    const at = phase;
    let status = 0;
    let text = '';
    try {
      const response = await fetch(`${service.url}${path}`, {
        method,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(DEADLINE_MS + 5_000),
      });
      status = response.status;
      text = await response.text();
    } catch (error) {
      text = String(error);
    }
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    const code = (json as { error?: { code?: string } } | undefined)?.error?.code;
    outcomes.push({ op, phase: at, status, code, ms: performance.now() - started, startedAt, endedAt: Date.now(), text: text.slice(0, 300) });
    return { status, json };
  };

  let stopping = false;
  // A failed assertion ends the test at once: stop the workers then too, or they loop forever.
  t.teardown(() => {
    stopping = true;
  });
  const worker = async () => {
    while (!stopping) {
      const email = `fault-db-${randomBytes(6).toString('hex')}@example.test`;
      const password = `pw-${randomBytes(12).toString('base64url')}`;
      const registered = await call('register', 'POST', '/auth/register', { email, password, displayName: 'Fault' });
      if (registered.status !== 201) {
        await sleep(50);
        continue;
      }
      acknowledged.users.push((registered.json as { user: { id: string } }).user.id);
      let signedIn = await call('login', 'POST', '/auth/login', { email, password });
      while (signedIn.status === 503 && !stopping) {
        await sleep(50);
        signedIn = await call('login', 'POST', '/auth/login', { email, password });
      }
      if (signedIn.status !== 200) continue;
      const pair = signedIn.json as { refreshToken: string; accessToken: string; sessionId: string };
      acknowledged.sessions.push(pair.sessionId);
      acknowledged.refreshTokens.push(pair.refreshToken);
      let { refreshToken, accessToken } = pair;
      for (let rotations = 0; rotations < 4 && !stopping; ) {
        const rotated = await call('refresh', 'POST', '/auth/refresh', { refreshToken });
        if (rotated.status === 200) {
          ({ refreshToken, accessToken } = rotated.json as { refreshToken: string; accessToken: string });
          acknowledged.refreshTokens.push(refreshToken);
          rotations += 1;
        } else if (rotated.status === 503) {
          // Not acknowledged, so not rotated: the same token must still work later.
          await sleep(50);
        } else {
          break;
        }
      }
      await call('me', 'GET', '/auth/me', undefined, accessToken);
    }
  };
  const workers = Array.from({ length: 4 }, () => worker());

  await sleep(1_500);
  t.true(outcomes.filter((o) => o.status >= 200 && o.status < 300).length > 5, 'traffic flows before the outage');

  // ---- the outage ----
  phase = 'outage';
  const stoppedAt = Date.now();
  await database.stop();
  database = undefined;
  await sleep(2_500);
  const readyDuringOutage = await call('readyz', 'GET', '/readyz');
  t.is(readyDuringOutage.status, 503);
  t.is((readyDuringOutage.json as { error: { code: string } }).error.code, 'not_ready');
  t.is((await call('healthz', 'GET', '/healthz')).status, 200, 'the process itself stays live');

  // ---- recovery: same folder, same port, same process ----
  phase = 'restarting';
  database = await startEmbeddedDatabase({ directory, port, persistent: true });
  const recoveryStarted = Date.now();
  while ((await call('readyz', 'GET', '/readyz')).status !== 200) {
    if (Date.now() - recoveryStarted > 15_000) t.fail('/readyz did not recover within 15 s of the restart');
    await sleep(100);
  }
  t.log(`ready again ${Date.now() - recoveryStarted} ms after PostgreSQL restarted`);
  await sleep(500);
  phase = 'after';
  const afterAt = Date.now();
  await sleep(1_500);
  stopping = true;
  await Promise.all(workers);

  // ---- every answer ----
  const slow = outcomes.filter((o) => o.ms > DEADLINE_MS);
  t.deepEqual(slow.map((o) => `${o.op} ${o.phase} ${o.status} ${Math.round(o.ms)} ms`), [], `every request ends within ${DEADLINE_MS} ms`);
  t.deepEqual(outcomes.filter((o) => o.status === 0).map((o) => `${o.op} ${o.text}`), [], 'no request failed at the connection level');
  t.deepEqual(
    outcomes.filter((o) => o.status >= 500 && !(o.status === 503 && (o.code === 'service_unavailable' || (o.op === 'readyz' && o.code === 'not_ready')))).map((o) => `${o.op} ${o.status} ${o.text}`),
    [],
    'failures are 503 service_unavailable, never 500',
  );
  t.deepEqual(outcomes.filter((o) => internals.test(o.text)).map((o) => o.text), [], 'no internals in any answer');
  const outage = outcomes.filter((o) => o.phase === 'outage');
  t.true(outage.some((o) => o.status === 503 && o.code === 'service_unavailable'), 'the outage was hit by traffic');
  t.deepEqual(
    outcomes
      .filter((o) => (o.endedAt < stoppedAt || o.startedAt >= afterAt) && o.op !== 'readyz' && (o.status < 200 || o.status >= 300))
      .map((o) => `${o.phase} ${o.op} ${o.status} ${o.text}`),
    [],
    'everything succeeds before the outage and after recovery',
  );
  t.true(outcomes.filter((o) => o.startedAt >= afterAt && o.status >= 200 && o.status < 300).length > 5, 'traffic flows after recovery');
  t.false(outcomes.some((o) => o.code === 'refresh_token_reused'), 'no refresh answered 503 had in fact rotated');
  const worst = Math.max(...outage.map((o) => o.ms));
  t.log(`${outcomes.length} requests; during the outage ${outage.length}, ${outage.filter((o) => o.status === 503).length} answered 503, slowest ${Math.round(worst)} ms`);

  // ---- LISTEN/NOTIFY re-subscribed: the pre-outage socket hears a message sent now ----
  const sent = await api.post<{ id: string }>('/chat/channels/fault-db/messages', { text: 'after the outage' }, speaker.token);
  t.is(sent.status, 201);
  const heard = await socket.take((frame) => frame.type === 'chat.message' && frame.id === sent.body.id, 10_000);
  t.is(heard.text, 'after the outage');
  t.true(service.logs.lines.some((line) => line.includes('notification listener reconnected')), 'the listener says it reconnected');

  // ---- nothing acknowledged is missing ----
  const client = new pg.Client({ connectionString: database.url('postgres') });
  await client.connect();
  try {
    const users = await client.query<{ id: string }>('SELECT id FROM users WHERE id = ANY($1::uuid[])', [acknowledged.users]);
    t.is(users.rowCount, acknowledged.users.length, 'every 201 registration is stored');
    const sessions = await client.query<{ id: string }>('SELECT id FROM user_sessions WHERE id = ANY($1::uuid[])', [acknowledged.sessions]);
    t.is(sessions.rowCount, acknowledged.sessions.length, 'every 200 login session is stored');
    const hashes = acknowledged.refreshTokens.map((token) => createHash('sha256').update(token).digest());
    const tokens = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM refresh_tokens WHERE token_hash = ANY($1::bytea[])', [hashes]);
    t.is(Number(tokens.rows[0]!.n), acknowledged.refreshTokens.length, 'every refresh token handed out is stored');
    const forked = await client.query('SELECT session_id FROM refresh_tokens WHERE rotated_at IS NULL GROUP BY session_id HAVING count(*) > 1');
    t.is(forked.rowCount, 0);
    t.log(`acknowledged: ${acknowledged.users.length} users, ${acknowledged.sessions.length} sessions, ${acknowledged.refreshTokens.length} refresh tokens — all stored`);
  } finally {
    await client.end();
  }
});

/** The postmaster and its backends, by the pid file of the data folder. */
const postgresProcesses = async (dataDirectory: string): Promise<number[]> => {
  const postmaster = Number((await readFile(join(dataDirectory, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  const children = spawnSync('pgrep', ['-P', String(postmaster)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  return [postmaster, ...children];
};

/**
 * The service on its own embedded PostgreSQL, with `freeze()` (SIGSTOP to the postmaster and its
 * backends: connections stay open, nothing answers, nothing is refused — as in a network
 * partition) and `thaw()` (SIGCONT; also run at teardown).
 */
const startFreezableService = async (t: ExecutionContext, environment: Record<string, string>) => {
  const scratch = await mkdtemp(join(tmpdir(), 'karaxas-fault-db-frozen-'));
  await chmod(scratch, 0o711);
  const database = await startEmbeddedDatabase({ directory: join(scratch, 'pg'), port: await freePort(), persistent: false });
  let frozen: number[] = [];
  const thaw = () => {
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone already
      }
    }
    frozen = [];
  };
  t.teardown(async () => {
    thaw();
    await database.stop().catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  });
  const service = await startTestService(
    t,
    { DB_SSLMODE: 'disable', DB_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS), LOG_LEVEL: 'info', ...environment },
    { database: { name: 'postgres', url: database.url('postgres'), drop: async () => undefined } },
  );
  // Teardowns run last-registered first: thaw before the service shuts down, should a test fail
  // while the database is frozen.
  t.teardown(thaw);
  const freeze = async () => {
    frozen = await postgresProcesses(database.dataDirectory);
    for (const pid of frozen) process.kill(pid, 'SIGSTOP');
  };
  return { database, service, api: createApi(service.url), freeze, thaw };
};

/** Times `work`; one still unanswered after `limitMs` fails the test rather than hanging it. */
const timed = async <T>(work: () => Promise<T>, limitMs = 15_000) => {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${limitMs} ms: the request hangs`)), limitMs);
  });
  try {
    const result = await Promise.race([work(), hung]);
    return { result, ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
};

test('a frozen database (no refusal, no answer): /readyz and requests needing a connection answer 503 within the connect timeout', async (t) => {
  t.timeout(60_000);
  const { api, service, freeze, thaw } = await startFreezableService(t, {});
  const account = await api.register();
  await api.login(account);
  // The pool closes idle connections after 5 s: wait for it, so every request below needs a new one.
  await sleep(6_000);

  await freeze();
  const ready = await timed(() => api.get<{ error: { code: string } }>('/readyz'));
  t.is(ready.result.status, 503);
  t.is(ready.result.body.error.code, 'not_ready');
  t.true(ready.ms < CONNECT_TIMEOUT_MS + 1_500, `/readyz took ${Math.round(ready.ms)} ms`);
  const login = await timed(() => api.post<{ error: { code: string } }>('/auth/login', { email: account.email, password: account.password }));
  t.is(login.result.status, 503, JSON.stringify(login.result.body));
  t.is(login.result.body.error.code, 'service_unavailable');
  t.true(login.ms < 2 * CONNECT_TIMEOUT_MS + 2_000, `login took ${Math.round(login.ms)} ms`);
  t.is((await api.get('/healthz')).status, 200);
  t.false(service.logs.lines.some((line) => line.includes('"errorCode":"internal_error"')), 'no request was a 500');

  thaw();
  const deadline = Date.now() + 15_000;
  while ((await api.get('/readyz')).status !== 200) {
    if (Date.now() > deadline) t.fail('not ready again after the database thawed');
    await sleep(100);
  }
  t.is((await api.post('/auth/login', { email: account.email, password: account.password })).status, 200);
});

test('a database that freezes while the pool holds idle connections: 503s within the client query bound, then recovery without a restart', async (t) => {
  t.timeout(60_000);
  // The client gives a pool query statement timeout + connect timeout (app/db/pool.ts) to answer.
  const STATEMENT_TIMEOUT_MS = 1_000;
  const bound = clientQueryTimeoutMs({ statementTimeoutMs: STATEMENT_TIMEOUT_MS, connectTimeoutMs: CONNECT_TIMEOUT_MS });
  /**
   * The stated bound for every request during the freeze. A request meets at most two database
   * waits in a row: the release gate in front of /auth/login reads the policies and, when that
   * fails, goes on with its last known ones; then the handler's first query fails. Each wait ends
   * within the query bound (a frozen idle connection) or the connect timeout (a new one).
   */
  const deadline = 2 * bound + 1_000;
  const { api, service, database, freeze, thaw } = await startFreezableService(t, { DB_STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS) });
  const account = await api.register();
  const { accessToken } = await api.login(account);
  t.is((await api.get('/auth/me', accessToken)).status, 200);

  // Warm the pool: concurrent requests open several connections, which then sit idle in it
  // (for 5 s) — exactly what the requests below must not hang on.
  const admin = new pg.Client({ connectionString: database.url('postgres') });
  await admin.connect();
  const idlePoolConnections = async () => {
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND state = 'idle' AND pid <> pg_backend_pid() AND application_name <> 'karaxas-notify'`,
    );
    return rows[0]!.n;
  };
  let idle = 0;
  for (let round = 0; round < 10 && idle < 4; round += 1) {
    await Promise.all(Array.from({ length: 8 }, () => api.get('/readyz')));
    idle = await idlePoolConnections();
  }
  await admin.end();
  t.true(idle >= 4, `the pool holds ${idle} idle connections`);

  await freeze();
  const frozenAt = performance.now();
  const [ready, login, me, health] = await Promise.all([
    timed(() => api.get<{ error: { code: string } }>('/readyz')),
    timed(() => api.post<{ error: { code: string } }>('/auth/login', { email: account.email, password: account.password })),
    timed(() => api.get<{ error: { code: string } }>('/auth/me', accessToken)),
    timed(() => api.get('/healthz')),
  ]);
  t.is(ready.result.status, 503);
  t.is(ready.result.body.error.code, 'not_ready');
  for (const [name, answer] of [['login', login], ['me', me]] as const) {
    t.is(answer.result.status, 503, `${name}: ${JSON.stringify(answer.result.body)}`);
    t.is(answer.result.body.error.code, 'service_unavailable', name);
  }
  t.is(health.result.status, 200, 'the process itself stays live');
  // A second wave: whichever connection each request gets now (another frozen idle one, or a new
  // one that cannot connect), it ends in a 503 within the bound too.
  const [loginAgain, meAgain] = await Promise.all([
    timed(() => api.post<{ error: { code: string } }>('/auth/login', { email: account.email, password: account.password })),
    timed(() => api.get<{ error: { code: string } }>('/auth/me', accessToken)),
  ]);
  t.is(loginAgain.result.status, 503);
  t.is(meAgain.result.status, 503);
  const times = { readyz: ready.ms, login: login.ms, me: me.ms, healthz: health.ms, loginAgain: loginAgain.ms, meAgain: meAgain.ms };
  for (const [name, ms] of Object.entries(times)) t.true(ms < deadline, `${name} took ${Math.round(ms)} ms (stated bound ${deadline} ms)`);
  t.log(
    `frozen with ${idle} idle pool connections; client query bound ${bound} ms; answers in ms: ` +
      Object.entries(times).map(([name, ms]) => `${name} ${Math.round(ms)}`).join(', '),
  );
  // The idle connections were taken and given up by the client-side bound (not a connect timeout).
  t.true(
    service.logs.lines.some((line) => line.includes(`did not answer within ${bound} ms`)),
    'a request failed on the client query bound',
  );
  const frozenFor = performance.now() - frozenAt;

  thaw();
  const recoveryDeadline = Date.now() + 15_000;
  while ((await api.get('/readyz')).status !== 200) {
    if (Date.now() > recoveryDeadline) t.fail('not ready again after the database thawed');
    await sleep(100);
  }
  t.is((await api.post('/auth/login', { email: account.email, password: account.password })).status, 200, 'a login works again');
  t.is((await api.get('/auth/me', accessToken)).status, 200);
  t.log(`frozen for ${Math.round(frozenFor)} ms; recovered without a restart`);
  t.false(service.logs.lines.some((line) => line.includes('"errorCode":"internal_error"')), 'no request was a 500');

  // A shutdown during a freeze ends within its deadline (SHUTDOWN_TIMEOUT_SECONDS; the process
  // exits 1 when it overruns): the pool's and the LISTEN hub's connections are closed without
  // waiting for a goodbye the server cannot give, and a timed-out UNLISTEN gives its connection up.
  await freeze();
  const stop = await timed(() => service.shutdown('test: shutdown while the database is frozen'));
  t.true(stop.ms < service.config.shutdownTimeoutMs, `shutdown took ${Math.round(stop.ms)} ms (deadline ${service.config.shutdownTimeoutMs} ms)`);
  t.log(`shutdown while frozen took ${Math.round(stop.ms)} ms (deadline ${service.config.shutdownTimeoutMs} ms)`);
});
