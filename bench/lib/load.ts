/**
 * HTTP load through autocannon. Every latency of a run is kept (not autocannon's own summary),
 * so that rounds can be pooled exactly; a scenario and its baseline run in alternating rounds
 * (A B B A) so that drift in the machine's background load biases neither side.
 */
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';

export type RequestSetup = (request: autocannon.Request) => autocannon.Request | undefined;

export type LoadSpec = {
  url: string;
  path: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  /** Per-request rewrite (a fresh refresh token, a different access token). */
  setupRequest?: RequestSetup;
  /** Sees every response body (the refresh chain feeds its next token from here). */
  onResponse?: (status: number, body: string) => void;
};

export type LoadStats = {
  /** Successful (2xx) responses per second. */
  rate: number;
  p50: number;
  p99: number;
  ok: number;
  failed: number;
  errors: number;
  seconds: number;
};

type RoundResult = { latencies: number[]; ok: number; failed: number; errors: number; seconds: number };

const percentile = (sorted: readonly number[], p: number) => {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
};

export const summarise = (latencies: number[], extra: { ok: number; failed: number; errors: number; seconds: number }): LoadStats => {
  const sorted = Float64Array.from(latencies).sort();
  return {
    rate: extra.ok / extra.seconds,
    p50: percentile(sorted as unknown as number[], 50),
    p99: percentile(sorted as unknown as number[], 99),
    ...extra,
  };
};

export const percentileOf = (values: readonly number[], p: number) => percentile(Float64Array.from(values).sort() as unknown as number[], p);

/** One autocannon run of `seconds`; latencies of 2xx responses only. */
export const runRound = (spec: LoadSpec, seconds: number): Promise<RoundResult> =>
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
      ...(spec.onResponse
        ? { onResponse: ((status: number, body: string) => spec.onResponse!(status, body)) as never }
        : {}),
    };
    const instance = autocannon(
      {
        url: spec.url,
        connections: spec.connections,
        pipelining: 1,
        duration: seconds,
        timeout: 30,
        requests: [request],
      },
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

const pool = (rounds: RoundResult[]): LoadStats =>
  summarise(
    rounds.flatMap((round) => round.latencies),
    rounds.reduce(
      (sum, round) => ({
        ok: sum.ok + round.ok,
        failed: sum.failed + round.failed,
        errors: sum.errors + round.errors,
        seconds: sum.seconds + round.seconds,
      }),
      { ok: 0, failed: 0, errors: 0, seconds: 0 },
    ),
  );

export type CompareOptions = { warmupSeconds: number; roundSeconds: number };

/**
 * Warms both sides up, then measures A B B A. Returns the pooled statistics of each side.
 * A warm-up round warms the JIT, the pools and the caches (connections, prepared plans).
 */
export const compareLoads = async (scenario: LoadSpec, baseline: LoadSpec, options: CompareOptions) => {
  if (options.warmupSeconds > 0) {
    await runRound(scenario, options.warmupSeconds);
    await runRound(baseline, options.warmupSeconds);
  }
  const a: RoundResult[] = [];
  const b: RoundResult[] = [];
  a.push(await runRound(scenario, options.roundSeconds));
  b.push(await runRound(baseline, options.roundSeconds));
  b.push(await runRound(baseline, options.roundSeconds));
  a.push(await runRound(scenario, options.roundSeconds));
  return { scenario: pool(a), baseline: pool(b) };
};

/** A single measured side (warm-up, then two rounds). */
export const measureLoad = async (spec: LoadSpec, options: CompareOptions) => {
  if (options.warmupSeconds > 0) await runRound(spec, options.warmupSeconds);
  return pool([await runRound(spec, options.roundSeconds), await runRound(spec, options.roundSeconds)]);
};
