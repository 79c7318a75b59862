/**
 * Chat over websockets and HTTP across two services sharing one database (issue 5, contract §5):
 * cross-instance delivery (≤ 200 ms, exactly once, in order per sender), the HTTP twins with
 * keyset pagination, the shared write limit with doubling mutes, hostile frames and a fuzz test,
 * the heartbeat and the slow-reader bound. Serial: the timing assertions must not compete with
 * the fuzz test for the same two services.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import { createSecurityAuditService } from '../app/audit/service.js';
import { createSecurityAuditStore } from '../app/audit/store.js';
import { createCommitHooks } from '../app/db/after-commit.js';
import { createNotificationHub } from '../app/db/notifications.js';
import { createLogger } from '../app/logger.js';
import { createRealtimeGateway } from '../app/realtime/gateway.js';
import { createRealtimeService } from '../app/realtime/service.js';
import { createRealtimeStore } from '../app/realtime/store.js';
import { createApi, type Api } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { eventually, openSocket, signedInPlayer, type Frame, type TestSocket } from './support/realtime.js';
import { LogCapture, startTestService, type TestService } from './support/service.js';

type Fixture = { a: TestService; b: TestService; apiA: Api; apiB: Api };

const teardowns: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const teardown of teardowns.reverse()) await teardown();
});
const collect = { teardown: (fn: () => Promise<void>) => void teardowns.push(fn) };

// Short mutes so that the doubling can be watched: 1 s, 2 s, 4 s, at most 8 s.
// One JWT secret for both services: a token from either works on both.
const env = { CHAT_MUTE_BASE_SECONDS: '1', CHAT_MUTE_MAX_SECONDS: '8', JWT_SECRET: randomBytes(48).toString('base64url') };

let fixture: Promise<Fixture> | undefined;
const getFixture = () =>
  (fixture ??= (async () => {
    const a = await startTestService(collect, env);
    const b = await startTestService(collect, env, { database: a.database });
    return { a, b, apiA: createApi(a.url), apiB: createApi(b.url) };
  })());

let channelCounter = 0;
const freshChannel = (prefix = 'room') => `${prefix}-${process.pid}-${(channelCounter += 1)}`;

const chatMessages = (socket: TestSocket) => socket.frames.filter((frame) => frame.type === 'chat.message');

test.serial('a message sent on one service reaches members on both within 200 ms, exactly once, in order per sender', async (t) => {
  const { a, b, apiA } = await getFixture();
  const channel = freshChannel();
  const senders = await Promise.all([signedInPlayer(apiA, 'Alice'), signedInPlayer(apiA, 'Bob'), signedInPlayer(apiA, 'Carol')]);
  const listener = await signedInPlayer(apiA, 'Listener');

  // Alice sends through A, Bob through B, Carol through A; listeners sit on both.
  const senderSockets = await Promise.all(senders.map((s, i) => openSocket(apiA, (i === 1 ? b : a).url, s.token)));
  const onA = await openSocket(apiA, a.url, listener.token);
  const onB = await openSocket(apiA, b.url, listener.token);
  for (const socket of [...senderSockets, onA, onB]) await socket.join(channel);

  const perSender = 5; // CHAT_RATE_LIMIT_MAX
  const sentAt = new Map<string, number>();
  await Promise.all(
    senderSockets.map(async (socket, s) => {
      for (let i = 0; i < perSender; i += 1) {
        const clientMsgId = `s${s}-m${i}`;
        sentAt.set(clientMsgId, performance.now());
        socket.send({ type: 'chat.send', channel, text: `hello ${i} from ${s}`, clientMsgId });
      }
    }),
  );
  const total = senders.length * perSender;
  for (const receiver of [onA, onB, ...senderSockets]) {
    await eventually(() => chatMessages(receiver).length >= total, 3_000, 'every message delivered');
  }
  await new Promise((resolve) => setTimeout(resolve, 300)); // anything extra would arrive now

  for (const [name, receiver] of [['A', onA], ['B', onB], ['sender0', senderSockets[0]!]] as const) {
    const received = chatMessages(receiver);
    t.is(received.length, total, `${name}: exactly once`);
    t.is(new Set(received.map((m) => m.id)).size, total, `${name}: no duplicates`);
    for (let s = 0; s < senders.length; s += 1) {
      const fromSender = received.filter((m) => m.userId === senders[s]!.userId).map((m) => m.clientMsgId);
      t.deepEqual(fromSender, Array.from({ length: perSender }, (_, i) => `s${s}-m${i}`), `${name}: sender ${s} in order`);
    }
  }
  // In a burst a sender's later messages also wait for its earlier ones (sends of one
  // connection are processed one at a time); reported, not asserted. The bound is asserted below.
  const latencies = [onA, onB].flatMap((receiver) =>
    receiver.arrivals.filter((x) => x.frame.type === 'chat.message').map((x) => x.at - sentAt.get(x.frame.clientMsgId as string)!),
  );
  t.log(`burst of ${total}: worst send-to-delivery ${Math.max(...latencies).toFixed(1)} ms including queueing`);

  // One message at a time, alternating the sender's service: each reaches both services' members within 200 ms.
  const single = await signedInPlayer(apiA, 'Dora');
  const singleOnA = await openSocket(apiA, a.url, single.token);
  const singleOnB = await openSocket(apiA, b.url, single.token);
  for (const socket of [singleOnA, singleOnB]) await socket.join(channel);
  const each: number[] = [];
  for (let i = 0; i < 5; i += 1) {
    const clientMsgId = `single-${i}`;
    const arrivals = [onA, onB].map((receiver) => receiver.take((f) => f.clientMsgId === clientMsgId, 2_000).then(() => performance.now()));
    const started = performance.now();
    (i % 2 === 0 ? singleOnA : singleOnB).send({ type: 'chat.send', channel, text: `one at a time ${i}`, clientMsgId });
    for (const arrived of await Promise.all(arrivals)) each.push(arrived - started);
  }
  t.true(Math.max(...each) <= 200, `send-to-delivery on both services: ${each.map((ms) => ms.toFixed(1)).join(', ')} ms`);
  t.log(`one at a time: worst ${Math.max(...each).toFixed(1)} ms`);
  singleOnA.close();
  singleOnB.close();
  const sample = chatMessages(onB).find((m) => m.userId === senders[0]!.userId)!;
  t.like(sample, { type: 'chat.message', channel, displayName: 'Alice', text: 'hello 0 from 0', clientMsgId: 's0-m0' });
  t.regex(sample.sentAt as string, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);

  // Only members get messages.
  const outsider = await openSocket(apiA, b.url, listener.token);
  senderSockets[0]!.send({ type: 'chat.send', channel: freshChannel('other'), text: 'elsewhere' });
  await senderSockets[0]!.take((f) => f.type === 'error' && f.code === 'not_joined');
  t.is(chatMessages(outsider).length, 0);
  for (const socket of [...senderSockets, onA, onB, outsider]) socket.close();
});

test.serial('HTTP twins: send, idempotent clientMsgId, history pages with a keyset cursor; websocket members get HTTP messages', async (t) => {
  const { a, apiA, apiB } = await getFixture();
  const channel = freshChannel('history');
  const players = await Promise.all([signedInPlayer(apiA, 'P1'), signedInPlayer(apiA, 'P2'), signedInPlayer(apiA, 'P3')]);
  const member = await openSocket(apiA, a.url, players[0]!.token);
  await member.join(channel);

  const sent: string[] = [];
  for (let i = 0; i < 12; i += 1) {
    const player = players[i % 3]!;
    const api = i % 2 === 0 ? apiA : apiB;
    const response = await api.post<{ id: string; text: string; userId: string; clientMsgId: string | null; channel: string }>(
      `/chat/channels/${channel}/messages`,
      { text: `<b>message</b> ${i} & "quotes"`, ...(i === 0 ? { clientMsgId: 'first' } : {}) },
      player.token,
    );
    t.is(response.status, 201);
    t.is(response.body.text, `<b>message</b> ${i} & "quotes"`, 'text is stored and returned verbatim, never interpreted');
    t.is(response.body.userId, player.userId);
    t.is(response.body.channel, channel);
    sent.push(response.body.id);
  }
  const retry = await apiB.post<{ id: string }>(`/chat/channels/${channel}/messages`, { text: 'different text, same id', clientMsgId: 'first' }, players[0]!.token);
  t.is(retry.status, 201);
  t.is(retry.body.id, sent[0]!, 'a repeated clientMsgId returns the stored message');

  await eventually(() => chatMessages(member).length >= 12, 2_000, 'websocket member got the HTTP messages');
  t.deepEqual(chatMessages(member).map((m) => m.id), sent);

  const pages: string[][] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor === null ? '?limit=5' : `?limit=5&before=${encodeURIComponent(cursor)}`;
    const page = await apiA.get<{ items: Array<{ id: string }>; nextCursor: string | null }>(`/chat/channels/${channel}/messages${query}`, players[1]!.token);
    t.is(page.status, 200);
    pages.push(page.body.items.map((item) => item.id));
    cursor = page.body.nextCursor;
  } while (cursor !== null && pages.length < 10);
  t.deepEqual(pages.map((page) => page.length), [5, 5, 2]);
  t.deepEqual(pages.flat(), [...sent].reverse(), 'every message exactly once, newest first');

  const stored = await withAdminClient(
    (client) => client.query<{ n: number }>('SELECT count(*)::int AS n FROM chat_messages WHERE channel = $1', [channel]),
    a.database.name,
  );
  t.is(stored.rows[0]!.n, 12);

  // Validation.
  const token = players[2]!.token;
  const bad = async (path: string, body: unknown) => (await apiA.post<{ error: { code: string } }>(path, body, token)).body.error?.code;
  t.is(await bad(`/chat/channels/${channel}/messages`, { text: 'x'.repeat(10_000) }), 'validation_failed');
  t.is(await bad(`/chat/channels/${channel}/messages`, { text: 'bell\u0007' }), 'validation_failed');
  t.is(await bad(`/chat/channels/${channel}/messages`, { text: '   ' }), 'validation_failed');
  t.is(await bad(`/chat/channels/${channel}/messages`, { text: 'ok', extra: 1 }), 'validation_failed');
  t.is(await bad(`/chat/channels/Bad%20Channel/messages`, { text: 'ok' }), 'validation_failed');
  t.is((await apiA.get(`/chat/channels/${channel}/messages?before=garbage`, token)).status, 400);
  t.is((await apiA.get(`/chat/channels/${channel}/messages?limit=1000`, token)).status, 400);
  t.is((await apiA.get(`/chat/channels/${channel}/messages`)).status, 401);
  t.is((await apiB.post(`/chat/channels/${channel}/messages`, { text: 'anonymous' })).status, 401);
  member.close();
});

test.serial('write limit: the (max+1)-th message gets rate_limited with a correct retryAfter; repeated violations mute with doubling duration', async (t) => {
  const { a, apiA } = await getFixture();
  const channel = freshChannel('limits');
  const player = await signedInPlayer(apiA, 'Spammer');
  const socket = await openSocket(apiA, a.url, player.token);
  await socket.join(channel);
  let n = 0;
  const send = () => {
    const clientMsgId = `m${(n += 1)}`;
    return socket.request(
      { type: 'chat.send', channel, text: `spam ${n}`, clientMsgId },
      (f) => f.clientMsgId === clientMsgId && (f.type === 'chat.message' || f.type === 'error'),
    );
  };

  const started = performance.now();
  for (let i = 0; i < 5; i += 1) t.is((await send()).type, 'chat.message');
  const limited = await send();
  const elapsed = (performance.now() - started) / 1000;
  t.like(limited, { type: 'error', code: 'rate_limited' });
  // The oldest accepted send leaves the 5 s window in 5 - elapsed seconds (rounded up).
  t.true((limited.retryAfter as number) <= 5 && (limited.retryAfter as number) >= Math.floor(5 - elapsed), `retryAfter ${String(limited.retryAfter)}`);
  t.like(await send(), { type: 'error', code: 'rate_limited' });
  t.like(await send(), { type: 'error', code: 'muted', retryAfter: 1 }, 'the third violation within 60 s mutes for CHAT_MUTE_BASE_SECONDS');
  t.like(await send(), { type: 'error', code: 'muted' });

  await new Promise((resolve) => setTimeout(resolve, 1_050));
  t.like(await send(), { type: 'error', code: 'rate_limited' }, 'after the mute the window is still full');
  t.like(await send(), { type: 'error', code: 'rate_limited' });
  t.like(await send(), { type: 'error', code: 'muted', retryAfter: 2 }, 'the next mute doubles');

  await new Promise((resolve) => setTimeout(resolve, 2_050));
  t.like(await send(), { type: 'error', code: 'rate_limited' });
  t.like(await send(), { type: 'error', code: 'rate_limited' });
  t.like(await send(), { type: 'error', code: 'muted', retryAfter: 4 }, 'and doubles again');

  // HTTP sees the same state: 429 muted with Retry-After and RateLimit headers.
  const http = await apiA.post<{ error: { code: string } }>(`/chat/channels/${channel}/messages`, { text: 'via http' }, player.token);
  t.is(http.status, 429);
  t.is(http.body.error.code, 'muted');
  t.truthy(http.headers.get('retry-after'));
  t.is(http.headers.get('ratelimit-remaining'), '0');

  const events = await withAdminClient(
    (client) =>
      client.query<{ event_type: string; details: Record<string, unknown> }>(
        "SELECT event_type, details FROM security_event_audit WHERE user_id = $1 AND event_type IN ('chat_rate_limited', 'chat_muted') ORDER BY seq",
        [player.userId],
      ),
    a.database.name,
  );
  const mutes = events.rows.filter((row) => row.event_type === 'chat_muted').map((row) => row.details.muteSeconds);
  t.deepEqual(mutes, [1, 2, 4]);
  t.is(events.rows.filter((row) => row.event_type === 'chat_rate_limited').length, 9, 'each violation recorded once; sends while muted are not');
  socket.close();
});

test.serial('the limit holds when the user spreads messages over both services', async (t) => {
  const { a, b, apiA, apiB } = await getFixture();
  const channel = freshChannel('spread');
  const player = await signedInPlayer(apiA, 'Spreader');
  const onA = await openSocket(apiA, a.url, player.token);
  const onB = await openSocket(apiA, b.url, player.token);
  await onA.join(channel);
  await onB.join(channel);
  // Concurrently: websocket sends on A and on B, HTTP sends on A and on B.
  const attempts = await Promise.all(
    Array.from({ length: 12 }, async (_, i) => {
      const clientMsgId = `spread-${i}`;
      if (i % 4 < 2) {
        const socket = i % 4 === 0 ? onA : onB;
        const reply = await socket.request(
          { type: 'chat.send', channel, text: `ws ${i}`, clientMsgId },
          (f) => f.clientMsgId === clientMsgId && (f.type === 'chat.message' || f.type === 'error'),
        );
        return reply.type === 'chat.message' ? 'sent' : String(reply.code);
      }
      const response = await (i % 4 === 2 ? apiA : apiB).post<{ error?: { code: string } }>(
        `/chat/channels/${channel}/messages`,
        { text: `http ${i}`, clientMsgId },
        player.token,
      );
      return response.status === 201 ? 'sent' : String(response.body.error?.code);
    }),
  );
  t.is(attempts.filter((x) => x === 'sent').length, 5, JSON.stringify(attempts));
  t.true(attempts.every((x) => x === 'sent' || x === 'rate_limited' || x === 'muted'));
  const stored = await withAdminClient(
    (client) => client.query<{ n: number }>('SELECT count(*)::int AS n FROM chat_messages WHERE user_id = $1', [player.userId]),
    a.database.name,
  );
  t.is(stored.rows[0]!.n, 5);
  onA.close();
  onB.close();
});

test.serial('hostile frames get error frames or a policy close, and the process stays up', async (t) => {
  const { a, apiA } = await getFixture();
  const player = await signedInPlayer(apiA, 'Hostile');
  const socket = await openSocket(apiA, a.url, player.token);
  const channel = freshChannel('hostile');
  await socket.join(channel);

  t.like(await socket.request('{not json'), { type: 'error', code: 'invalid_json' });
  t.like(await socket.request('[]'), { type: 'error', code: 'validation_failed' });
  t.like(await socket.request('"just a string"'), { type: 'error', code: 'validation_failed' });
  t.like(await socket.request({ type: 'chat.dance' }), { type: 'error', code: 'unknown_type' });
  t.like(await socket.request({ type: 'chat.join', channel: 'NOT VALID' }), { type: 'error', code: 'validation_failed' });
  t.like(await socket.request({ type: 'chat.send', channel, text: 'y'.repeat(501), clientMsgId: 'long' }), {
    type: 'error',
    code: 'validation_failed',
    clientMsgId: 'long',
  });
  t.like(await socket.request({ type: 'chat.send', channel, text: 'nul\u0000byte' }), { type: 'error', code: 'validation_failed' });
  t.like(await socket.request({ type: 'chat.send', channel, text: '\uD800 lone surrogate' }), { type: 'error', code: 'validation_failed' });
  t.like(await socket.request({ type: 'chat.send', channel, text: 'bidi \u202E override' }), { type: 'error', code: 'validation_failed' });
  t.like(await socket.request({ type: 'chat.send', channel, text: 42 }), { type: 'error', code: 'validation_failed' });
  t.like(await socket.request({ type: 'chat.send', channel, text: 'hi', clientMsgId: 'x'.repeat(65) }), { type: 'error', code: 'validation_failed' });
  const binary = socket.take(() => true);
  socket.ws.send(Buffer.from([0, 1, 2, 3]), { binary: true });
  t.like(await binary, { type: 'error', code: 'unsupported_frame' });
  // NFC: a decomposed "é" is stored composed.
  const composed = await socket.request({ type: 'chat.send', channel, text: 'cafe\u0301', clientMsgId: 'nfc' }, (f) => f.clientMsgId === 'nfc');
  t.is(composed.text, 'caf\u00e9');
  t.deepEqual(await socket.request({ type: 'ping' }), { type: 'pong' }, 'still serving after all that');

  // A 10,000-character text does not fit a 4 KiB frame: the socket is closed with 1009.
  socket.send({ type: 'chat.send', channel, text: 'z'.repeat(10_000) });
  t.is((await socket.closedWithin(2_000)).code, 1009);

  // Invalid UTF-8 in a text frame: closed with 1007 by the protocol layer.
  const utf8 = await openSocket(apiA, a.url, player.token);
  utf8.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
  t.is((await utf8.closedWithin(2_000)).code, 1007);

  t.is((await apiA.get('/healthz')).status, 200);
  const after = await openSocket(apiA, a.url, player.token);
  t.deepEqual(await after.request({ type: 'ping' }), { type: 'pong' });
  after.close();
});

/** Frames a client could send: garbage, near-misses of the real frames, and real ones with random fields. */
const frameArbitrary = (channel: string) =>
  fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.json({ maxDepth: 3 }),
    fc.constantFrom('{', '}', '[', 'null', 'true', '0', '""', '{"type":null}', '{"type":{}}', '{"__proto__":{"type":"ping"}}'),
    fc.record(
      {
        type: fc.oneof(fc.constantFrom('ping', 'chat.join', 'chat.send', 'chat.leave', 'pong', 'error', 'chat.message', 'release.drain'), fc.string()),
        channel: fc.oneof(fc.constant(channel), fc.string({ maxLength: 80 }), fc.integer(), fc.constant(null)),
        text: fc.oneof(fc.string({ unit: 'binary', maxLength: 600 }), fc.string({ maxLength: 30 }), fc.integer(), fc.constant(null), fc.object()),
        clientMsgId: fc.oneof(fc.string({ maxLength: 80 }), fc.uuid(), fc.integer()),
      },
      { requiredKeys: [] },
    ).map((frame) => JSON.stringify(frame)),
  );

const knownServerFrames = new Set(['chat.message', 'chat.joined', 'chat.left', 'pong', 'error']);

test.serial('fuzz: thousands of random frames get well-formed replies or a policy close; the process never crashes', async (t) => {
  const { a, apiA } = await getFixture();
  const player = await signedInPlayer(apiA, 'Fuzzer');
  const channel = freshChannel('fuzz');
  let socket = await openSocket(apiA, a.url, player.token);
  let framesSent = 0;
  let reconnects = 0;

  const run = await fc.check(
    fc.asyncProperty(fc.array(frameArbitrary(channel), { minLength: 20, maxLength: 60 }), async (frames) => {
      if (!socket.isOpen) {
        reconnects += 1;
        socket = await openSocket(apiA, a.url, player.token);
      }
      for (const frame of frames) socket.send(frame);
      framesSent += frames.length;
      // Roughly the per-connection frame budget (500/s), so that most frames reach the parser;
      // the ones beyond it get rate_limited replies, which is also a valid answer.
      await new Promise((resolve) => setTimeout(resolve, frames.length * 2));
      // Frames are handled in order: the pong comes after every reply to the batch. A ping
      // dropped by the frame budget is answered rate_limited; ask again.
      let pong: Frame | undefined;
      for (let attempt = 0; attempt < 3 && pong === undefined && socket.isOpen; attempt += 1) {
        pong = await socket.request({ type: 'ping' }, (f) => f.type === 'pong', 1_500).catch(() => undefined);
      }
      if (pong === undefined) {
        const info = await socket.closedWithin(1_000).catch(() => undefined);
        if (info === undefined || ![1007, 1008, 1009].includes(info.code)) {
          throw new Error(`no pong and no policy close: ${JSON.stringify(info)}; frames ${JSON.stringify(socket.frames).slice(0, 300)}`);
        }
        return true;
      }
      const replies: Frame[] = socket.frames.splice(0);
      const odd = replies.find((frame) => !knownServerFrames.has(frame.type) || (frame.type === 'error' && typeof frame.code !== 'string'));
      if (odd) throw new Error(`unexpected frame ${JSON.stringify(odd)}`);
      return true;
    }),
    { numRuns: 60, interruptAfterTimeLimit: 20_000 },
  );
  if (run.failed) t.fail(`${String(run.errorInstance)}\ncounterexample: ${JSON.stringify(run.counterexample).slice(0, 2_000)}`);
  t.true(framesSent >= 1_000, `${framesSent} frames sent`);
  t.log(`${framesSent} random frames, ${reconnects} reconnects`);
  socket.close();

  t.is((await apiA.get('/healthz')).status, 200);
  const entries = a.logs.entries();
  t.false(
    entries.some((entry) => entry.severity === 'ERROR' || entry.severity === 'CRITICAL'),
    'no error was logged while handling random frames',
  );
});

test.serial('heartbeat drops a peer that stops answering pings; a slow reader is terminated instead of buffering without bound', async (t) => {
  const { a, apiA } = await getFixture();
  // A second gateway on its own HTTP server with a fast heartbeat and a small buffer bound, on
  // the same database (tickets issued by service A redeem here).
  const logs = new LogCapture();
  const logger = createLogger(a.config, logs);
  const hub = createNotificationHub({ database: a.config.database, logger });
  // This gateway's own commit hooks (over service A's pool), as app/server.ts wires them.
  const { pool, afterCommit } = createCommitHooks({ pool: a.pool, logger });
  const realtime = createRealtimeService({
    pool,
    store: createRealtimeStore(pool),
    audit: createSecurityAuditService({ store: createSecurityAuditStore(pool), logger, afterCommit }),
    hub,
    config: a.config,
    logger,
  });
  const gateway = createRealtimeGateway({ config: a.config, logger, realtime, hub, heartbeatIntervalMs: 150, maxBufferedBytes: 256 * 1024 });
  await Promise.all([hub.start(), gateway.ready]);
  const server = createServer((_req, res) => res.writeHead(404).end());
  gateway.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.teardown(async () => {
    await gateway.shutdown(100);
    await hub.close();
    await new Promise((resolve) => server.close(resolve));
  });

  const player = await signedInPlayer(apiA, 'Heart');
  const silent = await openSocket(apiA, url, player.token, { autoPong: false });
  const healthy = await openSocket(apiA, url, player.token);
  const silentClosed = await silent.closedWithin(1_500);
  t.is(silentClosed.code, 1006, 'terminated without a close handshake');
  t.true(healthy.isOpen, 'a peer that answers pings stays');

  // A reader that never reads: the server stops buffering at the bound and drops it.
  (healthy.ws as unknown as { _socket: { pause: () => void } })._socket.pause();
  const [connection] = gateway.registry.forUser(player.userId);
  t.truthy(connection);
  const chunk = JSON.stringify({ type: 'chat.message', text: 'x'.repeat(60_000) });
  let sent = 0;
  while (gateway.registry.has(connection!) && sent < 4_000) {
    gateway.sendRaw(connection!, chunk);
    sent += 1;
    if (sent % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  t.false(gateway.registry.has(connection!), 'the slow reader was terminated');
  t.true(sent * chunk.length < 200 * 1024 * 1024, `terminated after ${sent} frames`);
  t.true(logs.entries().some((entry) => entry.message === 'slow websocket reader terminated'));
  healthy.close();
});
