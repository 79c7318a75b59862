/**
 * Target 5: 2,000 sockets in one channel. On one instance: ticket-redeeming upgrades per second
 * and the time for a message to reach every socket; the same 2,000 sockets split over two
 * instances (sender on the first); resident memory per idle socket. Baseline: a raw `ws` server
 * (plain upgrades, broadcast from memory), measured the same way from the same client.
 *
 * Memory is read on instances of their own started with V8's young generation capped at 1 MiB
 * (`--max-semi-space-size=1`, the raw ws baseline too): under the upgrade churn V8 grows it to
 * 3 × 16 MiB and keeps it, which is up to 24 KiB "per socket" at 2,000 sockets and not a cost of
 * the sockets — with it, the same run read anywhere from −8 to 39 KiB per socket per batch.
 */
import type { WebSocket } from 'ws';
import { startBaseline, startService, TOKEN_SETTINGS, withChild } from './context.js';
import type { BenchDatabase } from './db.js';
import { createSessions, createTickets, createUsers, type BenchSession } from './fixtures.js';
import type { BenchChild } from './proc.js';
import { percentileOf } from './load.js';
import { closeAll, joinAll, measureFanOut, openSockets } from './realtime.js';
import type { ScenarioResult } from './report.js';

export const SOCKETS = 2_000;
const CHANNEL = 'bench-lobby';
const MESSAGES = 40;
const GAP_MS = 50;
const MEMORY_FLAGS = ['--max-semi-space-size=1'];

type Memory = { type: string; rss: number; heapUsed: number; gcExposed: boolean };

const ticketPaths = async (db: BenchDatabase, sessions: readonly BenchSession[]) =>
  (await db.withClient((client) => createTickets(client, sessions))).map((ticket) => `/ws?ticket=${ticket}`);

const settle = () => new Promise((resolve) => setTimeout(resolve, 1_000));

/**
 * Opens the sockets in four batches, each joining the channel, and reads the server's memory
 * (after a full GC, the sockets idle) before the first batch and after each. The memory per idle
 * socket is the median growth per socket over batches 2–4 (the first pays one-off costs: JIT
 * code, database connections); the growth from no socket to all of them is kept too.
 */
const measureMemory = async (server: BenchChild, paths: readonly string[]) => {
  const batches = 4;
  const size = Math.ceil(paths.length / batches);
  const readings = [await server.request<Memory>('mem')];
  const sockets: WebSocket[] = [];
  const perSocket = { rss: [] as number[], heap: [] as number[] };
  try {
    for (let batch = 0; batch < batches; batch += 1) {
      const slice = paths.slice(batch * size, (batch + 1) * size);
      const opened = await openSockets(server.url, slice);
      sockets.push(...opened.sockets);
      await joinAll(opened.sockets, CHANNEL);
      await settle();
      const reading = await server.request<Memory>('mem');
      const previous = readings[readings.length - 1]!;
      readings.push(reading);
      if (batch > 0) {
        perSocket.rss.push((reading.rss - previous.rss) / slice.length / 1024);
        perSocket.heap.push((reading.heapUsed - previous.heapUsed) / slice.length / 1024);
      }
    }
  } finally {
    await closeAll(sockets);
  }
  return {
    rssPerSocketKiB: percentileOf(perSocket.rss, 50),
    heapPerSocketKiB: percentileOf(perSocket.heap, 50),
    rssPerSocketByBatchKiB: perSocket.rss.map((value) => Number(value.toFixed(1))),
    wholeRssPerSocketKiB: (readings[readings.length - 1]!.rss - readings[0]!.rss) / paths.length / 1024,
  };
};

/** Opens every socket (the upgrade rate), joins the channel and times the fan-out. */
const measureUpgradesAndFanOut = async (server: BenchChild, paths: readonly string[]) => {
  const opened = await openSockets(server.url, paths);
  try {
    await joinAll(opened.sockets, CHANNEL);
    const [sender, ...rest] = opened.sockets as [WebSocket, ...WebSocket[]];
    const fanOut = await measureFanOut({ sender, receivers: rest, channel: CHANNEL, messages: MESSAGES, gapMs: GAP_MS });
    return { upgrades: { rate: opened.rate, seconds: opened.seconds }, fanOut };
  } finally {
    await closeAll(opened.sockets);
  }
};

export const runRealtimeScenarios = async (db: BenchDatabase): Promise<ScenarioResult[]> => {
  const sessions = await db.withClient(async (client) => {
    const users = await createUsers(client, 100, 'not-a-hash-nobody-signs-in', 'rt');
    return createSessions(client, users, SOCKETS / 100 + 1, TOKEN_SETTINGS);
  });
  const receivers = sessions.slice(0, SOCKETS);
  const senderSession = sessions[SOCKETS]!;
  const plainPaths = Array.from({ length: SOCKETS + 1 }, () => '/ws');
  const servicePaths = async () => [...(await ticketPaths(db, [senderSession])), ...(await ticketPaths(db, receivers))];

  const baseline = await withChild(startBaseline(db, 'ws-broadcast'), (raw) => measureUpgradesAndFanOut(raw, plainPaths));
  const baselineMemory = await withChild(startBaseline(db, 'ws-broadcast', { nodeFlags: MEMORY_FLAGS }), (raw) => measureMemory(raw, plainPaths));

  // One instance, fresh (its memory and JIT not shaped by the HTTP scenarios); then a second.
  const { single, dual } = await withChild(startService(db, { label: 'realtime instance A' }), async (service) => {
    const single = await measureUpgradesAndFanOut(service, await servicePaths());
    const dual = await withChild(startService(db, { label: 'realtime instance B' }), async (second) => {
      const half = SOCKETS / 2;
      const [senderPath] = await ticketPaths(db, [senderSession]);
      const onA = await openSockets(service.url, [senderPath!, ...(await ticketPaths(db, receivers.slice(0, half)))]);
      const onB = await openSockets(second.url, await ticketPaths(db, receivers.slice(half)));
      const all = [...onA.sockets, ...onB.sockets];
      try {
        await joinAll(all, CHANNEL);
        const [sender, ...rest] = all as [WebSocket, ...WebSocket[]];
        return await measureFanOut({ sender, receivers: rest, channel: CHANNEL, messages: MESSAGES, gapMs: GAP_MS });
      } finally {
        await closeAll(all);
      }
    });
    return { single, dual };
  });
  const memory = await withChild(startService(db, { label: 'realtime memory instance', nodeFlags: MEMORY_FLAGS }), async (service) =>
    measureMemory(service, await servicePaths()),
  );

  const fanOutDetails = (fanOut: typeof single.fanOut) => ({
    p50: fanOut.p50,
    p99: fanOut.p99,
    max: fanOut.max,
    deliveries: fanOut.deliveries,
    slowestDeliveryPerMessage: fanOut.perMessageMax,
  });
  return [
    {
      scenario: `fan-out to ${SOCKETS} sockets, 1 instance`,
      unit: 'msg/s',
      rate: single.fanOut.rate,
      p50: single.fanOut.p50,
      p99: single.fanOut.p99,
      baseline: `raw ws broadcast (p99 ${baseline.fanOut.p99.toFixed(1)} ms)`,
      baselineRate: baseline.fanOut.rate,
      baselineP99: baseline.fanOut.p99,
      ratio: single.fanOut.rate / baseline.fanOut.rate,
      target: 'p99 ≤ 100 ms',
      pass: single.fanOut.p99 <= 100 && single.fanOut.deliveries === SOCKETS * MESSAGES,
      details: {
        messages: MESSAGES,
        note: 'rate = deliveries per second while a message was in flight; one message at a time, 50 ms apart, after 3 unmeasured ones; latency from the sender’s chat.send to each receiver',
        service: fanOutDetails(single.fanOut),
        baseline: fanOutDetails(baseline.fanOut),
      },
    },
    {
      scenario: `fan-out to ${SOCKETS} sockets, 2 instances`,
      unit: 'msg/s',
      rate: dual.rate,
      p50: dual.p50,
      p99: dual.p99,
      baseline: `raw ws broadcast (p99 ${baseline.fanOut.p99.toFixed(1)} ms)`,
      baselineRate: baseline.fanOut.rate,
      baselineP99: baseline.fanOut.p99,
      ratio: dual.rate / baseline.fanOut.rate,
      target: 'p99 ≤ 150 ms',
      pass: dual.p99 <= 150 && dual.deliveries === SOCKETS * MESSAGES,
      details: { note: `${SOCKETS / 2} sockets per instance, sender on the first; both instances pinned to the server core`, service: fanOutDetails(dual) },
    },
    {
      scenario: `ticket upgrades (${SOCKETS + 1} sockets, 64 in flight)`,
      unit: 'upg/s',
      rate: single.upgrades.rate,
      p50: null,
      p99: null,
      baseline: 'raw ws upgrades',
      baselineRate: baseline.upgrades.rate,
      ratio: single.upgrades.rate / baseline.upgrades.rate,
      target: '≥ 500/s',
      pass: single.upgrades.rate >= 500,
      details: { seconds: single.upgrades.seconds, baselineSeconds: baseline.upgrades.seconds },
    },
    {
      scenario: 'resident memory per idle socket',
      unit: 'KiB',
      rate: memory.rssPerSocketKiB,
      p50: null,
      p99: null,
      baseline: 'raw ws',
      baselineRate: baselineMemory.rssPerSocketKiB,
      ratio: memory.rssPerSocketKiB / baselineMemory.rssPerSocketKiB,
      target: '≤ 20 KiB',
      pass: memory.rssPerSocketKiB <= 20,
      details: {
        note: 'median per-socket RSS growth (after a full GC, sockets joined and idle) over the 2nd, 3rd and 4th batch of 500, young generation capped at 1 MiB; wholeRss* = growth from no socket to 2,000',
        rssPerSocketByBatchKiB: memory.rssPerSocketByBatchKiB,
        baselineRssPerSocketByBatchKiB: baselineMemory.rssPerSocketByBatchKiB,
        heapPerSocketKiB: memory.heapPerSocketKiB,
        baselineHeapPerSocketKiB: baselineMemory.heapPerSocketKiB,
        wholeRssPerSocketKiB: memory.wholeRssPerSocketKiB,
        baselineWholeRssPerSocketKiB: baselineMemory.wholeRssPerSocketKiB,
      },
    },
  ];
};
