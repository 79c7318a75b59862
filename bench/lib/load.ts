/**
 * HTTP load through autocannon. Every latency of a run is kept (not autocannon's own summary),
 * so that rounds can be pooled exactly; a scenario and its baseline run in alternating rounds
 * (A B B A A B B A) so that drift in the machine's background load biases neither side. When
 * the server's process is known, its CPU time is read around every round: CPU per request is
 * what the code costs, whatever else the machine is doing.
 */
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';

export type CpuReading = { cpuMicros: number; at: number };

export type LoadSpec = {
  url: string;
  path: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  /** Per-request rewrite (a fresh refresh token, a different access token). */
  setupRequest?: (request: autocannon.Request) => autocannon.Request | undefined;
  /** Sees every response body (the refresh chain feeds its next token from here). */
  onResponse?: (status: number, body: string) => void;
  /** Reads the server process's CPU time (bench IPC `cpu`). */
  cpu?: () => Promise<CpuReading>;
};

export type Round = { latencies: number[]; ok: number; failed: number; errors: number; seconds: number; cpuMicros?: number };

export type LoadStats = {
  /** Successful (2xx) responses per second. */
  rate: number;
  p50: number;
  p99: number;
  ok: number;
  failed: number;
  errors: number;
  seconds: number;
  /** Server CPU time per successful request, in µs (when the server's CPU was read). */
  cpuPerRequest: number | null;
  /** Server CPU time over wall time (1 = one core busy). */
  serverUtilisation: number | null;
};

export const percentileOf = (values: readonly number[], p: number) => {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
};

/** Pools rounds: rates over the summed time, percentiles over every latency. */
export const pool = (rounds: readonly Round[]): LoadStats => {
  const sum = (pick: (round: Round) => number) => rounds.reduce((total, round) => total + pick(round), 0);
  const latencies = rounds.flatMap((round) => round.latencies);
  const ok = sum((round) => round.ok);
  const seconds = sum((round) => round.seconds);
  const cpuKnown = rounds.every((round) => round.cpuMicros !== undefined);
  const cpu = sum((round) => round.cpuMicros ?? 0);
  return {
    rate: ok / seconds,
    p50: percentileOf(latencies, 50),
    p99: percentileOf(latencies, 99),
    ok,
    failed: sum((round) => round.failed),
    errors: sum((round) => round.errors),
    seconds,
    cpuPerRequest: cpuKnown && ok > 0 ? cpu / ok : null,
    serverUtilisation: cpuKnown ? cpu / 1e6 / seconds : null,
  };
};

/** Runs `work` between two CPU readings of the server (when `cpu` is given). */
export const withCpu = async <T extends Omit<Round, 'cpuMicros'>>(cpu: LoadSpec['cpu'], work: () => Promise<T>): Promise<T & { cpuMicros?: number }> => {
  if (!cpu) return work();
  const before = await cpu();
  const result = await work();
  const after = await cpu();
  return { ...result, cpuMicros: after.cpuMicros - before.cpuMicros };
};

/** One autocannon run of `seconds`; latencies of 2xx responses only. */
const autocannonRound = (spec: LoadSpec, seconds: number): Promise<Round> =>
  new Promise((resolve, reject) => {
    const latencies: number[] = [];
    let ok = 0;
    let failed = 0;
    let errors = 0;
    const started = performance.now();
    const request: autocannon.Request = {
      method: spec.method ?? 'GET',
      path: spec.path,
      headers: spec.headers ?? {},
      ...(spec.body === undefined ? {} : { body: spec.body }),
      ...(spec.setupRequest ? { setupRequest: spec.setupRequest as never } : {}),
      ...(spec.onResponse ? { onResponse: ((status: number, body: string) => spec.onResponse!(status, body)) as never } : {}),
    };
    const instance = autocannon(
      { url: spec.url, connections: spec.connections, pipelining: 1, duration: seconds, timeout: 30, requests: [request] },
      (error) => {
        if (error) reject(error);
        else resolve({ latencies, ok, failed, errors, seconds: (performance.now() - started) / 1000 });
      },
    );
    instance.on('response', (_client: unknown, status: number, _bytes: number, responseTime: number) => {
      if (status >= 200 && status < 300) {
        ok += 1;
        latencies.push(responseTime);
      } else {
        failed += 1;
      }
    });
    instance.on('reqError', () => {
      errors += 1;
    });
  });

export const runRound = (spec: LoadSpec, seconds: number): Promise<Round> => withCpu(spec.cpu, () => autocannonRound(spec, seconds));

export type CompareOptions = { warmupSeconds: number; roundSeconds: number };

/** The order of measured rounds: A = scenario, B = baseline. */
export const ROUND_ORDER = 'ABBAABBA';

/**
 * Alternates any two measurable sides: a warm-up of each (JIT, pools, caches), then
 * {@link ROUND_ORDER}.
 */
export const alternate = async (sides: { a: (seconds: number) => Promise<Round>; b: (seconds: number) => Promise<Round> }, options: CompareOptions) => {
  if (options.warmupSeconds > 0) {
    await sides.a(options.warmupSeconds);
    await sides.b(options.warmupSeconds);
  }
  const rounds = { a: [] as Round[], b: [] as Round[] };
  for (const side of ROUND_ORDER) {
    if (side === 'A') rounds.a.push(await sides.a(options.roundSeconds));
    else rounds.b.push(await sides.b(options.roundSeconds));
  }
  return { scenario: pool(rounds.a), baseline: pool(rounds.b) };
};

export const compareLoads = (scenario: LoadSpec, baseline: LoadSpec, options: CompareOptions) =>
  alternate({ a: (seconds) => runRound(scenario, seconds), b: (seconds) => runRound(baseline, seconds) }, options);

/** A single measured side (warm-up, then four rounds). */
export const measureLoad = async (spec: LoadSpec, options: CompareOptions) => {
  if (options.warmupSeconds > 0) await runRound(spec, options.warmupSeconds);
  const rounds: Round[] = [];
  for (let index = 0; index < 4; index += 1) rounds.push(await runRound(spec, options.roundSeconds));
  return pool(rounds);
};
