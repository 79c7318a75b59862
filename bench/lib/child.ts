/**
 * The child side of the bench's IPC channel: `ready`, and replies to `mem` (memory after a full
 * GC when --expose-gc is on), `eld-start` / `eld-stop` (event-loop delay measured in this
 * process with perf_hooks.monitorEventLoopDelay) and `stop`.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

type Handler = (message: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>;

export const serveBenchIpc = (options: { url: string; stop: () => Promise<void>; handlers?: Record<string, Handler> }) => {
  if (!process.send) throw new Error('bench children are started by bench/run.ts with an IPC channel');
  // Node's histogram records the whole time between two samples, the sampling interval included
  // (an idle loop reads 5 ms at resolution 5): the delay is what exceeds the interval.
  const resolutionMs = 5;
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  const reply = (cmd: string, body: Record<string, unknown>) => process.send?.({ type: `${cmd}:reply`, ...body });
  const gc = (globalThis as { gc?: () => void }).gc;

  const builtIn: Record<string, Handler> = {
    // CPU time of this process (every thread) in µs, and a monotonic clock in ms.
    cpu: () => {
      const usage = process.cpuUsage();
      return { cpuMicros: usage.user + usage.system, at: performance.now() };
    },
    mem: () => {
      if (gc) {
        gc();
        gc();
      }
      const usage = process.memoryUsage();
      return { rss: usage.rss, heapUsed: usage.heapUsed, external: usage.external, gcExposed: gc !== undefined };
    },
    'eld-start': () => {
      histogram.reset();
      histogram.enable();
      return {};
    },
    'eld-stop': () => {
      histogram.disable();
      const ms = (ns: number) => Math.max(0, ns / 1e6 - resolutionMs);
      return {
        p50: ms(histogram.percentile(50)),
        p99: ms(histogram.percentile(99)),
        max: ms(histogram.max),
        mean: ms(histogram.mean),
        samples: histogram.count,
        resolutionMs,
      };
    },
  };

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await options.stop();
    } finally {
      process.exit(0);
    }
  };

  process.on('message', (message: Record<string, unknown>) => {
    const cmd = String(message.cmd);
    if (cmd === 'stop') {
      void stop();
      return;
    }
    const handler = options.handlers?.[cmd] ?? builtIn[cmd];
    if (!handler) {
      reply(cmd, { error: `unknown command ${cmd}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(message))
      .then(
        (body) => reply(cmd, body),
        (error: unknown) => reply(cmd, { error: error instanceof Error ? error.message : String(error) }),
      );
  });
  // The bench went away: do not linger.
  process.on('disconnect', () => void stop());
  process.send({ type: 'ready', url: options.url });
};
