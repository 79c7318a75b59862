/**
 * SIGTERM under in-flight load, with a real child process (test/support/slow-service.ts, wired
 * like app/main.ts): accepted requests finish, readiness turns 503, the listener stops
 * accepting, and the process exits 0 within SHUTDOWN_TIMEOUT_SECONDS — also when a request
 * would outlive it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { createTestDatabase } from './support/database.js';
import { testEnvironment } from './support/service.js';

const root = fileURLToPath(new URL('..', import.meta.url));

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

type Line = Record<string, unknown>;
type Child = {
  process: ChildProcess;
  lines: Line[];
  stderr: () => string;
  /** Resolves with the first line (already seen or still to come) that matches. */
  waitFor: (predicate: (line: Line) => boolean, what: string, timeoutMs?: number) => Promise<Line>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
};

/** Starts the slow service with its own fresh database; killed and dropped when the test ends. */
const startSlowService = async (t: ExecutionContext, overrides: Record<string, string>): Promise<Child & { url: string }> => {
  const database = await createTestDatabase();
  const env: Record<string, string> = {};
  const source = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...testEnvironment(database.url, { PORT: String(await freePort()), HOST: '127.0.0.1', LOG_LEVEL: 'info', ...overrides }),
  };
  for (const [name, value] of Object.entries(source)) if (value !== undefined) env[name] = value;

  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/slow-service.ts'], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Line[] = [];
  const waiters = new Set<{ predicate: (line: Line) => boolean; resolve: (line: Line) => void }>();
  let stderr = '';
  let buffered = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    for (const part of parts.filter((text) => text.trim())) {
      let line: Line;
      try {
        line = JSON.parse(part) as Line;
      } catch {
        line = { raw: part };
      }
      lines.push(line);
      for (const waiter of waiters) {
        if (waiter.predicate(line)) {
          waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const waitFor = (predicate: (line: Line) => boolean, what: string, timeoutMs = 15_000) => {
    const seen = lines.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise<Line>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; stderr: ${stderr}`)), timeoutMs);
      const waiter = {
        predicate,
        resolve: (line: Line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      waiters.add(waiter);
      void exited.then(({ code }) => {
        if (!waiters.has(waiter)) return;
        clearTimeout(timer);
        reject(new Error(`the service exited (${code}) while waiting for ${what}; stderr: ${stderr}`));
      });
    });
  };

  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    await database.drop();
  });
  const listening = await waitFor((line) => line.event === 'listening', 'the service to listen');
  return { process: child, lines, stderr: () => stderr, waitFor, exited, url: String(listening.url) };
};

type Outcome = { status?: number; connection?: string; body?: string; error?: string };

const get = (url: string, agent: http.Agent | false): Promise<Outcome> =>
  new Promise((resolve) => {
    const request = http.get(url, { agent }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode, connection: response.headers.connection, body }));
      response.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
    });
    request.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
  });

/** Opens a TCP connection, or reports why it could not (never hangs: 3 s cap). */
const tryConnect = (port: number) =>
  new Promise<string>((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, 3_000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(error.code ?? error.message);
    });
  });

/** Reads a whole raw HTTP response from `socket` until the server closes it. */
const readUntilClosed = (socket: Socket) =>
  new Promise<string>((resolve) => {
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.once('close', () => resolve(text));
  });

const count = (lines: Line[], message: string) => lines.filter((line) => line.message === message).length;

test('SIGTERM under in-flight load: every accepted request completes, readiness 503, listener closed, exit 0 in time', async (t) => {
  const timeoutSeconds = 5;
  const service = await startSlowService(t, { SHUTDOWN_TIMEOUT_SECONDS: String(timeoutSeconds), KARAXAS_TEST_SLOW_MS: '1500' });
  const { port } = new URL(service.url);

  // A readiness probe already on an open connection: its request line is sent now, its end after SIGTERM.
  const probe = connect({ port: Number(port), host: '127.0.0.1' });
  await new Promise((resolve) => probe.once('connect', resolve));
  const probeResponse = readUntilClosed(probe);
  probe.write(`GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);

  // 40 slow requests on fresh connections, plus 5 on keep-alive connections.
  const keepAlive = new http.Agent({ keepAlive: true });
  t.teardown(() => keepAlive.destroy());
  const fresh = Array.from({ length: 40 }, () => get(`${service.url}/test/slow`, false));
  const reused = Array.from({ length: 5 }, () => get(`${service.url}/test/slow`, keepAlive));
  await service.waitFor((line) => line.message === 'slow request accepted' && line.accepted === 45, 'all 45 requests to be accepted');

  const signalledAt = Date.now();
  service.process.kill('SIGTERM');
  await service.waitFor((line) => line.message === 'shutting down', 'the shutdown to begin');

  // The listener is closed (the close itself completes on the child's next event-loop turn):
  // new connections are refused at once, never left hanging.
  const attempts: string[] = [];
  for (let attempt = 0; attempt < 20 && attempts.at(-1) !== 'ECONNREFUSED'; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    attempts.push(await tryConnect(Number(port)));
  }
  t.is(attempts.at(-1), 'ECONNREFUSED', attempts.join(', '));
  t.false(attempts.includes('timeout'), 'no connection attempt hung');
  // Readiness answers 503 not_ready while the accepted requests drain.
  probe.write('\r\n');
  const rawProbe = await probeResponse;
  t.regex(rawProbe, /^HTTP\/1\.1 503 /, rawProbe.split('\r\n')[0]);
  t.regex(rawProbe, /"code":"not_ready"/);
  t.regex(rawProbe, /\r\nconnection: close\r\n/i, 'a draining instance tells the client not to reuse the connection');

  const outcomes = await Promise.all([...fresh, ...reused]);
  const failed = outcomes.filter((outcome) => outcome.status !== 200);
  t.deepEqual(failed, [], 'no accepted request failed');
  t.deepEqual(
    outcomes.map((outcome) => (JSON.parse(outcome.body!) as { n: number }).n).sort((a, b) => a - b),
    Array.from({ length: 45 }, (_, index) => index + 1),
  );
  t.true(
    outcomes.slice(40).every((outcome) => outcome.connection === 'close'),
    'keep-alive clients are asked to close after their in-flight response',
  );

  const { code, signal, at } = await service.exited;
  t.is(signal, null);
  t.is(code, 0, service.stderr());
  const elapsed = at - signalledAt;
  t.true(elapsed < timeoutSeconds * 1_000, `exited ${elapsed} ms after SIGTERM`);
  t.is(count(service.lines, 'shutdown timeout reached; closing remaining connections'), 0, 'drained without hitting the deadline');
  t.is(count(service.lines, 'shutdown complete'), 1);
  t.is(service.stderr(), '');
});

test('a request that outlives SHUTDOWN_TIMEOUT_SECONDS does not keep the process alive', async (t) => {
  const service = await startSlowService(t, { SHUTDOWN_TIMEOUT_SECONDS: '1', KARAXAS_TEST_SLOW_MS: '5000' });
  const pending = get(`${service.url}/test/slow`, false);
  await service.waitFor((line) => line.message === 'slow request accepted', 'the slow request to be accepted');

  const signalledAt = Date.now();
  service.process.kill('SIGTERM');
  const { code, at } = await service.exited;
  const elapsed = at - signalledAt;
  t.true(elapsed < 2_500, `exited ${elapsed} ms after SIGTERM (timeout 1 s)`);
  t.is(code, 0, service.stderr());
  t.is(count(service.lines, 'shutdown timeout reached; closing remaining connections'), 1);
  t.is(count(service.lines, 'shutdown complete'), 1);
  const outcome = await pending;
  t.truthy(outcome.error, 'the overrunning request was cut off');
});
