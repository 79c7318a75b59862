/**
 * The LISTEN/NOTIFY hub (app/db/notifications.ts) on its own: delivery iff commit, payloads
 * over NOTIFY's limit by reference with arrival order kept, reconnection with `reconnected`
 * after the listening backend is killed, and close().
 */
import test from 'ava';
import { sql } from 'slonik';
import { loadConfig } from '../app/config/index.js';
import { createNotificationHub, MAX_INLINE_PAYLOAD_BYTES, parseSessionRevoked, type NotificationHub } from '../app/db/notifications.js';
import { createDatabasePool, type DatabasePool } from '../app/db/pool.js';
import { createLogger } from '../app/logger.js';
import { createTestDatabase, withAdminClient, type TestDatabase } from './support/database.js';
import { eventually } from './support/realtime.js';
import { LogCapture, testEnvironment } from './support/service.js';

type Fixture = { database: TestDatabase; pool: DatabasePool; hub: NotificationHub; config: Awaited<ReturnType<typeof loadConfig>> };

let fixture: Promise<Fixture> | undefined;
const cleanups: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const getFixture = () =>
  (fixture ??= (async () => {
    const database = await createTestDatabase();
    cleanups.push(() => database.drop());
    const config = await loadConfig(testEnvironment(database.url));
    const pool = await createDatabasePool(config.database);
    cleanups.push(() => pool.end());
    const hub = createNotificationHub({ database: config.database, logger: createLogger(config, new LogCapture()), minBackoffMs: 50 });
    cleanups.push(() => hub.close());
    await hub.start();
    return { database, pool, hub, config };
  })());

const collector = async (hub: NotificationHub, channel: string) => {
  const received: string[] = [];
  const unsubscribe = await hub.subscribe(channel, (payload) => received.push(payload));
  return { received, unsubscribe };
};

test.serial('a notification is delivered iff its transaction commits', async (t) => {
  const { pool, hub } = await getFixture();
  const { received, unsubscribe } = await collector(hub, 'hub_test_commit');
  await pool.transaction(async (tx) => hub.publish(tx, 'hub_test_commit', 'committed'));
  await pool
    .transaction(async (tx) => {
      await hub.publish(tx, 'hub_test_commit', 'rolled back');
      throw new Error('abort');
    })
    .catch(() => undefined);
  await pool.transaction(async (tx) => hub.publish(tx, 'hub_test_commit', 'second'));
  await eventually(() => received.length >= 2, 2_000, 'delivery');
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.deepEqual(received, ['committed', 'second']);
  await unsubscribe();
});

test.serial('payloads over the NOTIFY limit go by reference, in order with inline ones', async (t) => {
  const { pool, hub } = await getFixture();
  const { received, unsubscribe } = await collector(hub, 'hub_test_large');
  const large = (n: number) => `${n}:${'é'.repeat(MAX_INLINE_PAYLOAD_BYTES)}`; // 2 bytes per é: twice the limit
  const sent = ['small-0', large(1), 'small-2', large(3), 'ref:not-a-reference', 'small-5'];
  for (const payload of sent) await pool.transaction(async (tx) => hub.publish(tx, 'hub_test_large', payload));
  // Also several in one transaction.
  await pool.transaction(async (tx) => {
    await hub.publish(tx, 'hub_test_large', large(6));
    await hub.publish(tx, 'hub_test_large', 'small-7');
  });
  await eventually(() => received.length >= 8, 3_000, 'delivery');
  t.deepEqual(received, [...sent, large(6), 'small-7']);
  const stored = await pool.oneFirst(sql.unsafe`SELECT count(*)::int FROM notification_payloads WHERE channel = 'hub_test_large'`);
  t.is(stored, 4, 'the three large ones and the one that looked like a reference');
  await unsubscribe();
});

test.serial('after the listening backend is killed the hub reconnects, LISTENs again and says so', async (t) => {
  const { pool, hub, database } = await getFixture();
  const { received, unsubscribe } = await collector(hub, 'hub_test_reconnect');
  let reconnected = 0;
  let disconnected = 0;
  const offReconnected = hub.on('reconnected', () => (reconnected += 1));
  const offDisconnected = hub.on('disconnected', () => (disconnected += 1));
  t.true(hub.isConnected());
  await withAdminClient(
    (client) => client.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'karaxas-notify' AND datname = current_database()"),
    database.name,
  );
  await eventually(() => disconnected === 1, 2_000, 'disconnected');
  await eventually(() => reconnected === 1 && hub.isConnected(), 3_000, 'reconnected');
  await pool.transaction(async (tx) => hub.publish(tx, 'hub_test_reconnect', 'after'));
  await eventually(() => received.includes('after'), 2_000, 'delivery after reconnection');
  offReconnected();
  offDisconnected();
  await unsubscribe();
});

test.serial('a bulk revocation reaches subscribers of the revocation channel as a few parsed batches', async (t) => {
  const { pool, hub } = await getFixture();
  const batches: Array<{ sessionIds: string[]; userIds: string[] }> = [];
  const unsubscribe = await hub.subscribe('karaxas_session_revoked', (payload) => {
    const parsed = parseSessionRevoked(payload);
    if (parsed) batches.push(parsed);
  });
  const userIds = await pool.anyFirst(sql.unsafe`
    INSERT INTO users (email, display_name, password_hash)
    SELECT 'hub-' || g || '@example.test', 'U', 'x' FROM generate_series(1, 200) g RETURNING id`);
  await pool.query(sql.unsafe`
    INSERT INTO user_sessions (user_id, amr, role, expires_at)
    SELECT u, '{pwd}', 'player', now() + interval '1 day' FROM unnest(${sql.array(userIds as string[], 'uuid')}) u, generate_series(1, 5)`);
  await pool.query(sql.unsafe`UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'ops_revoked_all' WHERE revoked_at IS NULL`);
  await eventually(() => batches.reduce((n, b) => n + b.sessionIds.length, 0) >= 1_000, 3_000, 'every session notified');
  t.true(batches.length <= 15, `${batches.length} notifications for 1,000 sessions of 200 users`);
  t.is(new Set(batches.flatMap((b) => b.userIds)).size, 200);
  // A refresh-style update that revokes nothing notifies nothing.
  const before = batches.length;
  await pool.query(sql.unsafe`UPDATE user_sessions SET last_used_at = now()`);
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.is(batches.length, before);
  t.is(parseSessionRevoked('{"sessionIds": "nope"}'), undefined);
  await unsubscribe();
});

test.serial('close() stops listening and reconnecting', async (t) => {
  const { config } = await getFixture();
  const hub = createNotificationHub({ database: config.database, logger: createLogger(config, new LogCapture()) });
  await hub.start();
  t.true(hub.isConnected());
  await hub.close();
  t.false(hub.isConnected());
  await hub.close();
  await t.throwsAsync(() => hub.subscribe('Not A Channel', () => undefined), { instanceOf: TypeError });
});
