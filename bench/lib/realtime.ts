/**
 * Websocket load: many `ws` clients in this process (the generator core), ticket-redeeming
 * upgrades, one channel, and the time from a sender's frame to its delivery on every socket.
 */
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { percentileOf } from './load.js';

export type Receiver = { ws: WebSocket; latencies: number[] };

const wsUrlOf = (httpUrl: string) => httpUrl.replace(/^http/, 'ws');

const open = (url: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    // The receivers are measuring instruments: no UTF-8 validation of frames the server wrote.
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 30_000, skipUTF8Validation: true });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_request, response) => reject(new Error(`upgrade refused: ${response.statusCode}`)));
    ws.once('error', reject);
  });

/** Opens one socket per URL with `concurrency` handshakes in flight; the upgrade rate is over the whole batch. */
export const openSockets = async (httpUrl: string, paths: readonly string[], concurrency = 64) => {
  const base = wsUrlOf(httpUrl);
  const sockets: WebSocket[] = new Array(paths.length);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, paths.length) }, async () => {
      while (next < paths.length) {
        const index = next++;
        sockets[index] = await open(`${base}${paths[index]}`);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { sockets, seconds, rate: paths.length / seconds };
};

const frames = (ws: WebSocket, predicate: (frame: Record<string, unknown>) => boolean, timeoutMs = 30_000) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.off('message', onMessage);
      reject(new Error('timed out waiting for a frame'));
    }, timeoutMs);
    const onMessage = (data: Buffer) => {
      const frame = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
      if (!predicate(frame)) return;
      clearTimeout(timer);
      ws.off('message', onMessage);
      resolve();
    };
    ws.on('message', onMessage);
  });

/** Every socket joins `channel` (chat.join → chat.joined). */
export const joinAll = async (sockets: readonly WebSocket[], channel: string) => {
  await Promise.all(
    sockets.map(async (ws) => {
      const joined = frames(ws, (frame) => frame.type === 'chat.joined' && frame.channel === channel);
      ws.send(JSON.stringify({ type: 'chat.join', channel }));
      await joined;
    }),
  );
};

/**
 * The sender sends `messages` chat.send frames, one at a time (the next once every receiver has
 * the previous one, plus `gapMs`); each receiver records the time from the send to its delivery.
 */
export const measureFanOut = async (options: {
  sender: WebSocket;
  receivers: readonly WebSocket[];
  channel: string;
  messages: number;
  gapMs: number;
  /** Sent first and not measured (JIT, pools, the first NOTIFY round trip). */
  warmupMessages?: number;
}) => {
  const { sender, receivers, channel } = options;
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let pending = 0;
  let allDelivered: (() => void) | undefined;
  // A delivery is timed when its frame is read; the id is found without parsing the whole frame.
  const marker = Buffer.from('"clientMsgId":"');
  const listeners = receivers.map((ws) => {
    const onMessage = (data: Buffer) => {
      const received = performance.now();
      const start = data.indexOf(marker);
      if (start < 0) return;
      const from = start + marker.length;
      const sent = sentAt.get(data.toString('latin1', from, data.indexOf(34, from)));
      if (sent === undefined) return;
      latencies.push(received - sent);
      pending -= 1;
      if (pending === 0) allDelivered?.();
    };
    ws.on('message', onMessage);
    return () => ws.off('message', onMessage);
  });
  const onSenderFrame = (data: Buffer) => {
    const frame = JSON.parse(data.toString('utf8')) as { type: string; code?: string };
    if (frame.type === 'error') throw new Error(`sender got an error frame: ${frame.code}`);
  };
  sender.on('message', onSenderFrame);
  let busy = 0;
  const warmup = options.warmupMessages ?? 3;
  const perMessageMax: number[] = [];
  try {
    for (let index = -warmup; index < options.messages; index += 1) {
      const before = latencies.length;
      const clientMsgId = `bench-${Date.now().toString(36)}-${index < 0 ? `w${-index}` : index}`;
      pending = receivers.length;
      const delivered = new Promise<void>((resolve, reject) => {
        allDelivered = resolve;
        setTimeout(() => reject(new Error(`message ${index}: ${pending} of ${receivers.length} deliveries missing after 30 s`)), 30_000).unref();
      });
      const started = performance.now();
      sentAt.set(clientMsgId, started);
      sender.send(JSON.stringify({ type: 'chat.send', channel, text: `bench message ${index}`, clientMsgId }));
      await delivered;
      if (index < 0) {
        latencies.length = before;
      } else {
        busy += performance.now() - started;
        perMessageMax.push(Math.max(...latencies.slice(before)));
      }
      await new Promise((resolve) => setTimeout(resolve, options.gapMs));
    }
  } finally {
    for (const off of listeners) off();
    sender.off('message', onSenderFrame);
  }
  return {
    p50: percentileOf(latencies, 50),
    p99: percentileOf(latencies, 99),
    max: Math.max(...latencies),
    deliveries: latencies.length,
    /** Deliveries per second while a message was in flight. */
    rate: latencies.length / (busy / 1000),
    /** The slowest delivery of each message, in order (ms). */
    perMessageMax: perMessageMax.map((value) => Number(value.toFixed(1))),
  };
};

export const closeAll = async (sockets: readonly WebSocket[]) => {
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once('close', () => resolve());
          ws.terminate();
        }),
    ),
  );
};
