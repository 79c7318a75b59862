/**
 * Target 5: 2,000 sockets in one channel. On one instance: ticket-redeeming upgrades per second,
 * resident memory per idle socket, and the time for a message to reach every socket; then the
 * same 2,000 sockets split over two instances (sender on the first). Baseline: a raw `ws`
 * server (plain upgrades, broadcast from memory), measured the same way from the same client.
 */
import type { WebSocket } from 'ws';
import { startBaseline, startService, TOKEN_SETTINGS, withChild } from './context.js';
import type { BenchDatabase } from './db.js';
import { createSessions, createTickets, createUsers, type BenchSession } from './fixtures.js';
import type { BenchChild } from './proc.js';
import { closeAll, joinAll, measureFanOut, openSockets } from './realtime.js';
import type { ScenarioResult } from './report.js';

export const SOCKETS = 2_000;
const CHANNEL = 'bench-lobby';
const MESSAGES = 40;
const GAP_MS = 50;

type Memory = { type: string; rss: number; heapUsed: number; gcExposed: boolean };

const ticketPaths = async (db: BenchDatabase, sessions: readonly BenchSession[]) =>
  (await db.withClient((client) => createTickets(client, sessions))).map((ticket) => `/ws?ticket=${ticket}`);

/** Opens sockets, joins the channel, reads the server's memory before and after (idle sockets). */
const populate = async (server: BenchChild, paths: readonly string[]) => {
  const before = await server.request<Memory>('mem');
  const opened = await openSockets(server.url, paths);
  await joinAll(opened.sockets, CHANNEL);
  // Let the upgrade garbage go before reading the idle footprint.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const after = await server.request<Memory>('mem');
  return { ...opened, rssPerSocketKiB: (after.rss - before.rss) / paths.length / 1024, heapPerSocketKiB: (after.heapUsed - before.heapUsed) / paths.length / 1024 };
};

/** A fresh instance (its memory not shaped by the HTTP scenarios) serves the sockets. */
export const runRealtimeScenarios = async (db: BenchDatabase): Promise<ScenarioResult[]> =>
  withChild(startService(db, { label: 'realtime instance A' }), (service) => runWith(db, service));

const runWith = async (db: BenchDatabase, service: BenchChild): Promise<ScenarioResult[]> => {
  const sessions = await db.withClient(async (client) => {
    const users = await createUsers(client, 100, 'not-a-hash-nobody-signs-in', 'rt');
    return createSessions(client, users, SOCKETS / 100 + 1, TOKEN_SETTINGS);
  });
  const receivers = sessions.slice(0, SOCKETS);
  const senderSession = sessions[SOCKETS]!;

  // Baseline: raw ws.
  const baseline = await withChild(startBaseline(db, 'ws-broadcast'), async (raw) => {
    const paths = Array.from({ length: SOCKETS + 1 }, () => '/ws');
    const populated = await populate(raw, paths);
    const [sender, ...rest] = populated.sockets as [WebSocket, ...WebSocket[]];
    try {
      const fanOut = await measureFanOut({ sender, receivers: rest, channel: CHANNEL, messages: MESSAGES, gapMs: GAP_MS });
      return { ...populated, fanOut };
    } finally {
      await closeAll(populated.sockets);
    }
  });

  // One instance: the service under test.
  const single = await (async () => {
    const [senderPath] = await ticketPaths(db, [senderSession]);
    const populated = await populate(service, [senderPath!, ...(await ticketPaths(db, receivers))]);
    const [sender, ...rest] = populated.sockets as [WebSocket, ...WebSocket[]];
    try {
      const fanOut = await measureFanOut({ sender, receivers: rest, channel: CHANNEL, messages: MESSAGES, gapMs: GAP_MS });
      return { ...populated, fanOut };
    } finally {
      await closeAll(populated.sockets);
    }
  })();

  // Two instances: half the sockets on a second instance (same core: the box has one server core).
  const dual = await withChild(startService(db, { label: 'service B' }), async (second) => {
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
      rate: single.rate,
      p50: null,
      p99: null,
      baseline: 'raw ws upgrades',
      baselineRate: baseline.rate,
      ratio: single.rate / baseline.rate,
      target: '≥ 500/s',
      pass: single.rate >= 500,
      details: { seconds: single.seconds, baselineSeconds: baseline.seconds },
    },
    {
      scenario: 'resident memory per idle socket',
      unit: 'KiB',
      rate: single.rssPerSocketKiB,
      p50: null,
      p99: null,
      baseline: 'raw ws',
      baselineRate: baseline.rssPerSocketKiB,
      ratio: single.rssPerSocketKiB / baseline.rssPerSocketKiB,
      target: '≤ 20 KiB',
      pass: single.rssPerSocketKiB <= 20,
      details: {
        note: 'RSS after a full GC with the sockets joined and idle, minus RSS before they connected, divided by the sockets',
        heapPerSocketKiB: single.heapPerSocketKiB,
        baselineHeapPerSocketKiB: baseline.heapPerSocketKiB,
      },
    },
  ];
};
