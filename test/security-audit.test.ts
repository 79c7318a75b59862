/**
 * The security-event trail on real PostgreSQL: transactional appends, immutability (triggers for
 * everybody, privileges for a non-superuser owner), the hash chain under concurrency and against
 * tampering, the archive routine, pagination, counters, and scrubbing.
 *
 * One database for the file; the tests run serially because tampering breaks the chain for a
 * moment (each tampering test restores the row and checks the chain verifies again).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import test from 'ava';
import type pg from 'pg';
import { sql } from 'slonik';
import { z } from 'zod';
import {
  createSecurityAuditService,
  DETAILS_LIMITS,
  InvalidSecurityAuditQueryError,
  REDACTED,
  scrubDetails,
  type SecurityAudit,
} from '../app/audit/service.js';
import { canonicalEventText, createSecurityAuditStore, eventHash, GENESIS_HASH, type SecurityAuditStore } from '../app/audit/store.js';
import { securityEventTypes, type RequestMeta, type SecurityEventType } from '../app/audit/types.js';
import { createCommitHooks } from '../app/db/after-commit.js';
import { loadMigrations, runMigrations } from '../app/db/migrate.js';
import { createDatabasePool, type DatabasePool } from '../app/db/pool.js';
import { createLogger } from '../app/logger.js';
import { adminUrl, createTestDatabase, testSslMode, withAdminClient, type TestDatabase } from './support/database.js';
import { LogCapture } from './support/service.js';

let database: TestDatabase;
let pool: DatabasePool;
let store: SecurityAuditStore;
let audit: SecurityAudit;
let logs: LogCapture;

const POOL_SIZE = 40;

const poolFor = (connectionUri: string, poolSize = POOL_SIZE) =>
  createDatabasePool({
    connectionUri,
    sslMode: testSslMode(),
    sslRootCert: undefined,
    poolSize,
    statementTimeoutMs: 60_000,
    connectTimeoutMs: 10_000,
  });

test.before(async () => {
  database = await createTestDatabase();
  logs = new LogCapture();
  const logger = createLogger({ logLevel: 'info' }, logs);
  // Wired as app/server.ts wires it: the event log lines follow the commits of this pool's transactions.
  const hooks = createCommitHooks({ pool: await poolFor(database.url), logger });
  pool = hooks.pool;
  store = createSecurityAuditStore(pool);
  audit = createSecurityAuditService({ store, logger, afterCommit: hooks.afterCommit });
});

test.after.always(async () => {
  await pool?.end();
  await database?.drop();
});

const meta = (overrides: Partial<RequestMeta> = {}): RequestMeta => ({
  requestId: `req-${randomBytes(6).toString('hex')}`,
  ip: '203.0.113.7',
  userAgent: 'KaraxasClient/1.2.3 (test)',
  ...overrides,
});

/** A superuser session on the test database (the harness connects as one). */
const raw = <T extends pg.QueryResultRow = Record<string, unknown>>(text: string, values: unknown[] = []) =>
  withAdminClient(async (client) => (await client.query<T>(text, values)).rows, database.name);

const rowCount = async () => Number((await raw<{ n: string }>('SELECT count(*) AS n FROM security_event_audit'))[0]!.n);

const rowsInSeqOrder = () => raw<{ id: string; seq: string; hash: string }>('SELECT id, seq::text AS seq, hash FROM security_event_audit t ORDER BY t.seq');

/**
 * What an attacker with superuser rights does: switch the table's triggers off inside one
 * transaction (ALTER TABLE locks the table, so nobody appends meanwhile), change rows, switch
 * them back on.
 */
const tamper = (statements: Array<[string, unknown[]?]>) =>
  withAdminClient(async (client) => {
    await client.query('BEGIN');
    await client.query('ALTER TABLE security_event_audit DISABLE TRIGGER USER');
    for (const [text, values] of statements) await client.query(text, values ?? []);
    await client.query('ALTER TABLE security_event_audit ENABLE TRIGGER USER');
    await client.query('COMMIT');
  }, database.name);

/** A row as JSON text with full timestamp precision, to put it back exactly. */
const snapshotRow = async (id: string) =>
  (await raw<{ row: string }>('SELECT row_to_json(t)::text AS row FROM security_event_audit t WHERE id = $1', [id]))[0]!.row;
const restoreRowStatement = (snapshot: string): [string, unknown[]] => [
  'INSERT INTO security_event_audit OVERRIDING SYSTEM VALUE SELECT * FROM json_populate_record(NULL::security_event_audit, $1::json)',
  [snapshot],
];

const appendMany = async (count: number, type: SecurityEventType = 'login_failed') => {
  for (let i = 0; i < count; i += 1) {
    await pool.transaction((tx) => audit.record(tx, meta(), { type, userId: randomUUID(), details: { attempt: i } }));
  }
};

const pgErrorCode = (error: unknown) => (error as { code?: string }).code;

/** A fixed statement as a slonik query (slonik only takes real, frozen template literals). */
const statementQuery = (text: string) =>
  sql.unsafe(Object.freeze(Object.assign([text], { raw: Object.freeze([text]) })) as unknown as TemplateStringsArray);

// ---------------------------------------------------------------------------------------------

test.serial('the event_type CHECK of the table lists exactly securityEventTypes, in order', async (t) => {
  const [constraint] = await raw<{ definition: string }>(
    "SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conname = 'security_event_audit_event_type_check'",
  );
  const sqlTypes = [...constraint!.definition.matchAll(/'([a-z0-9_]+)'::text/g)].map((match) => match[1]);
  t.deepEqual(sqlTypes, [...securityEventTypes]);
  // And the newest migration that defines the constraint (what a reviewer edits) says the same.
  const folder = new URL('../app/db/migrations/', import.meta.url);
  const files = (await readdir(folder)).filter((name) => name.endsWith('.sql')).sort();
  const definitions: string[] = [];
  for (const name of files) {
    const text = await readFile(new URL(name, folder), 'utf8');
    if (/security_event_audit_event_type_check CHECK \(event_type IN \(/.test(text)) definitions.push(text);
  }
  const block = /security_event_audit_event_type_check CHECK \(event_type IN \(([\s\S]*?)\)\)/.exec(definitions.at(-1)!)![1]!;
  t.deepEqual([...block.matchAll(/'([a-z0-9_]+)'/g)].map((match) => match[1]), [...securityEventTypes]);
});

test.serial('1,000 concurrent appends over 40 connections form one unforked chain', async (t) => {
  let inFlight = 0;
  let maxInFlight = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 1_000 }, (_, i) =>
      pool.transaction(async (tx) => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          // Some work of the caller's own first, as a real feature would do.
          await tx.query(sql.unsafe`SELECT pg_sleep(0.001)`);
          await audit.record(tx, meta(), {
            type: securityEventTypes[i % securityEventTypes.length]!,
            userId: randomUUID(),
            sessionId: i % 3 === 0 ? randomUUID() : null,
            details: { i },
          });
        } finally {
          inFlight -= 1;
        }
      }),
    ),
  );
  t.log(`1,000 appends in ${Date.now() - started} ms, up to ${maxInFlight} transactions open at once`);
  t.true(maxInFlight >= 20, 'the appends really overlapped');

  t.deepEqual(await audit.verifyChain(), { ok: true, checked: 1_000, firstBrokenId: null });
  // Batch boundaries change nothing.
  t.deepEqual(await store.verifyChain({ batchSize: 7 }), { ok: true, checked: 1_000, firstBrokenId: null });

  // seq order is commit order: created_at never goes backwards along seq, and the chain links seq order.
  const [order] = await raw<{ backwards: string; unlinked: string }>(`
    SELECT count(*) FILTER (WHERE created_at < previous_created_at) AS backwards,
           count(*) FILTER (WHERE prev_hash <> coalesce(previous_hash, repeat('0', 64))) AS unlinked
      FROM (SELECT created_at, prev_hash,
                   lag(created_at) OVER (ORDER BY seq) AS previous_created_at,
                   lag(hash) OVER (ORDER BY seq) AS previous_hash
              FROM security_event_audit) chained`);
  t.deepEqual(order, { backwards: '0', unlinked: '0' });
  const [head] = await raw<{ matches: boolean }>(`
    SELECT (h.last_seq, h.last_id, h.last_hash) = (s.seq, s.id, s.hash) AS matches
      FROM security_event_audit_head h, (SELECT seq, id, hash FROM security_event_audit ORDER BY seq DESC LIMIT 1) s`);
  t.true(head!.matches);
});

test.serial('an event exists if and only if the transaction that recorded it committed', async (t) => {
  const before = await rowCount();
  const requestId = `req-rollback-${randomUUID()}`;
  await t.throwsAsync(
    pool.transaction(async (tx) => {
      await audit.record(tx, meta({ requestId }), { type: 'logout', userId: randomUUID() });
      throw new Error('the change failed after the event was appended');
    }),
    { message: /the change failed/ },
  );
  t.is(await rowCount(), before);
  t.deepEqual(await raw('SELECT id FROM security_event_audit WHERE request_id = $1', [requestId]), []);
  t.false(logs.entries().some((entry) => entry.requestId === requestId), 'and no log line claims it');

  const committedId = `req-commit-${randomUUID()}`;
  await pool.transaction((tx) => audit.record(tx, meta({ requestId: committedId }), { type: 'logout' }));
  t.is(await rowCount(), before + 1);
  const committed = await raw<{ id: string }>('SELECT id FROM security_event_audit WHERE request_id = $1', [committedId]);
  t.is(committed.length, 1);
  t.deepEqual(
    logs.entries().filter((entry) => entry.requestId === committedId).map((entry) => entry.securityEventId),
    [committed[0]!.id],
  );

  // The rolled-back append left the head alone too: the chain still ends where the table does.
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: before + 1, firstBrokenId: null });
});

test.serial('rows of one multi-row INSERT chain one after another', async (t) => {
  const before = await rowCount();
  await raw("INSERT INTO security_event_audit (event_type, details) SELECT 'rate_limited', jsonb_build_object('n', n) FROM generate_series(1, 5) n");
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: before + 5, firstBrokenId: null });
});

test.serial('a REPEATABLE READ appender whose snapshot predates another append fails instead of forking', async (t) => {
  const before = await rowCount();
  await withAdminClient(async (stale) => {
    await stale.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await stale.query('SELECT count(*) FROM security_event_audit'); // the snapshot is taken here
    await pool.query(sql.unsafe`INSERT INTO security_event_audit (event_type) VALUES ('logout')`);
    const error = await t.throwsAsync(stale.query("INSERT INTO security_event_audit (event_type) VALUES ('logout')"));
    t.is(pgErrorCode(error), '40001');
    await stale.query('ROLLBACK');
  }, database.name);
  t.is(await rowCount(), before + 1);
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: before + 1, firstBrokenId: null });
});

test.serial('UPDATE, DELETE and TRUNCATE fail for the connecting role, through the pool and raw pg', async (t) => {
  const before = await rowCount();
  const [victim] = await rowsInSeqOrder();
  const statements = [
    `UPDATE security_event_audit SET details = '{"x": 1}' WHERE id = '${victim!.id}'`,
    `DELETE FROM security_event_audit WHERE id = '${victim!.id}'`,
    'DELETE FROM security_event_audit WHERE false', // even a DELETE that matches nothing
    'TRUNCATE security_event_audit',
    `INSERT INTO security_event_audit (id, event_type) VALUES ('${victim!.id}', 'logout') ON CONFLICT (id) DO UPDATE SET details = '{}'`,
  ];
  for (const statement of statements) {
    const viaPool = await t.throwsAsync(pool.query(statementQuery(statement)));
    t.regex(viaPool.message, /append-only|not allowed/, statement);
    const viaRaw = await t.throwsAsync(raw(statement));
    t.is(pgErrorCode(viaRaw), '42501', statement);
  }
  // The bookkeeping tables are guarded the same way.
  for (const statement of [
    'UPDATE security_event_audit_head SET last_seq = 0',
    'UPDATE security_event_audit_anchor SET last_seq = 0',
    "INSERT INTO security_event_audit_archives (first_seq, through_seq, row_count, previous_anchor_hash, last_hash) VALUES (1, 1, 1, 'x', 'x')",
    'UPDATE security_event_counts SET total = 0',
    'TRUNCATE security_event_counts',
    'UPDATE security_event_counts_by_minute SET count = count + 1',
    'DELETE FROM security_event_counts_by_minute',
    "INSERT INTO security_event_counts_by_minute (event_type, minute, count) VALUES ('logout', now() + interval '1 day', 1)",
    'TRUNCATE security_event_counts_by_minute',
  ]) {
    t.is(pgErrorCode(await t.throwsAsync(raw(statement))), '42501', statement);
  }
  t.is(await rowCount(), before);
  t.is((await audit.verifyChain()).ok, true);
});

test.serial('a non-superuser that runs the migrations cannot UPDATE, DELETE or TRUNCATE (privileges), but can append and archive', async (t) => {
  const role = `kx_audit_owner_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(18).toString('base64url');
  const name = `${process.env.KARAXAS_TEST_RUN_ID}_${randomBytes(5).toString('hex')}`;
  const version = Number((await raw<{ v: string }>("SELECT current_setting('server_version_num') AS v"))[0]!.v);
  await withAdminClient(async (client) => {
    if (version >= 160000) {
      // What CREATE ROLE leaves a CREATEROLE migrator that created karaxas_audit_archiver itself
      // (Cloud SQL's built-in user on PostgreSQL 16+): ADMIN on the role, but no SET or INHERIT.
      await client.query(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}'`);
      await client.query(`GRANT karaxas_audit_archiver TO "${role}" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
    } else {
      // Before 16, creating a role grants its creator nothing, and ADMIN OPTION would imply an
      // inheriting membership; a CREATEROLE migrator may grant itself the membership the
      // migration lends and takes back.
      await client.query(`CREATE ROLE "${role}" LOGIN CREATEROLE PASSWORD '${password}'`);
    }
    await client.query(`CREATE DATABASE "${name}" OWNER "${role}"`);
  });
  const url = new URL(adminUrl());
  url.username = role;
  url.password = password;
  url.pathname = `/${name}`;
  const ownerPool = await poolFor(url.toString(), 4);
  t.teardown(async () => {
    await ownerPool.end();
    await withAdminClient(async (client) => {
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.query(`DROP ROLE IF EXISTS "${role}"`);
    });
  });

  // Only the migrations this file is about (the trail, and its per-minute counters): later ones
  // are other features' business.
  const migrations = (await loadMigrations()).filter((migration) => migration.version <= 2 || migration.name === 'security_event_minute_counts');
  await runMigrations({ connectionUri: url.toString(), sslMode: testSslMode(), sslRootCert: undefined, connectTimeoutMs: 10_000 }, migrations);
  const ownerAudit = createSecurityAuditService({ store: createSecurityAuditStore(ownerPool) });
  for (let i = 0; i < 3; i += 1) {
    await ownerPool.transaction((tx) => ownerAudit.record(tx, meta(), { type: 'login_succeeded', userId: randomUUID() }));
  }
  for (const statement of [
    "UPDATE security_event_audit SET details = '{}'",
    'DELETE FROM security_event_audit',
    'TRUNCATE security_event_audit',
    'UPDATE security_event_audit_anchor SET last_seq = 0',
    'INSERT INTO security_event_audit_anchor (singleton, last_seq, last_hash) VALUES (false, 0, repeat(\'0\', 64))',
  ]) {
    const error = await t.throwsAsync(ownerPool.query(statementQuery(statement)));
    t.regex(error.message, /permission denied/, statement);
  }
  if (version >= 160000) {
    // The membership lent to hand the routine over was taken back.
    const error = await t.throwsAsync(ownerPool.query(sql.unsafe`SET ROLE karaxas_audit_archiver`));
    t.regex(error.message, /permission denied/);
  }
  const [owner] = await withAdminClient(
    async (client) =>
      (await client.query<{ owner: string; definer: boolean }>(
        "SELECT proowner::regrole::text AS owner, prosecdef AS definer FROM pg_proc WHERE proname = 'archive_security_events'",
      )).rows,
    name,
  );
  t.deepEqual(owner, { owner: 'karaxas_audit_archiver', definer: true });

  // The per-minute counters: kept by the trigger, written by nobody else, not even their owner.
  for (const statement of ['UPDATE security_event_counts_by_minute SET count = 0', 'DELETE FROM security_event_counts_by_minute']) {
    const error = await t.throwsAsync(ownerPool.query(statementQuery(statement)));
    t.regex(error.message, /maintained by the security_event_audit insert trigger/, statement);
  }
  const minuteTotal = () =>
    ownerPool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT coalesce(sum(count), 0)::int AS n FROM security_event_counts_by_minute`);
  t.is(await minuteTotal(), 3);

  const ownerStore = createSecurityAuditStore(ownerPool);
  const first = await ownerPool.one(
    sql.type(z.object({ seq: z.bigint(), hash: z.string() }))`SELECT seq, hash FROM security_event_audit ORDER BY seq LIMIT 1`,
  );
  t.is(await ownerStore.archiveThrough(first.seq, 1n, first.hash), 1n);
  t.deepEqual(await ownerAudit.verifyChain(), { ok: true, checked: 2, firstBrokenId: null });
  // The archive leaves the minute counters alone; the windows count what is left.
  t.is(await minuteTotal(), 3);
  t.deepEqual(await ownerStore.countsByType(), [{ event_type: 'login_succeeded', total: 3n, last1h: 2, last24h: 2 }]);
});

test.serial('editing a row directly as superuser makes the verifier report exactly that row', async (t) => {
  const rows = await rowsInSeqOrder();
  const target = rows[500]!;
  const [original] = await raw<{ details: string }>('SELECT details::text AS details FROM security_event_audit WHERE id = $1', [target.id]);
  await tamper([[`UPDATE security_event_audit SET details = details || '{"tampered": true}' WHERE id = $1`, [target.id]]]);
  t.deepEqual(await audit.verifyChain(), { ok: false, checked: 501, firstBrokenId: target.id });

  // Recomputing the edited row's own hash only moves the evidence to the next row.
  await tamper([
    [
      `UPDATE security_event_audit SET hash = security_event_hash(seq, id, event_type, user_id, session_id, ip, user_agent,
         request_id, details, created_at, prev_hash) WHERE id = $1`,
      [target.id],
    ],
  ]);
  t.deepEqual(await audit.verifyChain(), { ok: false, checked: 502, firstBrokenId: rows[501]!.id });

  await tamper([[`UPDATE security_event_audit SET details = $2::jsonb, hash = $3 WHERE id = $1`, [target.id, original!.details, target.hash]]]);
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: rows.length, firstBrokenId: null });
});

test.serial('deleting a middle row or the newest row directly as superuser is reported', async (t) => {
  const rows = await rowsInSeqOrder();
  const middle = rows[300]!;
  const middleSnapshot = await snapshotRow(middle.id);
  await tamper([['DELETE FROM security_event_audit WHERE id = $1', [middle.id]]]);
  // The gap shows at the row after it, whose prev_hash names the missing row's hash.
  t.deepEqual(await audit.verifyChain(), { ok: false, checked: 301, firstBrokenId: rows[301]!.id });
  await tamper([restoreRowStatement(middleSnapshot)]);
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: rows.length, firstBrokenId: null });

  // Cutting the end leaves no successor to complain; the head recorded by the insert trigger does.
  const newest = rows.at(-1)!;
  const newestSnapshot = await snapshotRow(newest.id);
  await tamper([['DELETE FROM security_event_audit WHERE id = $1', [newest.id]]]);
  t.deepEqual(await audit.verifyChain(), { ok: false, checked: rows.length - 1, firstBrokenId: newest.id });
  await tamper([restoreRowStatement(newestSnapshot)]);
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: rows.length, firstBrokenId: null });

  // A row slipped in past the head without the trigger is reported too, even with a fitting prev_hash.
  const [forged] = await withAdminClient(async (client) => {
    await client.query('BEGIN');
    await client.query('ALTER TABLE security_event_audit DISABLE TRIGGER USER');
    const inserted = await client.query<{ id: string }>(
      "INSERT INTO security_event_audit (event_type, prev_hash, hash) SELECT 'logout', last_hash, repeat('a', 64) FROM security_event_audit_head RETURNING id",
    );
    await client.query('ALTER TABLE security_event_audit ENABLE TRIGGER USER');
    await client.query('COMMIT');
    return inserted.rows;
  }, database.name);
  t.deepEqual(await audit.verifyChain(), { ok: false, checked: rows.length, firstBrokenId: forged!.id });
  await tamper([['DELETE FROM security_event_audit WHERE id = $1', [forged!.id]]]);
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: rows.length, firstBrokenId: null });
});

test.serial('the archive routine deletes only a verified prefix, moves the anchor, and the chain still verifies', async (t) => {
  const rows = await rowsInSeqOrder();
  const through = rows[299]!;
  const throughSeq = BigInt(through.seq);
  const stateBefore = await store.chainState();
  t.is(stateBefore.anchor_hash, GENESIS_HASH);
  const totalsBefore = await audit.countsByType();

  const refused = async (expectedCount: bigint, expectedHash: string, seq = throughSeq, pattern = /nothing deleted/) => {
    const error = await t.throwsAsync(store.archiveThrough(seq, expectedCount, expectedHash));
    t.regex(error.message, pattern);
    t.is(await rowCount(), rows.length);
    t.deepEqual(await store.chainState(), stateBefore);
  };
  await refused(299n, through.hash); // count differs from the export
  await refused(301n, through.hash);
  await refused(300n, 'f'.repeat(64)); // hash differs
  await refused(300n, rows[298]!.hash);
  const [gap] = await raw<{ seq: string; n: string }>(
    `SELECT s::text AS seq, (SELECT count(*) FROM security_event_audit WHERE seq <= s)::text AS n
       FROM generate_series(1, $1::bigint) s WHERE NOT EXISTS (SELECT 1 FROM security_event_audit WHERE seq = s) ORDER BY s DESC LIMIT 1`,
    [through.seq],
  );
  await refused(BigInt(gap!.n), through.hash, BigInt(gap!.seq)); // not a row's seq

  // A tampered row inside the prefix blocks the cut (it would bury the evidence under the anchor).
  const [original] = await raw<{ details: string }>('SELECT details::text AS details FROM security_event_audit WHERE id = $1', [rows[150]!.id]);
  await tamper([[`UPDATE security_event_audit SET details = '{"rewritten": true}' WHERE id = $1`, [rows[150]!.id]]]);
  await refused(300n, through.hash, throughSeq, /chain is broken/);
  await tamper([[`UPDATE security_event_audit SET details = $2::jsonb WHERE id = $1`, [rows[150]!.id, original!.details]]]);

  t.is(await store.archiveThrough(throughSeq, 300n, through.hash), 300n);
  t.is(await rowCount(), rows.length - 300);
  const stateAfter = await store.chainState();
  t.is(stateAfter.anchor_seq, throughSeq);
  t.is(stateAfter.anchor_hash, through.hash);
  t.is(stateAfter.archived_rows, 300n);
  t.deepEqual(
    await raw('SELECT first_seq::text, through_seq::text, row_count::int, previous_anchor_hash, last_hash FROM security_event_audit_archives'),
    [{ first_seq: rows[0]!.seq, through_seq: through.seq, row_count: 300, previous_anchor_hash: GENESIS_HASH, last_hash: through.hash }],
  );
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: rows.length - 300, firstBrokenId: null });

  // The same call again finds its rows gone; plain DELETE is still refused after a cut.
  await t.throwsAsync(store.archiveThrough(throughSeq, 300n, through.hash), { message: /0 rows up to seq/ });
  t.is(pgErrorCode(await t.throwsAsync(raw('DELETE FROM security_event_audit'))), '42501');
  // All-time totals include archived events.
  t.deepEqual(await audit.countsByType().then((counts) => Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v.total]))),
    Object.fromEntries(Object.entries(totalsBefore).map(([k, v]) => [k, v.total])));

  // New events chain on after the cut.
  await appendMany(3);
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: rows.length - 300 + 3, firstBrokenId: null });

  // A cut that overtakes a running verification (a slow walk, two rows per query) is no false alarm.
  const remaining = await rowsInSeqOrder();
  const secondCut = remaining[99]!;
  let walked = false;
  const walking = store.verifyChain({ batchSize: 2 }).finally(() => {
    walked = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.is(await store.archiveThrough(BigInt(secondCut.seq), 100n, secondCut.hash), 100n);
  t.false(walked, 'the cut happened while the walk was running');
  const result = await walking;
  t.true(result.ok);
  t.deepEqual(await audit.verifyChain(), { ok: true, checked: remaining.length - 100, firstBrokenId: null });
});

test.serial('list pages newest first and returns every row exactly once, also while rows are appended', async (t) => {
  const expected = (await raw<{ id: string }>('SELECT id FROM security_event_audit ORDER BY created_at DESC, id DESC')).map((row) => row.id);
  const seen: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  let previousCreatedAt = Infinity;
  for (;;) {
    const page = await audit.list({ limit: 37, cursor });
    pages += 1;
    for (const item of page.items) {
      t.true(Date.parse(item.createdAt) <= previousCreatedAt);
      previousCreatedAt = Date.parse(item.createdAt);
    }
    seen.push(...page.items.map((item) => item.id));
    // Concurrent appends land in front of the first page and never shift later pages.
    if (pages % 4 === 1) await appendMany(2, 'chat_muted');
    if (page.nextCursor === null) break;
    cursor = page.nextCursor;
  }
  t.deepEqual(seen, expected);
  t.is(new Set(seen).size, seen.length);
  t.true(pages > 10);

  // Filters.
  const userId = randomUUID();
  await pool.transaction(async (tx) => {
    await audit.record(tx, meta(), { type: 'password_changed', userId });
    await audit.record(tx, meta(), { type: 'session_revoked', userId, sessionId: randomUUID() });
  });
  const byUser = await audit.list({ userId });
  t.deepEqual(byUser.items.map((item) => item.eventType), ['session_revoked', 'password_changed']);
  t.is(byUser.nextCursor, null);
  const byType = await audit.list({ eventType: 'chat_muted', limit: 500 });
  t.true(byType.items.length >= 2 && byType.items.every((item) => item.eventType === 'chat_muted'));
  const middle = byUser.items[1]!;
  t.deepEqual((await audit.list({ userId, until: middle.createdAt })).items, []);
  t.deepEqual((await audit.list({ userId, since: new Date(Date.now() + 60_000) })).items, []);
  t.is((await audit.list({ userId, since: new Date(Date.now() - 60_000), until: new Date(Date.now() + 60_000) })).items.length, 2);

  for (const query of [{ limit: 0 }, { limit: 501 }, { limit: 1.5 }, { cursor: 'not-a-cursor' }, { cursor: Buffer.from('["x","y"]').toString('base64url') }, { since: 'yesterday' }, { userId: 'nope' }]) {
    await t.throwsAsync(audit.list(query), { instanceOf: InvalidSecurityAuditQueryError }, JSON.stringify(query));
  }
});

test.serial('countsByType reports every type with last1h, last24h and the all-time total', async (t) => {
  const before = await audit.countsByType();
  t.deepEqual(Object.keys(before).sort(), [...securityEventTypes].sort());
  for (let i = 0; i < 3; i += 1) await pool.transaction((tx) => audit.record(tx, meta(), { type: 'mfa_replay_rejected' }));
  const after = await audit.countsByType();
  t.is(after.mfa_replay_rejected.total, before.mfa_replay_rejected.total + 3);
  t.is(after.mfa_replay_rejected.last1h, before.mfa_replay_rejected.last1h + 3);
  const inTable = await raw<{ event_type: string; n: number }>('SELECT event_type, count(*)::int AS n FROM security_event_audit GROUP BY event_type');
  for (const { event_type: type, n } of inTable) {
    const counts = after[type as SecurityEventType];
    t.is(counts.last1h, n, type); // every row of this test is recent
    t.is(counts.last24h, n, type);
    t.true(counts.total >= n, type);
  }
});

test.serial('record stores the request meta and scrubbed details, and logs one line without details', async (t) => {
  const userId = randomUUID();
  const sessionId = randomUUID();
  const requestId = `req-${randomUUID()}`;
  const refreshToken = `rt_${randomBytes(24).toString('base64url')}`;
  const linesBefore = logs.lines.length;
  await pool.transaction((tx) =>
    audit.record(tx, { requestId, ip: '2001:db8::1', userAgent: `UA ${'x'.repeat(600)}` }, {
      type: 'refresh_token_reuse_detected',
      userId,
      sessionId,
      details: { tokenId: sessionId, refreshToken, nested: [{ Password: 'hunter2', reason: 'reuse' }] },
    }),
  );
  const [row] = await raw<{ ip: string; user_agent: string; request_id: string; details: unknown; user_id: string; session_id: string }>(
    'SELECT host(ip) AS ip, user_agent, request_id, details, user_id, session_id FROM security_event_audit WHERE request_id = $1',
    [requestId],
  );
  t.is(row!.ip, '2001:db8::1');
  t.is(row!.user_agent.length, 512);
  t.true(row!.user_agent.endsWith('…'));
  t.is(row!.user_id, userId);
  t.is(row!.session_id, sessionId);
  t.deepEqual(row!.details, { tokenId: sessionId, nested: [{ reason: 'reuse' }] });

  const lines = logs.lines.slice(linesBefore);
  t.is(lines.length, 1);
  const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.like(entry, { securityEvent: 'refresh_token_reuse_detected', userId, sessionId, requestId });
  t.false(lines[0]!.includes(refreshToken));
  t.false(lines[0]!.includes('hunter2'));
  t.false('details' in entry);

  // A client address inet cannot take does not fail the caller's transaction.
  const odd = `req-${randomUUID()}`;
  await pool.transaction((tx) => audit.record(tx, { requestId: odd, ip: 'unknown', userAgent: null }, { type: 'logout' }));
  const zoned = `req-${randomUUID()}`;
  await pool.transaction((tx) => audit.record(tx, { requestId: zoned, ip: 'fe80::1%eth0', userAgent: '' }, { type: 'logout' }));
  t.deepEqual(
    await raw('SELECT request_id, host(ip) AS ip, user_agent FROM security_event_audit WHERE request_id IN ($1, $2) ORDER BY seq', [odd, zoned]),
    [
      { request_id: odd, ip: null, user_agent: null },
      { request_id: zoned, ip: 'fe80::1', user_agent: null },
    ],
  );
  t.true((await audit.verifyChain()).ok);
});

test.serial('the canonical text and hash can be recomputed outside PostgreSQL from exported fields', async (t) => {
  const requestId = `req-"quoted"\\${randomUUID()}`;
  await pool.transaction((tx) =>
    audit.record(tx, { requestId, ip: '198.51.100.23', userAgent: 'Agent "x" \\ é 🎮 \u0001' }, {
      type: 'chat_muted',
      userId: randomUUID(),
      details: { text: 'line\nbreak\ttab "q" \\ é ü 🎮 \u001f \u2028', n: 1.5, big: 12345678901234567890n, list: [true, null, -0.25] },
    }),
  );
  await pool.transaction((tx) => audit.record(tx, { requestId: 'plain', ip: null, userAgent: null }, { type: 'logout' }));
  const exported = await raw<{
    seq: string; id: string; event_type: string; user_id: string | null; session_id: string | null; ip: string | null;
    user_agent: string | null; request_id: string | null; details_text: string; created_at_exact: string; prev_hash: string;
    hash: string; canonical: string;
  }>(`
    SELECT seq::text, id::text, event_type, user_id::text, session_id::text, ip::text, user_agent, request_id,
           details::text AS details_text,
           to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at_exact, prev_hash, hash,
           security_event_canonical(seq, id, event_type, user_id, session_id, ip, user_agent, request_id, details, created_at, prev_hash) AS canonical
      FROM security_event_audit ORDER BY seq DESC LIMIT 2`);
  for (const row of exported) {
    const fields = {
      seq: row.seq, id: row.id, eventType: row.event_type, userId: row.user_id, sessionId: row.session_id, ip: row.ip,
      userAgent: row.user_agent, requestId: row.request_id, detailsText: row.details_text, createdAtExact: row.created_at_exact,
      prevHash: row.prev_hash,
    };
    t.is(canonicalEventText(fields), row.canonical);
    t.is(eventHash(fields), row.hash);
  }
  t.is(exported[0]!.prev_hash, exported[1]!.hash);
});

// ---------------------------------------------------------------------------------------------
// scrubDetails (no database)

test('scrubDetails drops credential-like keys at any depth, case-insensitively', (t) => {
  const scrubbed = scrubDetails({
    password: 'p',
    PASSWORD: 'p',
    newPassword: 'p',
    password_hash: 'h',
    Authorization: 'Bearer abc',
    cookie: 'sid=1',
    'X-Api-Key': 'k',
    refresh_token: 't',
    accessToken: 't',
    mfaCode: '123456',
    code: '123456',
    recoveryCodes: ['a', 'b'],
    totpSecret: 's',
    wsTicket: 't',
    clientSecret: 's',
    kept: 'yes',
    reason: 'wrong_password',
    nested: {
      deeper: [{ token: 't', ok: 1, again: { Secret: 's', hashedValue: 'h', fine: true } }],
      credentials: { user: 'u' },
    },
  });
  t.deepEqual(scrubbed, {
    kept: 'yes',
    reason: 'wrong_password',
    nested: { deeper: [{ ok: 1, again: { fine: true } }] },
  });
});

test('scrubDetails keeps identifiers and diagnostic codes that only sound like credentials', (t) => {
  const id = randomUUID();
  t.deepEqual(
    scrubDetails({
      tokenId: id,
      token_ids: [id, 42],
      keyId: 7,
      errorCode: 'refresh_token_reused',
      statusCode: 401,
      HTTPStatusCode: 429,
      reasonCode: 'E42',
      // Not identifiers or codes after all:
      tokenIdRaw: id,
      ticketId: 'not-a-uuid-but-the-ticket',
      errorCodeDetail: 'x',
      errorCodes: 'y',
      secretErrorCode: 'E1',
      responseCode: 'spaces are not a code',
    }),
    { tokenId: id, token_ids: [id, 42], keyId: 7, errorCode: 'refresh_token_reused', statusCode: 401, HTTPStatusCode: 429, reasonCode: 'E42' },
  );
});

test('scrubDetails redacts bearer-looking values under innocent keys', (t) => {
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLWhlcmU';
  t.deepEqual(scrubDetails({ note: jwt, header: 'Bearer abc.def', list: [jwt], bytes: Buffer.from('key material') }), {
    note: REDACTED,
    header: REDACTED,
    list: [REDACTED],
    bytes: REDACTED,
  });
});

test('scrubDetails bounds size and makes values storable JSON', (t) => {
  const circular: Record<string, unknown> = { name: 'loop' };
  circular.self = circular;
  let deep: Record<string, unknown> = { leaf: true };
  for (let i = 0; i < 10; i += 1) deep = { level: deep };
  const scrubbed = scrubDetails({
    long: 'a'.repeat(5_000),
    emoji: `${'b'.repeat(DETAILS_LIMITS.maxStringLength - 2)}🎮c`,
    nul: 'a\u0000b',
    lone: 'x\uD800y',
    when: new Date('2026-01-02T03:04:05.678Z'),
    big: 2n ** 70n,
    nan: Number.NaN,
    nothing: undefined,
    fn: () => 1,
    circular,
    deep,
    many: Array.from({ length: 150 }, (_, i) => i),
    error: new Error('boom'),
  });
  t.is((scrubbed.long as string).length, DETAILS_LIMITS.maxStringLength);
  t.true((scrubbed.long as string).endsWith('…'));
  t.is(scrubbed.emoji, `${'b'.repeat(DETAILS_LIMITS.maxStringLength - 2)}…`, 'a surrogate pair is never split');
  t.is(scrubbed.nul, 'ab');
  t.is(scrubbed.lone, 'x\uFFFDy');
  t.is(scrubbed.when, '2026-01-02T03:04:05.678Z');
  t.is(scrubbed.big, (2n ** 70n).toString());
  t.is(scrubbed.nan, null);
  t.false('nothing' in scrubbed);
  t.false('fn' in scrubbed);
  t.deepEqual(scrubbed.circular, { name: 'loop', self: '[circular]' });
  t.true(JSON.stringify(scrubbed.deep).includes('[too deep]'));
  t.is((scrubbed.many as unknown[]).length, DETAILS_LIMITS.maxArrayItems + 1);
  t.is((scrubbed.many as unknown[]).at(-1), '…50 more');
  t.deepEqual(scrubbed.error, { name: 'Error', message: 'boom' });

  const wide = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`field${i}`, 'z'.repeat(900)]));
  const bounded = scrubDetails(wide);
  t.true(JSON.stringify(bounded).length <= DETAILS_LIMITS.maxJsonLength);
  t.is(bounded.detailsTruncated, true);
  t.is(bounded.field0, 'z'.repeat(900));
  t.deepEqual(scrubDetails(null), {});
});

test.serial('whatever scrubDetails returns, the table stores and the chain verifies', async (t) => {
  const requestId = `req-${randomUUID()}`;
  const wide = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`f${i}`, `\u0000🎮\uDC00${'é'.repeat(2_000)}`]));
  await pool.transaction((tx) => audit.record(tx, meta({ requestId }), { type: 'rate_limited', details: wide }));
  t.is((await raw('SELECT 1 FROM security_event_audit WHERE request_id = $1', [requestId])).length, 1);
  t.true((await audit.verifyChain()).ok);
});
