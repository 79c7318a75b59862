/** The HTTP load of each scenario, for the service and for its baseline. */
import type { BenchSession, BenchUser } from './fixtures.js';
import { BENCH_PASSWORD } from './fixtures.js';
import { seedSecurityEvents } from './audit-seed.js';
import { startBenchDatabase } from './db.js';
import { createFixtures, HTTP_CONNECTIONS, LOGIN_CONCURRENCY, secrets, startBaseline, startService, type Fixtures } from './context.js';
import { runRound, type LoadSpec } from './load.js';

/** Round-robin over `values`. */
export const cycle = <T>(values: readonly T[]) => {
  let index = 0;
  return () => values[index++ % values.length]!;
};

/** A refresh-token chain: each response's successor is presented once, by the next request. */
export const refreshChain = (tokens: readonly string[]) => {
  const queue = [...tokens];
  return {
    setupRequest: (request: Parameters<NonNullable<LoadSpec['setupRequest']>>[0]) => {
      const token = queue.shift();
      if (token === undefined) throw new Error('the refresh chain ran out of tokens (too many failed rotations)');
      return { ...request, body: JSON.stringify({ refreshToken: token }) };
    },
    onResponse: (status: number, body: string) => {
      if (status === 200) queue.push((JSON.parse(body) as { refreshToken: string }).refreshToken);
    },
  };
};

const json = { 'content-type': 'application/json' };

export const healthzLoad = (url: string, path = '/healthz'): LoadSpec => ({ url, path, connections: HTTP_CONNECTIONS });

export const meLoad = (url: string, sessions: readonly BenchSession[]): LoadSpec => {
  const next = cycle(sessions);
  return {
    url,
    path: '/auth/me',
    connections: HTTP_CONNECTIONS,
    setupRequest: (request) => ({ ...request, headers: { authorization: `Bearer ${next().accessToken}` } }),
  };
};

export const meBaselineLoad = (url: string, sessions: readonly BenchSession[]): LoadSpec => {
  const next = cycle(sessions);
  return {
    url,
    path: '/me',
    connections: HTTP_CONNECTIONS,
    setupRequest: (request) => ({ ...request, headers: { 'x-user-id': next().userId } }),
  };
};

export const refreshLoad = (url: string, path: string, sessions: readonly BenchSession[]): LoadSpec => ({
  url,
  path,
  method: 'POST',
  headers: json,
  connections: HTTP_CONNECTIONS,
  ...refreshChain(sessions.map((session) => session.refreshToken)),
});

/** GET /ops/release/metrics with the ops token, from a few ops consoles at once. */
export const METRICS_CONNECTIONS = 4;
export const metricsLoad = (url: string, path: string, opsToken?: string): LoadSpec => ({
  url,
  path,
  connections: METRICS_CONNECTIONS,
  headers: opsToken === undefined ? {} : { authorization: `Bearer ${opsToken}` },
});

export const loginLoad = (url: string, users: readonly BenchUser[]): LoadSpec => {
  const next = cycle(users);
  return {
    url,
    path: '/auth/login',
    method: 'POST',
    headers: json,
    connections: LOGIN_CONCURRENCY,
    setupRequest: (request) => ({ ...request, body: JSON.stringify({ email: next().email, password: BENCH_PASSWORD }) }),
  };
};

const aloneLoads: Record<string, (url: string, fixtures: Fixtures) => LoadSpec> = {
  'baseline:koa-hello': (url) => healthzLoad(url),
  'baseline:node-http': (url) => healthzLoad(url),
  'baseline:koa-pg-me': (url, fixtures) => meBaselineLoad(url, fixtures.meSessions),
  healthz: (url) => healthzLoad(url),
  me: (url, fixtures) => meLoad(url, fixtures.meSessions),
  refresh: (url, fixtures) => refreshLoad(url, '/auth/refresh', fixtures.refreshSessions),
  login: (url, fixtures) => loginLoad(url, fixtures.users),
  metrics: (url) => metricsLoad(url, '/ops/release/metrics', secrets.OPS_API_TOKEN),
};

/** For bench/profile.ts: the service alone, with --cpu-prof into `profileDirectory`, under one scenario. */
export const runScenarioAlone = async (scenario: string, seconds: number, profileDirectory: string) => {
  const load = aloneLoads[scenario];
  if (!load) throw new Error(`unknown scenario ${scenario}; one of ${Object.keys(aloneLoads).join(', ')}`);
  const db = await startBenchDatabase();
  try {
    if (scenario === 'metrics') await db.withClient((client) => seedSecurityEvents(client, { rows: 1_000_000, spreadDays: 180 }));
    const fixtures = await createFixtures(db);
    const service = scenario.startsWith('baseline:')
      ? await startBaseline(db, scenario.slice('baseline:'.length), { cpuProfileDirectory: profileDirectory })
      : await startService(db, { cpuProfileDirectory: profileDirectory });
    try {
      const spec = load(service.url, fixtures);
      await runRound(spec, 2);
      const round = await runRound(spec, seconds);
      const sorted = Float64Array.from(round.latencies).sort();
      return { rate: round.ok / round.seconds, p50: sorted[Math.floor(sorted.length * 0.5)] ?? NaN, p99: sorted[Math.floor(sorted.length * 0.99)] ?? NaN };
    } finally {
      await service.stop();
    }
  } finally {
    await db.stop();
  }
};
