/**
 * The per-minute security-event counters of migration 0008 on real PostgreSQL: the metrics'
 * last1h / last24h equal the plain count(*) definition (randomised over ~26 hours of events,
 * across archive cuts and session time zones), the query reads at most the boundary minute of
 * raw rows (EXPLAIN ANALYZE), the migration's backfill on a database that already has events
 * (also with an append in flight while it runs), and the pruning of minutes older than 48 hours.
 *
 * The insert trigger stamps created_at with clock_timestamp(), so a test cannot write an event
 * "26 hours ago" through it. `installTestClock` replaces, in the test's own database, exactly that
 * assignment of the installed trigger function with one that takes the time from
 * details.test_clock when present; everything else (chain, head, counters, minute upsert,
 * pruning) is the migration's code.
 */
import { isDeepStrictEqual } from 'node:util';
import test from 'ava';
import fc from 'fast-check';
import type pg from 'pg';
import { sql } from 'slonik';
import { z } from 'zod';
import { countsByTypeQuery, createSecurityAuditStore } from '../app/audit/store.js';
import { securityEventTypes } from '../app/audit/types.js';
import { loadMigrations, runMigrations } from '../app/db/migrate.js';
import { createDatabasePool, type DatabasePool } from '../app/db/pool.js';
import { createTestDatabase, testSslMode, withAdminClient, type TestDatabase } from './support/database.js';

const HOUR_US = 3_600_000_000;
const MINUTE_US = 60_000_000;

const poolFor = (database: TestDatabase) =>
  createDatabasePool({
    connectionUri: database.url,
    sslMode: testSslMode(),
    sslRootCert: undefined,
    poolSize: 4,
    statementTimeoutMs: 60_000,
    connectTimeoutMs: 10_000,
  });

const run = <R extends pg.QueryResultRow = Record<string, unknown>>(database: TestDatabase, text: string, values: unknown[] = []) =>
  withAdminClient(async (client) => (await client.query<R>(text, values)).rows, database.name);

/** A migrated database of the test's own, dropped afterwards. */
const freshDatabase = async (t: { teardown: (fn: () => Promise<void>) => void }) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  return database;
};

const CLOCK_ASSIGNMENT = 'NEW.created_at := clock_timestamp();';

/** See the file header: the installed trigger, with created_at taken from details.test_clock when given. */
const installTestClock = async (database: TestDatabase) => {
  const [row] = await run<{ definition: string }>(
    database,
    "SELECT pg_get_functiondef('security_event_audit_before_insert()'::regprocedure) AS definition",
  );
  const definition = row!.definition;
  if (definition.split(CLOCK_ASSIGNMENT).length !== 2) throw new Error(`expected one "${CLOCK_ASSIGNMENT}" in the trigger:\n${definition}`);
  await run(database, definition.replace(CLOCK_ASSIGNMENT, "NEW.created_at := coalesce((NEW.details->>'test_clock')::timestamptz, clock_timestamp());"));
};

type Event = { type: string; offsetMicros: number };

const show = (value: unknown) => JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));

/**
 * Appends `events` through the insert trigger, each at `base` (default: the database's now(),
 * taken once) plus its offset, in the given order, 400 per transaction (each append leaves a dead
 * version of the head, which one transaction cannot prune).
 */
const appendAt = async (database: TestDatabase, events: readonly Event[], base?: string) =>
  withAdminClient(async (client) => {
    base ??= (await client.query<{ base: string }>("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS base")).rows[0]!.base;
    for (let from = 0; from < events.length; from += 400) {
      const batch = events.slice(from, from + 400);
      await client.query(
        `INSERT INTO security_event_audit (event_type, details)
         SELECT u.type, jsonb_build_object('test_clock', $1::timestamptz + (u.offset_us::text || ' microseconds')::interval)
           FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS u(type, offset_us, position)
          ORDER BY u.position`,
        [base, batch.map((event) => event.type), batch.map((event) => String(Math.round(event.offsetMicros)))],
      );
    }
  }, database.name);

const windowRow = z.object({ event_type: z.enum(securityEventTypes), total: z.bigint(), last1h: z.number(), last24h: z.number() });

/** The metrics' count(*) definition before migration 0008: the truth the counters must equal. */
const countStarQuery = sql.type(windowRow)`
  SELECT c.event_type, c.total,
         (SELECT count(*) FROM security_event_audit a
           WHERE a.event_type = c.event_type AND a.created_at >= now() - interval '1 hour')::int AS last1h,
         (SELECT count(*) FROM security_event_audit a
           WHERE a.event_type = c.event_type AND a.created_at >= now() - interval '24 hours')::int AS last24h
    FROM security_event_counts c
   ORDER BY c.event_type`;

/**
 * In one transaction (one now(), one snapshot), optionally under a session TimeZone: the counters'
 * query (`counters`, and whether it vouches for itself: `bucketsExact`), the store's method
 * (`viaStore`: the counters, or count(*) when an archive cut lies within the last day) and the
 * count(*) definition.
 */
const bothDefinitions = (pool: DatabasePool, timeZone?: string) =>
  pool.transaction(async (tx) => {
    await tx.query(sql.unsafe`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`);
    if (timeZone !== undefined) await tx.query(sql.unsafe`SELECT set_config('TimeZone', ${timeZone}, true)`);
    const fast = await tx.any(countsByTypeQuery);
    return {
      counters: fast.map(({ buckets_exact: _, ...row }) => row),
      bucketsExact: fast.every((row) => row.buckets_exact),
      // The store on this transaction's connection: the same now() and snapshot.
      viaStore: await createSecurityAuditStore(tx as unknown as DatabasePool).countsByType(),
      countStar: await tx.any(countStarQuery),
    };
  });

/** Around the windows' start points: rows on both sides of wherever the boundary minute falls while the test runs. */
const nearBoundary = (centreMicros: number) => fc.integer({ min: centreMicros - 3 * MINUTE_US, max: centreMicros + 3 * MINUTE_US });

const eventArbitrary = fc.record({
  type: fc.constantFrom('login_failed', 'login_succeeded', 'account_locked', 'rate_limited', 'refresh_rotated', 'ops_auth_failed'),
  offsetMicros: fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: -26 * HOUR_US, max: 0 }) },
    { weight: 2, arbitrary: nearBoundary(-HOUR_US) },
    { weight: 2, arbitrary: nearBoundary(-24 * HOUR_US) },
    // Right at minute edges (relative to the run's now()).
    { weight: 1, arbitrary: fc.integer({ min: -25 * 60, max: 0 }).map((minutes) => minutes * MINUTE_US) },
  ),
});

const TIME_ZONES = ['UTC', 'Asia/Kathmandu', 'America/St_Johns', 'Australia/Lord_Howe', 'Pacific/Chatham', 'Europe/Berlin'];

test('property: last1h / last24h from the minute counters equal count(*) over the rows, for any spread of events over 26 hours', async (t) => {
  t.timeout(180_000);
  const database = await freshDatabase(t);
  await installTestClock(database);
  const pool = await poolFor(database);
  t.teardown(() => pool.end());

  let checks = 0;
  let populatedChecks = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(eventArbitrary, { minLength: 1, maxLength: 300, size: 'max' }), fc.constantFrom(...TIME_ZONES), async (events, timeZone) => {
      await appendAt(database, events);
      const { counters, bucketsExact, viaStore, countStar } = await bothDefinitions(pool, timeZone);
      checks += 1;
      if (countStar.some((row) => row.last1h > 0 && row.last24h > row.last1h)) populatedChecks += 1;
      if (!bucketsExact || !isDeepStrictEqual(counters, countStar) || !isDeepStrictEqual(viaStore, countStar)) {
        throw new Error(`counters ${show(counters)} (exact: ${bucketsExact}) ≠ count(*) ${show(countStar)} (TimeZone ${timeZone})`);
      }
    }),
    { numRuns: 40 },
  );
  t.is(checks, 40);
  t.true(populatedChecks > 30, 'the windows were not trivially empty');

  // The trail now holds thousands of rows, many within minutes of both window starts: as the
  // windows slide (the real clock moves on), every split of a boundary minute agrees too.
  const [{ n }] = (await run<{ n: number }>(database, 'SELECT count(*)::int AS n FROM security_event_audit')) as [{ n: number }];
  t.true(n > 3_000, `${n} rows`);
  for (let i = 0; i < 8; i += 1) {
    const { counters, bucketsExact, countStar } = await bothDefinitions(pool);
    t.true(bucketsExact);
    t.deepEqual(counters, countStar);
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
  // Through the pool, as the service calls it.
  const viaPool = await createSecurityAuditStore(pool).countsByType();
  t.deepEqual(viaPool.map((row) => row.event_type), (await bothDefinitions(pool)).countStar.map((row) => row.event_type));
});

test('archive cuts reaching into the last 24 hours leave the windows equal to count(*) over the remaining rows', async (t) => {
  t.timeout(120_000);
  const database = await freshDatabase(t);
  await installTestClock(database);
  const pool = await poolFor(database);
  t.teardown(() => pool.end());
  const store = createSecurityAuditStore(pool);

  // In time order (as the trigger's clock guarantees): every 20 s over 26 hours, dense (every 0.5 s)
  // within 3 minutes of both window starts.
  const offsets = new Set<number>();
  for (let us = -26 * HOUR_US; us <= 0; us += 20_000_000) offsets.add(us);
  for (const centre of [-HOUR_US, -24 * HOUR_US]) for (let us = centre - 3 * MINUTE_US; us <= centre + 3 * MINUTE_US; us += 500_000) offsets.add(us);
  const types = ['login_failed', 'rate_limited', 'account_locked'];
  const events = [...offsets].sort((a, b) => a - b).map((offsetMicros, index) => ({ type: types[index % 3]!, offsetMicros: offsetMicros - 5_000_000 }));
  await appendAt(database, events);

  /** The store agrees with count(*); the counters are used (and agree) unless a cut lies within the last day. */
  const agree = async (label: string, counters: 'used' | 'bypassed') => {
    const both = await bothDefinitions(pool);
    t.deepEqual(both.viaStore, both.countStar, label);
    t.is(both.bucketsExact, counters === 'used', label);
    if (counters === 'used') t.deepEqual(both.counters, both.countStar, label);
    return both.countStar;
  };
  const before = await agree('before any cut', 'used');
  t.true(before.every((row) => row.last24h > 1_000 && row.last1h > 100), show(before));

  const cutAt = async (hoursAgo: number) => {
    const [last] = await run<{ seq: string; hash: string; n: string }>(
      database,
      `SELECT seq::text, hash, (SELECT count(*) FROM security_event_audit WHERE seq <= s.seq)::text AS n
         FROM security_event_audit s WHERE s.created_at < now() - $1 * interval '1 hour' ORDER BY s.seq DESC LIMIT 1`,
      [hoursAgo],
    );
    t.is(await store.archiveThrough(BigInt(last!.seq), BigInt(last!.n), last!.hash), BigInt(last!.n));
  };
  // A cut before the window changes nothing; one 23 hours ago cuts into last24h, one 59 minutes
  // ago into last1h as well: the minute counters still hold the archived rows, so the store counts
  // rows until the cut is a day old.
  // (The windows also slide as the test runs, a few rows a second near their starts: the
  // comparisons between steps have margins well above that drift.)
  await cutAt(25);
  const after25 = await agree('cut 25 h ago', 'used');
  t.true(after25.every((row, i) => before[i]!.last24h - row.last24h < 20), show(after25));
  await cutAt(23);
  const after23 = await agree('cut 23 h ago', 'bypassed');
  t.true(after23.every((row, i) => row.last24h < before[i]!.last24h - 100), show(after23));
  await cutAt(59 / 60);
  const after59 = await agree('cut 59 min ago', 'bypassed');
  t.true(after59.every((row, i) => row.last1h < after23[i]!.last1h - 20 && row.last1h > 0), show(after59));

  // Everything archived: both windows empty, totals kept; new events count again.
  const [{ seq, hash, n }] = (await run<{ seq: string; hash: string; n: string }>(
    database,
    'SELECT s.seq::text, s.hash, (SELECT count(*) FROM security_event_audit)::text AS n FROM security_event_audit s ORDER BY s.seq DESC LIMIT 1',
  )) as [{ seq: string; hash: string; n: string }];
  await store.archiveThrough(BigInt(seq), BigInt(n), hash);
  const empty = await agree('everything archived', 'bypassed');
  t.true(empty.every((row) => row.last1h === 0 && row.last24h === 0 && row.total > 0n));
  await appendAt(database, [{ type: 'rate_limited', offsetMicros: 0 }]);
  const again = await agree('after a new event', 'bypassed');
  t.like(again.find((row) => row.event_type === 'rate_limited'), { last1h: 1, last24h: 1 });
  t.deepEqual((await store.verifyChain()).ok, true);
});

test('plan: the metrics query reads at most the boundary minute of raw rows per window, not the last 24 hours', async (t) => {
  t.timeout(180_000);
  const database = await freshDatabase(t);
  const ROWS = 200_000;
  // 200,000 events in the last 24 hours (a credential-stuffing day), seq order = time order; the
  // trigger is bypassed for speed and its counters are filled as it would have left them.
  await withAdminClient(async (client) => {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    await client.query(
      `INSERT INTO security_event_audit (event_type, details, created_at, prev_hash, hash)
       SELECT (ARRAY['login_failed','login_succeeded','rate_limited','account_locked','refresh_rotated','logout','ws_ticket_issued'])[1 + g % 7],
              '{}', now() - interval '24 hours' + g * (interval '24 hours' / $1::int), repeat('0', 64), repeat('0', 64)
         FROM generate_series(1, $1::int) g`,
      [ROWS],
    );
    await client.query(`
      INSERT INTO security_event_counts (event_type, total)
      SELECT event_type, count(*) FROM security_event_audit GROUP BY event_type`);
    await client.query(`
      INSERT INTO security_event_counts_by_minute (event_type, minute, count)
      SELECT event_type, date_trunc('minute', created_at, 'UTC'), count(*) FROM security_event_audit GROUP BY 1, 2`);
    await client.query('COMMIT');
    await client.query('VACUUM (ANALYZE) security_event_audit');
    await client.query('VACUUM (ANALYZE) security_event_counts_by_minute');
    // security_event_counts and the anchor stay unanalysed, as small tables often are.
  }, database.name);

  type PlanNode = {
    'Node Type': string;
    'Relation Name'?: string;
    'Total Cost': number;
    'Plan Rows'?: number;
    'Actual Rows'?: number;
    'Actual Loops'?: number;
    Plans?: PlanNode[];
  };
  const nodes = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodes)];
  const { plan, boundaryRows, oldRows, counters, truth } = await withAdminClient(async (client) => {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const explained = (await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${countsByTypeQuery.sql}`)).rows[0]!;
    // Same now(): the rows of the two boundary minutes, and what the count(*) definition reads.
    const [bounds] = (await client.query<{ boundary: number; old: number }>(`
      SELECT (SELECT count(*) FROM security_event_audit
               WHERE (created_at >= now() - interval '1 hour' AND created_at < date_trunc('minute', now() - interval '1 hour', 'UTC') + interval '1 minute')
                  OR (created_at >= now() - interval '24 hours' AND created_at < date_trunc('minute', now() - interval '24 hours', 'UTC') + interval '1 minute'))::int AS boundary,
             (SELECT count(*) FILTER (WHERE created_at >= now() - interval '1 hour') + count(*) FILTER (WHERE created_at >= now() - interval '24 hours')
                FROM security_event_audit)::int AS old`)).rows;
    const both = {
      counters: (await client.query(countsByTypeQuery.sql)).rows.map(({ buckets_exact: _, ...row }: Record<string, unknown>) => row),
      truth: (await client.query(countStarQuery.sql)).rows,
    };
    await client.query('COMMIT');
    return { plan: explained['QUERY PLAN'][0]!.Plan, boundaryRows: bounds!.boundary, oldRows: bounds!.old, ...both };
  }, database.name);

  t.deepEqual(counters, truth);
  const all = nodes(plan);
  const json = JSON.stringify(plan);
  const onTable = (relation: string) => all.filter((node) => node['Relation Name'] === relation);
  t.false(onTable('security_event_audit').some((node) => node['Node Type'] === 'Seq Scan'), `Seq Scan on security_event_audit: ${json}`);
  // Estimated as the rows of one minute each, not as a share of the table. (The probe for the
  // first row after an archive cut runs only after a cut; it stops at its first row.)
  t.true(onTable('security_event_audit').every((node) => (node['Actual Loops'] ?? 0) === 0 || (node['Plan Rows'] ?? 0) < 1_000), json);
  // The buckets: read once, at most 48 hours of minutes per type (what pruning keeps).
  const bucketScans = onTable('security_event_counts_by_minute');
  t.is(bucketScans.reduce((sum, node) => sum + (node['Actual Loops'] ?? 0), 0), 1, json);
  t.true((bucketScans[0]!['Actual Rows'] ?? Infinity) <= 7 * 2_881, json);
  // Cheap by the planner's own estimate even without statistics on the small tables: below
  // jit_above_cost's default (100,000), beyond which JIT compilation alone took a second.
  t.true(plan['Total Cost'] < 100_000, `estimated cost ${plan['Total Cost']}: ${json}`);
  // Actual Rows is a per-loop average, rounded: allow half a row per loop.
  const rawScans = onTable('security_event_audit');
  const rawRowsRead = rawScans.reduce((sum, node) => sum + (node['Actual Rows'] ?? 0) * (node['Actual Loops'] ?? 0), 0);
  const loops = rawScans.reduce((sum, node) => sum + (node['Actual Loops'] ?? 0), 0);
  t.log(`raw rows read: ${rawRowsRead} (the boundary minutes hold ${boundaryRows}); the count(*) definition reads ${oldRows}`);
  t.true(boundaryRows < 400, `${boundaryRows} rows in the two boundary minutes`);
  t.true(rawRowsRead <= boundaryRows + loops / 2, `read ${rawRowsRead} raw rows, the boundary minutes hold ${boundaryRows}: ${json}`);
  t.true(oldRows > 200_000);
});

test('pruning: a new minute of a type drops that type’s minutes older than 48 hours; other types and newer minutes stay', async (t) => {
  t.timeout(120_000);
  const database = await freshDatabase(t);
  await installTestClock(database);
  const pool = await poolFor(database);
  t.teardown(() => pool.end());
  // A fixed base, one second into the current UTC minute: events at whole minutes before it, ages
  // in minutes relative to it (whatever the clock does meanwhile).
  const [{ base }] = (await run<{ base: string }>(
    database,
    "SELECT to_char(date_trunc('minute', now(), 'UTC') AT TIME ZONE 'UTC' + interval '1 second', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS base",
  )) as [{ base: string }];
  const at = (minutesAgo: number) => -minutesAgo * MINUTE_US;
  const append = (events: readonly Event[]) => appendAt(database, events, base);
  const minutesOf = async (type: string) =>
    (await run<{ age: number; count: number }>(
      database,
      `SELECT round(extract(epoch FROM date_trunc('minute', $2::timestamptz, 'UTC') - minute) / 60)::int AS age, count::int
         FROM security_event_counts_by_minute WHERE event_type = $1 ORDER BY minute`,
      [type, base],
    )).map((row) => [row.age, row.count]);

  // Three days ago: two events of login_failed in one minute, one in the next; one rate_limited.
  await append([
    { type: 'login_failed', offsetMicros: at(3 * 1440) },
    { type: 'login_failed', offsetMicros: at(3 * 1440) + 1_000 },
    { type: 'login_failed', offsetMicros: at(3 * 1440 - 1) },
    { type: 'rate_limited', offsetMicros: at(3 * 1440) },
  ]);
  t.deepEqual(await minutesOf('login_failed'), [[4320, 2], [4319, 1]]);

  // A new minute exactly 48 hours after the first one: nothing is older than 48 hours before it.
  await append([{ type: 'login_failed', offsetMicros: at(3 * 1440 - 48 * 60) }]);
  t.deepEqual(await minutesOf('login_failed'), [[4320, 2], [4319, 1], [1440, 1]]);
  // The next minute: the first one is now more than 48 hours before it, the second exactly 48 hours.
  await append([{ type: 'login_failed', offsetMicros: at(1439) }]);
  t.deepEqual(await minutesOf('login_failed'), [[4319, 1], [1440, 1], [1439, 1]]);
  // More events in an existing minute only count.
  await append([{ type: 'login_failed', offsetMicros: at(1439) + 5_000 }]);
  t.deepEqual(await minutesOf('login_failed'), [[4319, 1], [1440, 1], [1439, 2]]);
  // Now: everything older than 48 hours goes; rate_limited is untouched until it has a new minute.
  await append([{ type: 'login_failed', offsetMicros: at(0) }]);
  t.deepEqual(await minutesOf('login_failed'), [[1440, 1], [1439, 2], [0, 1]]);
  t.deepEqual(await minutesOf('rate_limited'), [[4320, 1]]);
  await append([{ type: 'rate_limited', offsetMicros: at(0) }]);
  t.deepEqual(await minutesOf('rate_limited'), [[0, 1]]);

  // A steady stream for three days, one event a minute: the table never holds more than 48 hours
  // (2,881 minutes) of a type, and the windows still agree with count(*).
  await append(Array.from({ length: 3 * 1440 }, (_, i) => ({ type: 'refresh_rotated', offsetMicros: at(3 * 1440 - i) })));
  const refresh = await minutesOf('refresh_rotated');
  t.is(refresh.length, 2_881);
  t.deepEqual([refresh[0], refresh.at(-1)], [[2_881, 1], [1, 1]]);
  const { counters, bucketsExact, viaStore, countStar: truth } = await bothDefinitions(pool);
  t.true(bucketsExact);
  t.deepEqual(counters, truth);
  t.deepEqual(viaStore, truth);
  const refreshWindows = truth.find((row) => row.event_type === 'refresh_rotated')!;
  t.is(refreshWindows.total, BigInt(3 * 1440));
  // One a minute up to a minute ago; the window slides while the test runs.
  t.true(refreshWindows.last24h >= 1_430 && refreshWindows.last24h <= 1_440, String(refreshWindows.last24h));
});

test('the migration backfills the last 25 hours of an existing trail, also with an append in flight while it runs', async (t) => {
  t.timeout(120_000);
  const database = await createTestDatabase({ empty: true });
  t.teardown(() => database.drop());
  const connection = { connectionUri: database.url, sslMode: testSslMode(), sslRootCert: undefined, connectTimeoutMs: 10_000 };
  const migrations = await loadMigrations();
  const minuteMigration = migrations.find((migration) => migration.name === 'security_event_minute_counts')!;
  t.truthy(minuteMigration);
  await runMigrations(connection, migrations.filter((migration) => migration.version < minuteMigration.version));
  t.is((await run<{ t: string | null }>(database, "SELECT to_regclass('security_event_counts_by_minute')::text AS t"))[0]!.t, null);

  // 0002's trigger (no minute counter yet), with the test clock: every 30 s over 30 hours, denser
  // around 24 h and 25 h ago.
  await installTestClock(database);
  const offsets: number[] = [];
  for (let us = -30 * HOUR_US; us <= -10_000_000; us += 30_000_000) offsets.push(us);
  for (const centre of [-24 * HOUR_US, -25 * HOUR_US]) for (let us = centre - 2 * MINUTE_US; us <= centre + 2 * MINUTE_US; us += 1_000_000) offsets.push(us);
  const types = ['login_failed', 'login_succeeded', 'rate_limited', 'ops_auth_failed'];
  await appendAt(database, offsets.sort((a, b) => a - b).map((offsetMicros, index) => ({ type: types[index % types.length]!, offsetMicros })));

  // An appender that has written a row and not committed yet when the migration starts.
  const inFlight = await withAdminClient(async (client) => {
    await client.query('BEGIN');
    await client.query("INSERT INTO security_event_audit (event_type) VALUES ('account_locked')");
    const migrating = runMigrations(connection, migrations);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const [waiting] = (await run<{ n: number }>(
      database,
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'karaxas-migrate' AND wait_event_type = 'Lock'",
    )) as [{ n: number }];
    // A second appender queues behind the migration's lock and, once it commits, runs the new trigger.
    const later = withAdminClient((other) => other.query("INSERT INTO security_event_audit (event_type) VALUES ('account_locked')"), database.name);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await client.query('COMMIT');
    const result = await migrating;
    await later;
    return { waiting: waiting.n, applied: result.applied };
  }, database.name);
  t.is(inFlight.waiting, 1, 'the migration waited for the open append');
  t.deepEqual(inFlight.applied, [minuteMigration.version]);

  // Every whole minute since 25 hours before the migration, exactly as many as the rows hold;
  // nothing older.
  const [{ applied_at: appliedAt }] = (await run<{ applied_at: string }>(
    database,
    'SELECT applied_at::text FROM schema_migrations WHERE version = $1',
    [minuteMigration.version],
  )) as [{ applied_at: string }];
  const expected = await run(
    database,
    `SELECT event_type, minute::text, count::int FROM (
       SELECT event_type, date_trunc('minute', created_at, 'UTC') AS minute, count(*) AS count FROM security_event_audit
        WHERE created_at >= date_trunc('minute', $1::timestamptz - interval '25 hours', 'UTC') GROUP BY 1, 2) r
      ORDER BY 1, 2`,
    [appliedAt],
  );
  const actual = await run(database, 'SELECT event_type, minute::text, count::int FROM security_event_counts_by_minute ORDER BY 1, 2');
  t.true(expected.length > 3_000, `${expected.length} minutes`);
  t.deepEqual(actual, expected);
  t.is(actual.filter((row) => row.event_type === 'account_locked').reduce((sum, row) => sum + Number(row.count), 0), 2, 'both appenders are counted');

  // The windows agree from now on, and appends keep counting.
  const pool = await poolFor(database);
  t.teardown(() => pool.end());
  const { counters, bucketsExact, viaStore, countStar: truth } = await bothDefinitions(pool);
  t.true(bucketsExact);
  t.deepEqual(counters, truth);
  t.deepEqual(viaStore, truth);
  t.true(truth.some((row) => row.last24h > 0 && row.last24h < Number(row.total)));
  await pool.query(sql.unsafe`INSERT INTO security_event_audit (event_type) VALUES ('login_failed')`);
  const next = await bothDefinitions(pool);
  t.true(next.bucketsExact);
  t.deepEqual(next.counters, next.countStar);
  t.is(next.countStar.find((row) => row.event_type === 'login_failed')!.total, truth.find((row) => row.event_type === 'login_failed')!.total + 1n);

  // The replaced trigger function kept its owner, SECURITY DEFINER and settings.
  const [fn] = await run<{ definer: boolean; config: string[] }>(
    database,
    "SELECT prosecdef AS definer, proconfig AS config FROM pg_proc WHERE proname = 'security_event_audit_before_insert'",
  );
  t.deepEqual(fn, { definer: true, config: ['search_path=pg_catalog, public, pg_temp'] });
});
