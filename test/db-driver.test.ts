/**
 * The pool's pg driver (app/db/driver.ts) against a real PostgreSQL:
 * - a query without an answer within the client-side bound fails as ClientQueryTimeoutError
 *   (503 at the HTTP layer) and its connection is closed: with a pool of one, the next query runs
 *   at once on a new backend; inside a transaction no ROLLBACK is attempted over it;
 * - while the server runs, its own statement timeout still comes first (StatementTimeoutError);
 * - pg errors still arrive as slonik's classes (constraint violations with their names);
 * - results, fields and streams are identical to slonik's own pg driver with the same settings;
 * - pool connections have TCP keepalive on (where `ss` can show it).
 *
 * A query the server does not cancel stands in for a server that does not answer: the statement
 * timeout is switched off for it (`SET LOCAL statement_timeout = 0`) and it sleeps past the bound.
 */
import { spawnSync } from 'node:child_process';
import test from 'ava';
import {
  BackendTerminatedError,
  CheckExclusionConstraintViolationError,
  CheckIntegrityConstraintViolationError,
  createPool,
  ForeignKeyIntegrityConstraintViolationError,
  InputSyntaxError,
  InvalidInputError,
  NotNullIntegrityConstraintViolationError,
  sql,
  StatementTimeoutError,
  UniqueIntegrityConstraintViolationError,
  type DatabasePool,
} from 'slonik';
import { z } from 'zod';
import { loadConfig, type Config } from '../app/config/index.js';
import { ClientQueryTimeoutError } from '../app/db/driver.js';
import { clientQueryTimeoutMs, createDatabasePool, databasePoolConfiguration } from '../app/db/pool.js';
import { toAppError } from '../app/http/middleware.js';
import { createTestDatabase, withAdminClient } from './support/database.js';
import { testEnvironment } from './support/service.js';

const STATEMENT_TIMEOUT_MS = 300;
const CONNECT_TIMEOUT_MS = 700;

type Fixture = { database: Config['database']; pool: DatabasePool; bound: number };

const cleanups: Array<() => Promise<void>> = [];
test.after.always(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

let fixture: Promise<Fixture> | undefined;
/** A pool of ONE connection: a connection that were reused after a timeout would block it. */
const getFixture = () =>
  (fixture ??= (async () => {
    const testDatabase = await createTestDatabase();
    cleanups.push(() => testDatabase.drop());
    const config = await loadConfig(
      testEnvironment(testDatabase.url, {
        DB_POOL_SIZE: '1',
        DB_STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS),
        DB_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS),
      }),
    );
    const pool = await createDatabasePool(config.database);
    cleanups.push(() => pool.end());
    return { database: config.database, pool, bound: clientQueryTimeoutMs(config.database) };
  })());

const pidQuery = sql.type(z.object({ pid: z.number() }))`SELECT pg_backend_pid() AS pid`;

/** Ends the backends left sleeping by the timed-out queries (the server notices the closed socket only when it next writes). */
const terminate = (pids: number[]) =>
  cleanups.push(() => withAdminClient((client) => client.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids])).then(() => undefined));

test.serial('a query without an answer within the bound fails as ClientQueryTimeoutError, and its connection is never reused', async (t) => {
  const { pool, bound } = await getFixture();
  t.is(bound, STATEMENT_TIMEOUT_MS + CONNECT_TIMEOUT_MS);
  let stuckPid = 0;
  const started = performance.now();
  const error = await t.throwsAsync(
    pool.transaction(async (tx) => {
      stuckPid = await tx.oneFirst(pidQuery);
      await tx.query(sql.unsafe`SET LOCAL statement_timeout = 0`);
      await tx.query(sql.unsafe`SELECT pg_sleep(5)`);
    }),
  );
  const elapsed = performance.now() - started;
  terminate([stuckPid]);
  t.true(error instanceof ClientQueryTimeoutError, String(error));
  t.true(error instanceof BackendTerminatedError, 'a terminated backend for slonik: no ROLLBACK over it, destroyed');
  t.regex(error!.message, new RegExp(`did not answer within ${bound} ms`));
  t.true(elapsed >= bound - 5 && elapsed < bound + 1_000, `failed after ${Math.round(elapsed)} ms (bound ${bound} ms)`);
  t.log(`client bound ${bound} ms: the transaction failed after ${Math.round(elapsed)} ms`);

  const answer = toAppError(error);
  t.is(answer.status, 503);
  t.is(answer.code, 'service_unavailable');

  // The pool holds one connection: had the old one been kept, this would wait behind pg_sleep.
  const next = performance.now();
  const freshPid = await pool.oneFirst(pidQuery);
  t.not(freshPid, stuckPid, 'a new backend');
  t.true(performance.now() - next < bound, `the next query took ${Math.round(performance.now() - next)} ms`);
});

test.serial('on an explicit connection, queries after the timeout fail at once and the connection is destroyed, not released', async (t) => {
  const { pool } = await getFixture();
  let stuckPid = 0;
  const outcome = await t.throwsAsync(
    pool.connect(async (connection) => {
      stuckPid = await connection.oneFirst(pidQuery);
      await connection.query(sql.unsafe`SET statement_timeout = 0`);
      const first = await connection.query(sql.unsafe`SELECT pg_sleep(5)`).then(
        () => undefined,
        (error: unknown) => error,
      );
      t.true(first instanceof ClientQueryTimeoutError, String(first));
      // A handler that swallows the error and goes on gets an immediate terminated-backend error.
      const started = performance.now();
      const second = await connection.query(sql.unsafe`SELECT 1`).then(
        () => undefined,
        (error: unknown) => error,
      );
      t.true(second instanceof BackendTerminatedError, String(second));
      t.true(performance.now() - started < 200);
    }),
  );
  terminate([stuckPid]);
  // The session reset before release fails the same way, so slonik destroys the connection.
  t.true(outcome instanceof BackendTerminatedError, String(outcome));
  t.not(await pool.oneFirst(pidQuery), stuckPid);
});

test.serial("while the server runs, its statement timeout comes first (StatementTimeoutError), and the connection stays usable", async (t) => {
  const { pool, bound } = await getFixture();
  const started = performance.now();
  const error = await t.throwsAsync(pool.query(sql.unsafe`SELECT pg_sleep(3)`));
  const elapsed = performance.now() - started;
  t.true(error instanceof StatementTimeoutError, String(error));
  t.false(error instanceof ClientQueryTimeoutError);
  t.true(elapsed < bound, `${Math.round(elapsed)} ms`);
  t.is(toAppError(error).code, 'service_unavailable');
  t.is(await pool.oneFirst(sql.type(z.object({ one: z.number() }))`SELECT 1 AS one`), 1);
});

test.serial("pg errors arrive as slonik's classes through the driver, constraint names included", async (t) => {
  const { pool } = await getFixture();
  await pool.query(sql.unsafe`
    CREATE TABLE driver_exclusive (slot int, CONSTRAINT driver_exclusive_slot_excl EXCLUDE USING btree (slot WITH =))`);
  await pool.query(sql.unsafe`CREATE TABLE driver_child (user_id uuid CONSTRAINT driver_child_user_fkey REFERENCES users (id))`);
  const insertUser = (email: string, displayName: string | null) =>
    pool.query(sql.unsafe`INSERT INTO users (email, display_name, password_hash) VALUES (${email}, ${displayName}, 'x')`);
  await insertUser('driver@example.test', 'Driver');

  const unique = await t.throwsAsync(insertUser('DRIVER@example.test', 'Again'));
  t.true(unique instanceof UniqueIntegrityConstraintViolationError, String(unique));
  t.is((unique as UniqueIntegrityConstraintViolationError).constraint, 'users_email_key');
  t.is(toAppError(unique).code, 'email_taken', 'the app still translates it by constraint name');

  const check = await t.throwsAsync(insertUser('check@example.test', ''));
  t.true(check instanceof CheckIntegrityConstraintViolationError, String(check));
  t.is((check as CheckIntegrityConstraintViolationError).constraint, 'users_display_name_check');
  t.is(toAppError(check).code, 'internal_error', 'an unlisted constraint stays a 500');

  const notNull = await t.throwsAsync(insertUser('null@example.test', null));
  t.true(notNull instanceof NotNullIntegrityConstraintViolationError, String(notNull));

  const foreignKey = await t.throwsAsync(pool.query(sql.unsafe`INSERT INTO driver_child (user_id) VALUES (gen_random_uuid())`));
  t.true(foreignKey instanceof ForeignKeyIntegrityConstraintViolationError, String(foreignKey));
  t.is((foreignKey as ForeignKeyIntegrityConstraintViolationError).constraint, 'driver_child_user_fkey');

  await pool.query(sql.unsafe`INSERT INTO driver_exclusive (slot) VALUES (1)`);
  const exclusion = await t.throwsAsync(pool.query(sql.unsafe`INSERT INTO driver_exclusive (slot) VALUES (1)`));
  t.true(exclusion instanceof CheckExclusionConstraintViolationError, String(exclusion));
  t.is((exclusion as CheckExclusionConstraintViolationError).constraint, 'driver_exclusive_slot_excl');

  t.true((await t.throwsAsync(pool.query(sql.unsafe`SELECT ${'not a uuid'}::uuid`))) instanceof InvalidInputError);
  t.true((await t.throwsAsync(pool.query(sql.unsafe`SELEC 1`))) instanceof InputSyntaxError);
});

test.serial("results, fields and streams are identical to slonik's own pg driver with the same settings", async (t) => {
  const { database, pool } = await getFixture();
  const reference = await createPool(database.connectionUri, { ...databasePoolConfiguration(database), driverFactory: undefined });
  cleanups.push(() => reference.end());
  const everyType = sql.unsafe`
    SELECT
      1::int2 AS int2, 2::int4 AS int4, 9007199254740993::int8 AS int8, 1.5::float4 AS float4, 2.25::float8 AS float8,
      12345678901234567890.123::numeric AS numeric, true AS bool, 'text'::text AS text, 'v'::varchar AS varchar, 'c'::char AS char,
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS uuid, '\\x00ff'::bytea AS bytea, '{"a":[1,null]}'::json AS json,
      '{"b":{"c":true}}'::jsonb AS jsonb, '2024-02-29'::date AS date, '2024-02-29 12:34:56.789'::timestamp AS timestamp,
      '2024-02-29 12:34:56.789+02'::timestamptz AS timestamptz, '1 day 02:03:04'::interval AS interval, '12:34'::time AS time,
      '12:34+02'::timetz AS timetz, 42::oid AS oid, '192.168.0.1'::inet AS inet, '10.0.0.0/8'::cidr AS cidr, '(1,2)'::point AS point,
      '<(1,2),3>'::circle AS circle, '[1,5)'::int4range AS int4range, '[1,5)'::int8range AS int8range, '[1.5,2]'::numrange AS numrange,
      '[2024-01-01,2024-02-01)'::daterange AS daterange, tstzrange('2024-01-01 00:00+00', '2024-01-02 00:00+00') AS tstzrange,
      ARRAY[1, 2]::int4[] AS int4s, ARRAY[1, 2]::int8[] AS int8s, ARRAY['a', NULL, 'c"d']::text[] AS texts,
      ARRAY['2024-01-01 00:00+00']::timestamptz[] AS timestamptzs, ARRAY[1.5]::numeric[] AS numerics, ARRAY[true, false] AS bools,
      ARRAY['2024-01-01']::date[] AS dates, ARRAY['1 hour']::interval[] AS intervals, ARRAY['{"x":1}']::jsonb[] AS jsonbs,
      ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']::uuid[] AS uuids, ARRAY['\\x01']::bytea[] AS byteas,
      NULL::text AS nothing, now() - now() AS zero`;
  const ours = await pool.query(everyType);
  const theirs = await reference.query(everyType);
  t.deepEqual(ours, theirs);
  t.is(typeof ours.rows[0]!.timestamptz, 'string', 'the app parsers apply');

  const write = sql.unsafe`UPDATE users SET updated_at = updated_at WHERE email = 'nobody@example.test'`;
  t.deepEqual(await pool.query(write), await reference.query(write));

  const collect = async (target: DatabasePool) => {
    const rows: unknown[] = [];
    await target.stream(sql.unsafe`SELECT n, n::text AS label, now() - now() AS zero FROM generate_series(1, 50) AS n`, (stream) => {
      stream.on('data', (chunk) => rows.push(chunk));
    });
    return rows;
  };
  const streamed = await collect(pool);
  t.is(streamed.length, 50);
  t.deepEqual(streamed, await collect(reference));
});

const ssAvailable = spawnSync('ss', ['-V'], { encoding: 'utf8' }).status === 0;
if (ssAvailable) {
  test.serial("pool connections have TCP keepalive on (slonik's own driver leaves it off)", async (t) => {
    const { database, pool } = await getFixture();
    const reference = await createPool(database.connectionUri, { ...databasePoolConfiguration(database), driverFactory: undefined });
    cleanups.push(() => reference.end());
    const portQuery = sql.type(z.object({ port: z.number().nullable() }))`SELECT inet_client_port() AS port`;
    /** The `ss` line of our end of the connection whose client port the server reports. */
    const socketOf = async (target: DatabasePool) => {
      const port = await target.oneFirst(portQuery);
      if (port === null) throw new Error('the test database is not reached over TCP');
      const lines = spawnSync('ss', ['-tnoH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' }).stdout.trim();
      t.not(lines, '', `no socket with local port ${port}`);
      return lines;
    };
    const ours = await socketOf(pool);
    t.regex(ours, /timer:\(keepalive,/, ours);
    t.log(ours.replace(/\s+/g, ' '));
    t.notRegex(await socketOf(reference), /timer:\(keepalive,/);
  });
}
