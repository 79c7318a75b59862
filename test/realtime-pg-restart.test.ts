/**
 * Restarting PostgreSQL under connected websockets (issue 5): two services on a PostgreSQL of
 * this test's own (embedded, so it can be stopped), sockets on both; the database is stopped
 * and started again on the same folder and port; afterwards cross-instance delivery and
 * revocation work again without restarting the services, and the sockets survived.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../app/db/embedded.js';
import { runMigrations } from '../app/db/migrate.js';
import { createApi } from './support/api.js';
import { eventually, openSocket, signedInPlayer, type TestSocket } from './support/realtime.js';
import { startTestService } from './support/service.js';

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

const chatMessages = (socket: TestSocket) => socket.frames.filter((frame) => frame.type === 'chat.message');

test('after a PostgreSQL restart, cross-instance delivery and revocation work again without restarting the app', async (t) => {
  t.timeout(60_000);
  // The embedded server runs as the "postgres" OS user when we are root: the folder must be traversable.
  const scratch = await mkdtemp(join(tmpdir(), 'karaxas-rt-restart-'));
  await chmod(scratch, 0o711);
  const options = {
    directory: join(scratch, 'pg'),
    port: await freePort(),
    persistent: true,
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
  };
  let database: EmbeddedDatabase | undefined = await startEmbeddedDatabase(options);
  // Registered first, so it runs after the services' teardowns (ava runs them in reverse).
  t.teardown(async () => {
    await database?.stop().catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  });
  const url = database.url('postgres');
  await runMigrations({ connectionUri: url, sslMode: 'disable', sslRootCert: undefined, connectTimeoutMs: 5_000 });

  const env = { DB_SSLMODE: 'disable', JWT_SECRET: randomBytes(48).toString('base64url') };
  const shared = { name: 'postgres', url, drop: async () => undefined };
  const a = await startTestService(t, env, { database: shared });
  const b = await startTestService(t, env, { database: shared });
  const apiA = createApi(a.url);
  const apiB = createApi(b.url);

  const alice = await signedInPlayer(apiA, 'Alice');
  const bob = await signedInPlayer(apiA, 'Bob');
  const channel = 'restart-room';
  const aliceOnA = await openSocket(apiA, a.url, alice.token);
  const bobOnB = await openSocket(apiA, b.url, bob.token);
  const bobOnA = await openSocket(apiA, a.url, bob.token);
  for (const socket of [aliceOnA, bobOnB, bobOnA]) await socket.join(channel);

  aliceOnA.send({ type: 'chat.send', channel, text: 'before', clientMsgId: 'before' });
  await bobOnB.take((f) => f.clientMsgId === 'before');

  // Stop and start PostgreSQL on the same folder and port.
  await database.stop();
  database = undefined;
  await new Promise((resolve) => setTimeout(resolve, 300));
  database = await startEmbeddedDatabase(options);
  const restartedAt = performance.now();

  // Send through A until the database accepts writes again (the pool reconnects on demand);
  // then the message must reach B's member, which needs B's listener to be back.
  let attempt = 0;
  await eventually(
    async () => {
      attempt += 1;
      const response = await apiA.post(`/chat/channels/${channel}/messages`, { text: `after ${attempt}`, clientMsgId: `after-${attempt}` }, alice.token);
      return response.status === 201;
    },
    15_000,
    'the database accepting writes',
  );
  await eventually(() => chatMessages(bobOnB).some((f) => f.clientMsgId === `after-${attempt}`), 10_000, 'delivery to the other instance');
  t.log(`delivery restored ${(performance.now() - restartedAt).toFixed(0)} ms after PostgreSQL was back (${attempt} attempts)`);

  // Both directions, over websockets, exactly once, promptly.
  const sentAt = performance.now();
  bobOnB.send({ type: 'chat.send', channel, text: 'from b', clientMsgId: 'from-b' });
  const arrived = await aliceOnA.take((f) => f.clientMsgId === 'from-b', 2_000);
  t.is(arrived.text, 'from b');
  t.true(performance.now() - sentAt < 1_000);
  aliceOnA.send({ type: 'chat.send', channel, text: 'from a', clientMsgId: 'from-a' });
  await bobOnB.take((f) => f.clientMsgId === 'from-a', 2_000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  for (const socket of [aliceOnA, bobOnB, bobOnA]) {
    const ids = chatMessages(socket).map((f) => f.id);
    t.is(new Set(ids).size, ids.length, 'no duplicates after the resync');
  }
  t.true([aliceOnA, bobOnB, bobOnA].every((socket) => socket.isOpen), 'sockets survived the restart');

  // Revocation notifications flow again too: Bob's logout closes his sockets on both services.
  t.is((await apiB.post('/auth/logout', undefined, bob.token)).status, 204);
  const closed = await Promise.all([bobOnB.closedWithin(1_000), bobOnA.closedWithin(1_000)]);
  t.deepEqual(closed.map((c) => c.code), [4001, 4001]);
  aliceOnA.close();
});
