/**
 * Release policies, the login gate and publish drains through real servers on real PostgreSQL
 * (contract §6, §7): the public policy read, 426 for old or unidentified clients, atomic policy
 * swaps, and a publish drain with real websockets across two app processes — including an
 * instance killed mid-drain (a child process, SIGKILL), which must end the drain `failed`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import WebSocket from 'ws';
import { createApi, type Api, type ErrorBody, type TokenPair } from './support/api.js';
import { withAdminClient, type TestDatabase } from './support/database.js';
import { startTestService, testEnvironment, useSharedService, type TestService } from './support/service.js';
import type { Drain, OpsMetrics, PublicPolicyResponse, ReleasePolicy } from '../app/ops/schemas.js';
import { createReleaseService, gateDecision, isBelow } from '../app/release/service.js';
import type { ReleaseStore } from '../app/release/store.js';
import { createLogger } from '../app/logger.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const shared = useSharedService();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const query = async <R extends Record<string, unknown>>(database: TestDatabase, text: string, values: unknown[] = []) =>
  withAdminClient(async (client) => (await client.query<R>(text, values)).rows, database.name);

const client = (platform: string, version?: string): Record<string, string> => ({
  'x-client-platform': platform,
  ...(version === undefined ? {} : { 'x-client-version': version }),
});

const createPolicy = async (
  api: Api,
  token: string,
  body: { platform: string; minSupportedVersion: string; latestVersion: string; forceUpdate: boolean; loginGate: boolean },
) => {
  const response = await api.request<{ policy: ReleasePolicy }>('POST', '/ops/release/policies', { token, body });
  if (response.status !== 201) throw new Error(`create policy: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body.policy;
};

const activate = async (api: Api, token: string, id: string) => {
  const response = await api.request<{ policy: ReleasePolicy }>('POST', `/ops/release/policies/${id}/activate`, { token });
  if (response.status !== 200) throw new Error(`activate: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body.policy;
};

const waitFor = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000, everyMs = 100): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
};

type Socket = {
  ws: WebSocket;
  frames: Array<Record<string, unknown>>;
  closed: Promise<{ code: number; at: number }>;
  sessionId: string;
  label: string;
};

/** Signs a fresh user in, gets a ticket and opens a socket on `baseUrl` with the given client headers. */
const connect = async (api: Api, baseUrl: string, label: string, headers: Record<string, string>): Promise<Socket> => {
  const account = await api.register();
  const pair = await api.login(account);
  const ticket = await api.post<{ ticket: string }>('/auth/ws-ticket', undefined, pair.accessToken);
  if (ticket.status !== 201) throw new Error(`ticket: ${ticket.status}`);
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/ws?ticket=${ticket.body.ticket}`, { headers });
  const frames: Array<Record<string, unknown>> = [];
  ws.on('message', (data) => frames.push(JSON.parse(data.toString()) as Record<string, unknown>));
  const closed = new Promise<{ code: number; at: number }>((resolve) => ws.once('close', (code) => resolve({ code, at: Date.now() })));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return { ws, frames, closed, sessionId: pair.sessionId, label };
};

const drainOf = async (api: Api, token: string, id: string) => {
  const response = await api.request<{ drain: Drain }>('GET', `/ops/release/drains/${id}`, { token });
  if (response.status !== 200) throw new Error(`drain: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body.drain;
};

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

// ---------------------------------------------------------------------------------------------

test('gate decisions (unit): versions with semver, unknown platform blocked only while a gate is on', (t) => {
  const policy = (platform: string, min: string, gate: boolean) =>
    [platform, { platform, min_supported_version: min, login_gate: gate }] as unknown as [string, never];
  const policies = new Map([policy('ios', '2.0.0', true), policy('android', '3.0.0', false)]);
  t.true(gateDecision(policies, { platform: 'ios', version: null }).blocked);
  t.true(gateDecision(policies, { platform: 'ios', version: '1.99.99' }).blocked);
  t.true(gateDecision(policies, { platform: 'ios', version: '2.0.0-rc.1' }).blocked, 'a prerelease is below its release');
  t.false(gateDecision(policies, { platform: 'ios', version: '2.0.0' }).blocked);
  t.false(gateDecision(policies, { platform: 'ios', version: '10.0.0' }).blocked, 'numeric, not lexical');
  t.false(gateDecision(policies, { platform: 'android', version: '1.0.0' }).blocked, 'gate off');
  t.false(gateDecision(policies, { platform: 'web', version: null }).blocked, 'no policy for the platform');
  t.true(gateDecision(policies, { platform: null, version: '99.0.0' }).blocked, 'no platform while a gate is on');
  t.false(gateDecision(new Map([policy('android', '3.0.0', false)]), { platform: null, version: null }).blocked);
  t.true(isBelow('not-a-version', '1.0.0'));
});

test('the gate reads policies from memory: one query per second at most, and none after a notification until needed', async (t) => {
  let reads = 0;
  const store = {
    activePolicies: async () => {
      reads += 1;
      return [];
    },
  } as unknown as ReleaseStore;
  const handlers = new Map<string, (payload: string) => void>();
  const hub = {
    publish: async () => undefined,
    subscribe: async (channel: string, handler: (payload: string) => void) => {
      handlers.set(channel, handler);
      return async () => undefined;
    },
    on: () => () => undefined,
  };
  const release = createReleaseService({
    pool: {} as never,
    store,
    adminAudit: {} as never,
    hub,
    logger: createLogger({ logLevel: 'silent' }),
    afterCommit: {} as never,
  });
  await Promise.all(Array.from({ length: 200 }, () => release.activePolicies()));
  for (let i = 0; i < 100; i += 1) await release.activePolicies();
  t.is(reads, 1, '300 gate checks, one read');
  await sleep(1_050);
  await release.activePolicies();
  t.is(reads, 2, 'the copy expires after a second');
  release.invalidatePolicies();
  await release.activePolicies();
  t.is(reads, 3, 'a policy notification drops the copy at once');
});

test('GET /release/policy is public and answers updateRequired', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const ops = service.config.secrets.opsApiToken;
  const none = await api.get<PublicPolicyResponse>('/release/policy?platform=web&version=1.0.0');
  t.is(none.status, 200);
  t.deepEqual(none.body, { policy: null, updateRequired: false });

  const policy = await createPolicy(api, ops, { platform: 'macos', minSupportedVersion: '1.4.0', latestVersion: '1.6.2', forceUpdate: true, loginGate: false });
  t.deepEqual((await api.get<PublicPolicyResponse>('/release/policy?platform=macos')).body.policy, null, 'inactive until activated');
  await activate(api, ops, policy.id);
  const old = await api.get<PublicPolicyResponse>('/release/policy?platform=macos&version=1.3.9');
  t.deepEqual(old.body, {
    policy: { platform: 'macos', minSupportedVersion: '1.4.0', latestVersion: '1.6.2', forceUpdate: true, loginGate: false },
    updateRequired: true,
  });
  t.false((await api.get<PublicPolicyResponse>('/release/policy?platform=macos&version=1.4.0')).body.updateRequired);
  t.false((await api.get<PublicPolicyResponse>('/release/policy?platform=macos&version=1.10.0')).body.updateRequired);
  t.true((await api.get<PublicPolicyResponse>('/release/policy?platform=macos')).body.updateRequired, 'no version: update');
  t.true((await api.get<PublicPolicyResponse>('/release/policy?platform=macos&version=banana')).body.updateRequired);
  for (const bad of ['', '?platform=blackberry', '?version=1.0.0', '?platform=macos&extra=1']) {
    const response = await api.get<ErrorBody>(`/release/policy${bad}`);
    t.is(response.status, 400, bad);
    t.is(response.body.error.code, 'validation_failed');
  }
});

test('policy activation swaps atomically: exactly one active policy at every moment, under concurrent activations', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const ops = service.config.secrets.opsApiToken;
  const policies = await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      createPolicy(api, ops, { platform: 'linux', minSupportedVersion: `1.${i}.0`, latestVersion: `1.${i}.0`, forceUpdate: false, loginGate: false }),
    ),
  );
  await activate(api, ops, policies[0]!.id);
  let polling = true;
  const observed = new Set<number>();
  const poller = withAdminClient(async (admin) => {
    while (polling) {
      const { rows } = await admin.query<{ n: string }>("SELECT count(*) AS n FROM release_policies WHERE platform = 'linux' AND active");
      observed.add(Number(rows[0]!.n));
    }
  }, service.database.name);
  const results = await Promise.all(policies.map((policy) => activate(api, ops, policy.id)));
  polling = false;
  await poller;
  t.deepEqual([...observed], [1], 'never zero, never two');
  t.true(results.every((policy) => policy.active));
  const active = await query<{ id: string }>(service.database, "SELECT id FROM release_policies WHERE platform = 'linux' AND active");
  t.is(active.length, 1);
  const rows = await query<{ n: string }>(
    service.database,
    "SELECT count(*) AS n FROM admin_action_audit WHERE action = 'release.policy.activate' AND target = ANY($1::text[])",
    [policies.map((p) => p.id)],
  );
  t.is(Number(rows[0]!.n), 13, 'one admin row per activation');
  // Re-activating the active one is idempotent.
  const again = await activate(api, ops, active[0]!.id);
  t.true(again.active);
  t.is((await query(service.database, "SELECT 1 FROM release_policies WHERE platform = 'linux' AND active")).length, 1);
});

test('login gate: 426 for a missing or lower version (and a missing platform) while loginGate is on; equal or higher passes', async (t) => {
  const a = await startTestService(t);
  const b = await startTestService(t, {}, { database: a.database });
  const api = createApi(a.url);
  const apiB = createApi(b.url);
  const ops = a.config.secrets.opsApiToken;
  const account = await api.register();
  const login = (headers: Record<string, string>, target: Api = api) =>
    target.post<TokenPair & ErrorBody>('/auth/login', { email: account.email, password: account.password }, undefined, headers);

  t.is((await login({})).status, 200, 'no policy: no gate');
  const gated = await createPolicy(api, ops, { platform: 'ios', minSupportedVersion: '2.0.0', latestVersion: '2.1.0', forceUpdate: true, loginGate: true });
  const ungated = await createPolicy(api, ops, { platform: 'android', minSupportedVersion: '3.0.0', latestVersion: '3.0.0', forceUpdate: false, loginGate: false });
  await activate(api, ops, ungated.id);
  t.is((await login({})).status, 200, 'an active policy without loginGate gates nothing');
  await activate(api, ops, gated.id);

  for (const [headers, status, label] of [
    [client('ios'), 426, 'missing version'],
    [client('ios', '1.9.9'), 426, 'lower version'],
    [client('ios', '2.0.0-beta.1'), 426, 'prerelease of the minimum'],
    [client('ios', 'garbage'), 426, 'invalid version'],
    [client('ios', '2.0.0'), 200, 'equal version'],
    [client('ios', '2.10.0'), 200, 'higher version'],
    [client('android', '1.0.0'), 200, 'platform without a login gate'],
    [{}, 426, 'no platform while a gate is on'],
    [client('blackberry', '9.0.0'), 426, 'unknown platform counts as none'],
  ] as const) {
    const response = await login(headers);
    t.is(response.status, status, label);
    if (status === 426) {
      t.is(response.body.error.code, 'client_update_required', label);
      t.truthy(response.body.error.requestId);
    }
  }
  t.is((await login(client('ios', '1.0.0'))).headers.get('x-min-supported-version'), '2.0.0');

  // The other instance applies the activation too (notification, or the 1 s cache expiry).
  t.is((await login(client('ios', '1.0.0'), apiB)).status, 426);

  // Refresh and MFA verification are gated as well.
  const pair = (await login(client('ios', '2.0.0'))).body;
  const refreshOld = await api.post<ErrorBody>('/auth/refresh', { refreshToken: pair.refreshToken }, undefined, client('ios', '1.5.0'));
  t.is(refreshOld.status, 426);
  t.is(refreshOld.body.error.code, 'client_update_required');
  const refreshNew = await api.post<TokenPair>('/auth/refresh', { refreshToken: pair.refreshToken }, undefined, client('ios', '2.0.0'));
  t.is(refreshNew.status, 200, 'the refused refresh did not consume the token');
  const verifyOld = await api.post<ErrorBody>('/auth/mfa/verify', { mfaToken: 'x', code: '123456' }, undefined, client('ios', '1.0.0'));
  t.is(verifyOld.status, 426);

  // Raising the minimum applies at once on this instance and within a second on the other.
  const raised = await createPolicy(api, ops, { platform: 'ios', minSupportedVersion: '3.0.0', latestVersion: '3.0.0', forceUpdate: true, loginGate: true });
  await activate(api, ops, raised.id);
  t.is((await login(client('ios', '2.5.0'))).status, 426);
  const started = Date.now();
  await waitFor('the other instance to apply the new minimum', async () => ((await login(client('ios', '2.5.0'), apiB)).status === 426 ? true : undefined), 2_000, 50);
  t.true(Date.now() - started < 1_500);
  // Lifting the gate.
  const lifted = await createPolicy(api, ops, { platform: 'ios', minSupportedVersion: '3.0.0', latestVersion: '3.0.0', forceUpdate: false, loginGate: false });
  await activate(api, ops, lifted.id);
  t.is((await login(client('ios', '1.0.0'))).status, 200);
  t.is((await login({})).status, 200);
});

test('publish drain across two app processes: old clients get release.drain then 4000, new clients stay, every session audited, completed', async (t) => {
  t.timeout(90_000);
  const a = await startTestService(t);
  const b = await startTestService(t, {}, { database: a.database });
  const api = createApi(a.url);
  const ops = a.config.secrets.opsApiToken;

  const sockets: Socket[] = [];
  for (const [name, service] of [['a', a], ['b', b]] as const) {
    sockets.push(await connect(api, service.url, `${name}:ios-old`, client('ios', '1.0.0')));
    sockets.push(await connect(api, service.url, `${name}:ios-old-2`, client('ios', '1.9.9')));
    sockets.push(await connect(api, service.url, `${name}:ios-no-version`, client('ios')));
    sockets.push(await connect(api, service.url, `${name}:ios-new`, client('ios', '2.0.0')));
    sockets.push(await connect(api, service.url, `${name}:android-old`, client('android', '1.0.0')));
  }
  const affected = sockets.filter((s) => /ios-old|ios-no-version/.test(s.label));
  const untouched = sockets.filter((s) => !affected.includes(s));

  const requestId = `publish-${randomUUID()}`;
  const published = await api.request<{ drainId: string; policyId: string }>('POST', '/ops/release/publish', {
    token: ops,
    body: { platform: 'ios', version: '2.0.0', minSupportedVersion: '2.0.0', forceUpdate: true, graceSeconds: 2 },
    headers: { 'x-request-id': requestId },
  });
  const publishedAt = Date.now();
  t.is(published.status, 202, JSON.stringify(published.body));
  const { drainId, policyId } = published.body;

  const closes = await Promise.all(affected.map((s) => s.closed));
  for (const [index, socket] of affected.entries()) {
    t.is(closes[index]!.code, 4000, socket.label);
    t.true(closes[index]!.at - publishedAt >= 1_800, `${socket.label} closed after the grace`);
    const drainFrames = socket.frames.filter((f) => f.type === 'release.drain');
    t.deepEqual(drainFrames, [{ type: 'release.drain', version: '2.0.0', minSupportedVersion: '2.0.0', forceUpdate: true, graceSeconds: 2 }], socket.label);
  }

  const drain = await waitFor('the drain to complete', async () => {
    const current = await drainOf(api, ops, drainId);
    return current.status === 'running' ? undefined : current;
  });
  t.is(drain.status, 'completed', JSON.stringify(drain));
  t.is(drain.policyId, policyId);
  t.like(drain.counts, { instances: 2, instancesCompleted: 2, instancesFailed: 0, notified: 6, closed: 6, skipped: 0 });
  t.deepEqual(drain.instances.map((i) => [i.status, i.notified, i.closed]), [['completed', 3, 3], ['completed', 3, 3]]);

  for (const socket of untouched) {
    t.is(socket.ws.readyState, WebSocket.OPEN, `${socket.label} stays connected`);
    t.false(socket.frames.some((f) => f.type === 'release.drain'), socket.label);
    socket.ws.send(JSON.stringify({ type: 'ping' }));
  }
  await sleep(200);
  for (const socket of untouched) t.true(socket.frames.some((f) => f.type === 'pong'), `${socket.label} still served`);

  const audit = await query<{ session_id: string; action: string; instance_id: string; platform: string; client_version: string | null }>(
    a.database,
    'SELECT session_id, action, instance_id, platform, client_version FROM publish_drain_session_audit WHERE drain_id = $1',
    [drainId],
  );
  for (const socket of affected) {
    const rows = audit.filter((row) => row.session_id === socket.sessionId);
    t.deepEqual(rows.map((r) => r.action).sort(), ['closed', 'notified'], socket.label);
    t.is(rows[0]!.platform, 'ios');
  }
  t.is(audit.length, 12);
  t.is(new Set(audit.map((r) => r.instance_id)).size, 2);
  for (const socket of untouched) t.false(audit.some((row) => row.session_id === socket.sessionId));

  const events = await query<{ event: string; instance_id: string | null; notified: number | null; closed: number | null }>(
    a.database,
    'SELECT event, instance_id, notified, closed FROM publish_drain_events WHERE drain_id = $1 ORDER BY id',
    [drainId],
  );
  const names = events.map((e) => e.event);
  t.is(names[0], 'requested');
  t.is(names.at(-1), 'completed');
  t.is(names.filter((n) => n === 'started').length, 1);
  t.is(names.filter((n) => n === 'instance_started').length, 2);
  t.is(names.filter((n) => n === 'instance_completed').length, 2);
  t.like(events.at(-1), { notified: 6, closed: 6 });

  const [row] = await query<{ actor: string; action: string; target: string }>(a.database, 'SELECT actor, action, target FROM admin_action_audit WHERE request_id = $1', [requestId]);
  t.like(row, { actor: 'ops-token', action: 'release.publish', target: drainId });
  // The published policy gates old clients at login (forceUpdate → loginGate by default).
  const account = await api.register();
  t.is((await api.post('/auth/login', { email: account.email, password: account.password }, undefined, client('ios', '1.0.0'))).status, 426);
  const metrics = await api.request<OpsMetrics>('GET', '/ops/release/metrics', { token: ops });
  t.like(metrics.body.drains, { started: 1, completed: 1, failed: 0 });
  for (const socket of untouched) socket.ws.close();
});

/** The service as a child process (test/support/slow-service.ts: the real service wired like app/main.ts). */
const startChild = async (t: ExecutionContext, database: TestDatabase, secrets: TestService['config']['secrets']) => {
  const port = await freePort();
  const env: Record<string, string> = {};
  const source = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...testEnvironment(database.url, { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' }),
    JWT_SECRET: secrets.jwtSecret,
    OPS_API_TOKEN: secrets.opsApiToken,
  };
  for (const [name, value] of Object.entries(source)) if (value !== undefined) env[name] = value;
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'test/support/slow-service.ts'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`child did not start: ${stderr}`)), 30_000);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const match = /"event":"listening","url":"([^"]+)"/.exec(buffered);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`child exited ${code}: ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, url, exited };
};

test('an instance killed mid-drain ends the drain failed (instance_lost), and metrics count it', async (t) => {
  t.timeout(100_000);
  const a = await startTestService(t);
  const b = await startChild(t, a.database, a.config.secrets);
  const api = createApi(a.url);
  const ops = a.config.secrets.opsApiToken;
  const onA = await connect(api, a.url, 'a:old', client('android', '1.0.0'));
  const onB = [await connect(api, b.url, 'b:old', client('android', '1.0.0')), await connect(api, b.url, 'b:old-2', client('android', '1.2.0'))];

  const published = await api.request<{ drainId: string }>('POST', '/ops/release/publish', {
    token: ops,
    body: { platform: 'android', version: '2.0.0', minSupportedVersion: '2.0.0', forceUpdate: false, graceSeconds: 45 },
  });
  t.is(published.status, 202, JSON.stringify(published.body));
  const { drainId } = published.body;
  // Both instances started; B's sockets were told.
  await waitFor('both instances to start', async () => ((await drainOf(api, ops, drainId)).counts.instances === 2 ? true : undefined));
  await waitFor('the drain frames', async () => ([onA, ...onB].every((s) => s.frames.some((f) => f.type === 'release.drain')) ? true : undefined));

  const killedAt = Date.now();
  b.child.kill('SIGKILL');
  await b.exited;
  const drain = await waitFor('the drain to fail', async () => {
    const current = await drainOf(api, ops, drainId);
    return current.status === 'running' ? undefined : current;
  }, 40_000, 250);
  t.is(drain.status, 'failed', JSON.stringify(drain));
  t.is(drain.failureReason, 'instance_lost');
  t.true(Date.now() - killedAt < 25_000, 'detected within the heartbeat staleness window plus a sweep');
  t.is(drain.counts.instancesFailed, 1);
  t.deepEqual(drain.instances.map((i) => i.status).sort(), ['failed', 'running']);

  const events = await query<{ event: string; details: Record<string, unknown> }>(
    a.database,
    'SELECT event, details FROM publish_drain_events WHERE drain_id = $1 ORDER BY id',
    [drainId],
  );
  t.true(events.some((e) => e.event === 'instance_failed' && e.details.reason === 'instance_lost'));
  t.is(events.filter((e) => e.event === 'failed').length, 1);
  const metrics = await api.request<OpsMetrics>('GET', '/ops/release/metrics', { token: ops });
  t.like(metrics.body.drains, { started: 1, completed: 0, failed: 1 });

  // The survivor still finishes its own part (recorded), without reopening the failed drain.
  t.is(onA.ws.readyState, WebSocket.OPEN);
  await a.shutdown('test');
  t.is((await onA.closed).code, 4000, 'a graceful shutdown mid-drain closes the affected socket with 4000');
  const [completed] = await query<{ n: string }>(
    a.database,
    "SELECT count(*) AS n FROM publish_drain_events WHERE drain_id = $1 AND event = 'instance_completed'",
    [drainId],
  );
  t.is(Number(completed!.n), 1);
  const [status] = await query<{ status: string }>(a.database, 'SELECT status FROM publish_drains WHERE id = $1', [drainId]);
  t.is(status!.status, 'failed');
});

test('a drain still running at its deadline is finalised as failed by the sweeper (never silently stuck)', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const ops = service.config.secrets.opsApiToken;
  // An instance that keeps its heartbeat fresh but never reports, and a drain already past its deadline.
  const ghost = `ghost-${randomUUID()}`;
  const policy = await createPolicy(api, ops, { platform: 'web', minSupportedVersion: '0.1.0', latestVersion: '0.1.0', forceUpdate: false, loginGate: false });
  await query(service.database, 'INSERT INTO service_instances (instance_id) VALUES ($1)', [ghost]);
  const [drain] = await query<{ id: string }>(
    service.database,
    `INSERT INTO publish_drains (policy_id, platform, version, min_supported_version, force_update, grace_seconds, requested_by, expected_instances, deadline_at)
     VALUES ($1, 'web', '0.1.0', '0.1.0', false, 0, 'test', ARRAY[$2], now() - interval '1 second') RETURNING id`,
    [policy.id, ghost],
  );
  const finished = await waitFor('the sweeper', async () => {
    const current = await drainOf(api, ops, drain!.id);
    return current.status === 'running' ? undefined : current;
  }, 15_000, 200);
  t.is(finished.status, 'failed');
  t.is(finished.failureReason, 'deadline_exceeded');
  t.truthy(finished.finishedAt);
  // Terminal states are final.
  await t.throwsAsync(query(service.database, "UPDATE publish_drains SET status = 'running', finished_at = NULL, failure_reason = NULL WHERE id = $1", [drain!.id]), {
    message: /already failed/,
  });
});
