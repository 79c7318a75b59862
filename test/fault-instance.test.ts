/**
 * One of two instances killed with SIGKILL mid-traffic. Two real processes (`node --import tsx
 * app/main.ts`) share one database; clients rotate refresh tokens and send chat messages through
 * both, and fail over to the survivor when theirs dies (retrying what was not acknowledged):
 * - the survivor keeps answering, never with a 5xx;
 * - no half-done rotation: every session has exactly one live refresh token (none once revoked);
 * - a refresh cut off by the kill is retried on the survivor and succeeds (rotation or grace);
 * - every acknowledged chat message is stored, once, and reached a listener on the survivor.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { createApi } from './support/api.js';
import { createTestDatabase, withAdminClient } from './support/database.js';
import { openSocket, signedInPlayer } from './support/realtime.js';
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Instance = { name: string; url: string; child: ChildProcess; output: () => string; exited: Promise<unknown> };

/** Starts `app/main.ts` as a child process and resolves once it logs that it listens. */
const startInstance = async (name: string, env: Record<string, string | undefined>): Promise<Instance> => {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 30_000;
  while (!/"message":"listening"/.test(output)) {
    if (child.exitCode !== null) throw new Error(`${name} exited at boot: ${output}`);
    if (Date.now() > deadline) throw new Error(`${name} did not listen within 30 s: ${output}`);
    await sleep(50);
  }
  return { name, url: `http://127.0.0.1:${port}`, child, output: () => output, exited };
};

type Outcome = { instance: string; op: string; status: number; code?: string; error?: string; afterKill: boolean };

test('SIGKILL of one of two instances under refresh and chat traffic: the survivor serves, no half-done rotation, no lost message', async (t) => {
  t.timeout(120_000);
  const database = await createTestDatabase();
  const env = testEnvironment(database.url, {
    LOG_LEVEL: 'info',
    CHAT_RATE_LIMIT_MAX: '1000',
    CHAT_RATE_LIMIT_WINDOW_SECONDS: '1',
    REFRESH_REUSE_GRACE_SECONDS: '30',
  });
  const instances: Instance[] = [];
  t.teardown(async () => {
    for (const instance of instances) if (instance.child.exitCode === null && instance.child.signalCode === null) instance.child.kill('SIGKILL');
    await Promise.all(instances.map((instance) => instance.exited));
    await database.drop();
  });
  const victim = await startInstance('victim', env);
  instances.push(victim);
  const survivor = await startInstance('survivor', env);
  instances.push(survivor);

  // A listener on the survivor: every acknowledged message must reach it.
  const survivorApi = createApi(survivor.url);
  const listener = await signedInPlayer(survivorApi, 'Listener');
  const socket = await openSocket(survivorApi, survivor.url, listener.token);
  t.teardown(() => socket.close());
  await socket.join('fault-instance');

  let killed = false;
  const outcomes: Outcome[] = [];
  /** A request to `instance`; connection failures resolve as status 0. */
  const call = async (instance: Instance, op: string, method: string, path: string, body?: unknown, token?: string) => {
    try {
      const response = await fetch(`${instance.url}${path}`, {
        method,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await response.text();
      const json = text ? (JSON.parse(text) as unknown) : undefined;
      outcomes.push({ instance: instance.name, op, status: response.status, code: (json as { error?: { code?: string } } | undefined)?.error?.code, afterKill: killed });
      return { status: response.status, json };
    } catch (error) {
      outcomes.push({ instance: instance.name, op, status: 0, error: String((error as Error).cause ?? error), afterKill: killed });
      return { status: 0, json: undefined };
    }
  };
  /** Tries the client's preferred instance, then the other one (failover), until acknowledged. */
  const withFailover = async (preferred: number, op: string, method: string, path: string, body?: unknown, token?: string) => {
    for (let attempt = 0; attempt < 20; attempt += 1) {
      const instance = instances[(preferred + attempt) % 2]!;
      const result = await call(instance, op, method, path, body, token);
      if (result.status !== 0) return result;
      await sleep(20);
    }
    throw new Error(`${op}: no instance answered`);
  };

  const acknowledged = { refreshTokens: [] as string[], messages: [] as string[] };
  const unexpected: string[] = [];
  let stopping = false;

  const refresher = async (index: number) => {
    const account = await survivorApi.register();
    const signedIn = await withFailover(index, 'login', 'POST', '/auth/login', { email: account.email, password: account.password });
    let { refreshToken } = signedIn.json as { refreshToken: string };
    acknowledged.refreshTokens.push(refreshToken);
    for (let n = 0; !stopping; n += 1) {
      const rotated = await withFailover(index + n, 'refresh', 'POST', '/auth/refresh', { refreshToken });
      if (rotated.status !== 200) {
        unexpected.push(`refresh → ${rotated.status} ${JSON.stringify(rotated.json)}`);
        return;
      }
      ({ refreshToken } = rotated.json as { refreshToken: string });
      acknowledged.refreshTokens.push(refreshToken);
    }
    // The token held at the end is the live one.
    const last = await call(survivor, 'final-refresh', 'POST', '/auth/refresh', { refreshToken });
    if (last.status !== 200) unexpected.push(`final refresh → ${last.status} ${JSON.stringify(last.json)}`);
  };

  const chatter = async (index: number) => {
    const player = await signedInPlayer(survivorApi, `Chatter ${index}`);
    for (let n = 0; !stopping; n += 1) {
      const clientMsgId = `c${index}-${n}-${randomBytes(3).toString('hex')}`;
      const sent = await withFailover(index + n, 'chat', 'POST', '/chat/channels/fault-instance/messages', { text: `message ${n}`, clientMsgId }, player.token);
      if (sent.status !== 201) {
        unexpected.push(`chat → ${sent.status} ${JSON.stringify(sent.json)}`);
        return;
      }
      acknowledged.messages.push((sent.json as { id: string }).id);
    }
  };

  const traffic = [...Array.from({ length: 6 }, (_, i) => refresher(i)), ...Array.from({ length: 3 }, (_, i) => chatter(i))];
  await sleep(2_000);
  const beforeKill = outcomes.filter((o) => o.instance === 'victim' && o.status >= 200 && o.status < 300).length;
  t.true(beforeKill > 5, `the victim served traffic before the kill (${beforeKill})`);
  victim.child.kill('SIGKILL');
  killed = true;
  await victim.exited;
  await sleep(2_500);
  stopping = true;
  await Promise.all(traffic);

  t.deepEqual(unexpected, [], 'every refresh and message was eventually acknowledged');
  t.deepEqual(outcomes.filter((o) => o.status >= 500).map((o) => `${o.instance} ${o.op} ${o.status} ${o.code}`), [], 'no 5xx anywhere');
  t.deepEqual(outcomes.filter((o) => o.instance === 'survivor' && o.status === 0).map((o) => `${o.op} ${o.error}`), [], 'the survivor never dropped a connection');
  const survivorAfter = outcomes.filter((o) => o.instance === 'survivor' && o.afterKill);
  t.true(survivorAfter.filter((o) => o.status >= 200 && o.status < 300).length > 10, 'the survivor kept serving after the kill');
  t.false(outcomes.some((o) => o.code === 'refresh_token_reused'), 'no retried refresh was taken for reuse');
  t.log(
    `${outcomes.length} requests; victim: ${outcomes.filter((o) => o.instance === 'victim' && o.status === 0).length} cut off; ` +
      `survivor after the kill: ${survivorAfter.length}; acknowledged ${acknowledged.refreshTokens.length} refresh tokens, ${acknowledged.messages.length} messages`,
  );

  await withAdminClient(async (client) => {
    const sessions = await client.query<{ id: string; revoked: boolean; live: number }>(`
      SELECT s.id, s.revoked_at IS NOT NULL AS revoked, count(rt.id) FILTER (WHERE rt.rotated_at IS NULL)::int AS live
      FROM user_sessions s LEFT JOIN refresh_tokens rt ON rt.session_id = s.id
      GROUP BY s.id, s.revoked_at`);
    t.true(sessions.rowCount! > 0);
    t.deepEqual(sessions.rows.filter((row) => row.live > 1).map((row) => row.id), [], 'no session has two live refresh tokens');
    t.deepEqual(sessions.rows.filter((row) => !row.revoked && row.live !== 1).map((row) => row.id), [], 'every active session has exactly one live refresh token');
    const hashes = acknowledged.refreshTokens.map((token) => createHash('sha256').update(token).digest());
    const stored = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM refresh_tokens WHERE token_hash = ANY($1::bytea[])', [hashes]);
    t.is(stored.rows[0]!.n, new Set(acknowledged.refreshTokens).size, 'every refresh token handed out is stored');
    const messages = await client.query<{ id: string }>('SELECT id FROM chat_messages WHERE id = ANY($1::uuid[])', [acknowledged.messages]);
    t.is(messages.rowCount, new Set(acknowledged.messages).size, 'every acknowledged chat message is stored');
    const duplicates = await client.query("SELECT user_id, client_msg_id FROM chat_messages WHERE channel = 'fault-instance' GROUP BY 1, 2 HAVING count(*) > 1");
    t.is(duplicates.rowCount, 0, 'a retried message is stored once');
  }, database.name);

  // Fan-out: the listener on the survivor heard every acknowledged message (the victim's included).
  const heard = new Set<string>();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    for (const frame of socket.frames) if (frame.type === 'chat.message') heard.add(String(frame.id));
    if (acknowledged.messages.every((id) => heard.has(id))) break;
    await sleep(50);
  }
  t.deepEqual(acknowledged.messages.filter((id) => !heard.has(id)), [], 'every acknowledged message reached the listener on the survivor');
  t.true(socket.isOpen, "the survivor's socket stayed open");
});
