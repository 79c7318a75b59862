/**
 * The security-event log lines follow COMMIT (app/db/after-commit.ts, app/audit/service.ts): one
 * line per event whose row committed, written once the row is visible to every other connection,
 * in commit order; none for an event whose transaction (or savepoint) rolled back — however it
 * rolled back. Driven through the real pool, commit hooks, audit service and store on real
 * PostgreSQL, and once over HTTP through the real server.
 */
import { randomUUID } from 'node:crypto';
import test from 'ava';
import pg from 'pg';
import { sql } from 'slonik';
import { createSecurityAuditService, type SecurityAudit } from '../app/audit/service.js';
import { createSecurityAuditStore } from '../app/audit/store.js';
import type { RequestMeta, SecurityEventType } from '../app/audit/types.js';
import { createCommitHooks, UntrackedConnectionError, type CommitHooks } from '../app/db/after-commit.js';
import { createDatabasePool, type DatabasePool } from '../app/db/pool.js';
import { createLogger } from '../app/logger.js';
import { createApi } from './support/api.js';
import { createTestDatabase, databaseUrl, testSslMode, withAdminClient, type TestDatabase } from './support/database.js';
import { LogCapture, startTestService } from './support/service.js';

/**
 * Captures the log lines and, the moment a security-event line is written, asks another
 * connection whether the row it names exists: the answer is what that line could claim.
 */
class CommitWitness extends LogCapture {
  readonly visibleAtLine = new Map<string, Promise<boolean>>();
  constructor(private readonly observer: pg.Pool) {
    super();
  }
  override _write(chunk: Buffer, encoding: string, done: () => void) {
    for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
      const id = (JSON.parse(line) as { securityEventId?: string }).securityEventId;
      if (id !== undefined) {
        this.visibleAtLine.set(
          id,
          this.observer.query('SELECT 1 FROM security_event_audit WHERE id = $1', [id]).then((result) => result.rowCount === 1),
        );
      }
    }
    super._write(chunk, encoding, done);
  }
}

let database: TestDatabase;
let rawPool: DatabasePool;
/** Other connections (plain pg, not the pool under test). */
let observer: pg.Pool;
let logs: CommitWitness;
let hooks: CommitHooks;
let pool: DatabasePool;
let audit: SecurityAudit;

test.before(async () => {
  database = await createTestDatabase();
  rawPool = await createDatabasePool({
    connectionUri: database.url,
    sslMode: testSslMode(),
    sslRootCert: undefined,
    poolSize: 12,
    statementTimeoutMs: 30_000,
    connectTimeoutMs: 10_000,
  });
  // Enough connections that a witness query never waits for one.
  observer = new pg.Pool({ connectionString: databaseUrl(database.name), max: 30 });
  logs = new CommitWitness(observer);
  const logger = createLogger({ logLevel: 'info' }, logs);
  hooks = createCommitHooks({ pool: rawPool, logger });
  pool = hooks.pool;
  audit = createSecurityAuditService({ store: createSecurityAuditStore(pool), logger, afterCommit: hooks.afterCommit });
  // A constraint checked at COMMIT, to make COMMIT itself fail (this file's own database).
  await pool.query(sql.unsafe`CREATE TABLE commit_check (k int CONSTRAINT commit_check_k_key UNIQUE DEFERRABLE INITIALLY DEFERRED)`);
});

test.after.always(async () => {
  await observer?.end();
  await rawPool?.end();
  await database?.drop();
});

const meta = (requestId: string): RequestMeta => ({ requestId, ip: '203.0.113.9', userAgent: 'after-commit-test' });
const newRequestId = (label: string) => `req-${label}-${randomUUID()}`;

/** The security-event lines of one request id, in the order they were written. */
const linesOf = (requestId: string) =>
  logs.entries().filter((entry) => entry.securityEvent !== undefined && entry.requestId === requestId) as Array<{
    securityEvent: SecurityEventType;
    securityEventId: string;
    message: string;
  }>;

/** The committed rows of one request id, in chain order (read on another connection). */
const rowsOf = async (requestId: string) =>
  (await observer.query<{ id: string; event_type: string }>('SELECT id, event_type FROM security_event_audit WHERE request_id = $1 ORDER BY seq', [requestId]))
    .rows;

const record = (connection: Parameters<SecurityAudit['record']>[0], requestId: string, type: SecurityEventType = 'login_failed') =>
  audit.record(connection, meta(requestId), { type, userId: randomUUID(), details: { reason: 'wrong_password' } });

// ---------------------------------------------------------------------------------------------

test.serial('a committed event logs exactly one line, after COMMIT: none while the transaction is open, and its row is visible elsewhere when it is written', async (t) => {
  const requestId = newRequestId('commit');
  const whileOpen = await pool.transaction(async (tx) => {
    await record(tx, requestId);
    return { lines: linesOf(requestId).length, rows: (await rowsOf(requestId)).length };
  });
  t.deepEqual(whileOpen, { lines: 0, rows: 0 }, 'nothing logged (or visible) before COMMIT');

  const lines = linesOf(requestId);
  const rows = await rowsOf(requestId);
  t.is(lines.length, 1);
  t.is(rows.length, 1);
  t.like(lines[0], { securityEvent: 'login_failed', securityEventId: rows[0]!.id, message: 'security event login_failed' });
  t.true(await logs.visibleAtLine.get(rows[0]!.id), 'the row was committed when its line was written');
});

test.serial('an event whose transaction rolls back logs nothing: the handler throws, or COMMIT itself fails', async (t) => {
  const thrown = newRequestId('throw');
  await t.throwsAsync(
    pool.transaction(async (tx) => {
      await record(tx, thrown);
      throw new Error('the change failed after the event was recorded');
    }),
    { message: /the change failed/ },
  );
  t.deepEqual(linesOf(thrown), []);
  t.deepEqual(await rowsOf(thrown), []);

  // A deferred constraint fails at COMMIT, after the handler returned.
  const atCommit = newRequestId('commit-fails');
  const error = await t.throwsAsync(
    pool.transaction(async (tx) => {
      await tx.query(sql.unsafe`INSERT INTO commit_check (k) VALUES (1), (1)`);
      await record(tx, atCommit);
    }),
  );
  t.regex(`${error.message} ${String((error.cause as Error | undefined)?.message)}`, /commit_check_k_key|duplicate key/);
  t.deepEqual(linesOf(atCommit), []);
  t.deepEqual(await rowsOf(atCommit), []);
});

test.serial('a failed statement the handler swallowed: PostgreSQL rolls back at COMMIT without an error, and no line claims the event', async (t) => {
  const requestId = newRequestId('swallowed');
  const warningsBefore = logs.entries().filter((entry) => entry.severity === 'WARNING').length;
  const result = await pool.transaction(async (tx) => {
    await record(tx, requestId);
    await tx.query(sql.unsafe`SELECT 1 / 0`).catch(() => undefined);
    return 'looked fine';
  });
  t.is(result, 'looked fine', 'slonik resolves: COMMIT of an aborted transaction answers ROLLBACK, not an error');
  t.deepEqual(await rowsOf(requestId), [], 'nothing committed');
  t.deepEqual(linesOf(requestId), []);

  // The same inside a savepoint that returned normally: nothing rolled back to it, so the whole
  // transaction is aborted.
  const inSavepoint = newRequestId('swallowed-in-savepoint');
  await pool.transaction(async (tx) => {
    await record(tx, inSavepoint);
    await tx.transaction(async (inner) => {
      await inner.query(sql.unsafe`SELECT 1 / 0`).catch(() => undefined);
    });
  });
  t.deepEqual(await rowsOf(inSavepoint), []);
  t.deepEqual(linesOf(inSavepoint), []);

  const warnings = logs.entries().filter((entry) => entry.severity === 'WARNING').slice(warningsBefore);
  t.is(warnings.length, 2);
  t.like(warnings[0], { droppedCallbacks: 1 });

  // A rejected call that did not abort the transaction (no row for one()) costs one check, nothing more.
  const survived = newRequestId('survived');
  await pool.transaction(async (tx) => {
    await t.throwsAsync(tx.one(sql.unsafe`SELECT 1 WHERE false`));
    await record(tx, survived);
  });
  t.is(linesOf(survived).length, 1);
  t.is((await rowsOf(survived)).length, 1);
});

test.serial('when slonik retries a transaction (serialization failure), only the attempt that committed logs', async (t) => {
  const requestIds: string[] = [];
  await pool.transaction(async (tx) => {
    const requestId = newRequestId(`attempt-${requestIds.length + 1}`);
    requestIds.push(requestId);
    await record(tx, requestId);
    if (requestIds.length === 1) throw Object.assign(new Error('could not serialize access'), { code: '40001' });
  });
  t.is(requestIds.length, 2, 'retried once');
  t.deepEqual(linesOf(requestIds[0]!), []);
  t.deepEqual(await rowsOf(requestIds[0]!), []);
  const [row] = await rowsOf(requestIds[1]!);
  t.deepEqual(
    linesOf(requestIds[1]!).map((line) => line.securityEventId),
    [row!.id],
  );
});

test.serial('a savepoint’s events wait for the outermost COMMIT; rolled back to the savepoint, they log nothing while the rest commits', async (t) => {
  const requestId = newRequestId('savepoints');
  const kept = newRequestId('savepoint-kept');
  const dropped = newRequestId('savepoint-dropped');
  let afterInnerSucceeded = -1;
  await pool.transaction(async (tx) => {
    await record(tx, requestId, 'login_failed');
    await tx.transaction(async (inner) => {
      await record(inner, kept, 'mfa_failed');
    });
    afterInnerSucceeded = linesOf(kept).length;
    await t.throwsAsync(
      tx.transaction(async (inner) => {
        await record(inner, dropped, 'mfa_failed');
        throw new Error('roll back to the savepoint');
      }),
    );
    await record(tx, requestId, 'account_locked');
  });
  t.is(afterInnerSucceeded, 0, 'a released savepoint is not a commit');
  t.deepEqual(
    linesOf(requestId).map((line) => line.securityEvent),
    ['login_failed', 'account_locked'],
  );
  t.is(linesOf(kept).length, 1);
  t.deepEqual(linesOf(dropped), []);
  t.deepEqual(await rowsOf(dropped), []);
  const ids = [...(await rowsOf(requestId)), ...(await rowsOf(kept))].map((row) => row.id).sort();
  t.deepEqual([...linesOf(requestId), ...linesOf(kept)].map((line) => line.securityEventId).sort(), ids);

  // A savepoint that succeeded is still dropped with the transaction around it.
  const inRolledBack = newRequestId('savepoint-outer-rollback');
  await t.throwsAsync(
    pool.transaction(async (tx) => {
      await tx.transaction((inner) => record(inner, inRolledBack));
      throw new Error('the outer transaction fails');
    }),
  );
  t.deepEqual(linesOf(inRolledBack), []);
  t.deepEqual(await rowsOf(inRolledBack), []);
});

test.serial('outside a transaction (the pool, an explicit connection) the line comes at once; a transaction of an explicit connection waits for its COMMIT', async (t) => {
  const onPool = newRequestId('pool');
  await record(pool, onPool, 'rate_limited');
  const [poolRow] = await rowsOf(onPool);
  t.deepEqual(
    linesOf(onPool).map((line) => line.securityEventId),
    [poolRow!.id],
  );
  t.true(await logs.visibleAtLine.get(poolRow!.id));

  // The archive's pattern: pool.connect(c => c.transaction(…)).
  const onConnection = newRequestId('connection');
  const inTransaction = newRequestId('connection-transaction');
  const rolledBack = newRequestId('connection-rollback');
  await pool.connect(async (connection) => {
    await record(connection, onConnection, 'rate_limited');
    t.is(linesOf(onConnection).length, 1, 'a statement on its own commits at once');
    await connection.transaction(async (tx) => {
      await record(tx, inTransaction);
      t.is(linesOf(inTransaction).length, 0);
    });
    t.is(linesOf(inTransaction).length, 1);
    await t.throwsAsync(
      connection.transaction(async (tx) => {
        await record(tx, rolledBack);
        throw new Error('rolled back');
      }),
    );
  });
  const [transactionRow] = await rowsOf(inTransaction);
  t.true(await logs.visibleAtLine.get(transactionRow!.id));
  t.deepEqual(linesOf(rolledBack), []);
  t.deepEqual(await rowsOf(rolledBack), []);
});

test.serial('a connection the commit hooks did not hand out is refused, before any line and with the row rolled back', async (t) => {
  const requestId = newRequestId('untracked');
  await t.throwsAsync(
    rawPool.transaction((tx) => record(tx, requestId)),
    { instanceOf: UntrackedConnectionError },
  );
  t.deepEqual(linesOf(requestId), []);
  t.deepEqual(await rowsOf(requestId), []);

  // Nor after its transaction ended: a leaked handle cannot schedule work for a commit long past.
  let leaked: Parameters<SecurityAudit['record']>[0] | undefined;
  await pool.transaction(async (tx) => {
    leaked = tx;
  });
  t.throws(() => hooks.afterCommit(leaked!, () => undefined), { instanceOf: UntrackedConnectionError, message: /already ended/ });
});

test.serial('a failing after-commit callback is logged; the transaction’s result and the callbacks after it are unaffected', async (t) => {
  const requestId = newRequestId('callbacks');
  const order: string[] = [];
  const errorsBefore = logs.entries().filter((entry) => entry.message === 'after-commit callback failed').length;
  const result = await pool.transaction(async (tx) => {
    hooks.afterCommit(tx, () => order.push('first'));
    hooks.afterCommit(tx, () => {
      throw new Error('a callback bug');
    });
    hooks.afterCommit(tx, async () => {
      throw new Error('an async callback bug');
    });
    await record(tx, requestId);
    hooks.afterCommit(tx, () => order.push('last'));
    return 'committed';
  });
  t.is(result, 'committed');
  t.deepEqual(order, ['first', 'last']);
  t.is(linesOf(requestId).length, 1);
  await new Promise((resolve) => setImmediate(resolve));
  t.is(logs.entries().filter((entry) => entry.message === 'after-commit callback failed').length, errorsBefore + 2);
});

test.serial('concurrent appenders log in commit order, which is the chain’s seq order', async (t) => {
  const batch = `req-order-${randomUUID()}`;
  const count = 24;
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      pool.transaction(async (tx) => {
        await record(tx, `${batch}-${i}`);
        // Hold the chain lock a little, so that the commits queue up behind each other.
        await new Promise((resolve) => setTimeout(resolve, i % 3));
      }),
    ),
  );
  const logged = logs
    .entries()
    .filter((entry) => typeof entry.requestId === 'string' && entry.requestId.startsWith(batch))
    .map((entry) => entry.securityEventId as string);
  t.is(logged.length, count);
  const seqs = (
    await observer.query<{ id: string; seq: string }>('SELECT id, seq::text AS seq FROM security_event_audit WHERE request_id LIKE $1', [`${batch}-%`])
  ).rows;
  const seqOf = new Map(seqs.map((row) => [row.id, BigInt(row.seq)]));
  const inLogOrder = logged.map((id) => seqOf.get(id)!);
  t.deepEqual(
    inLogOrder,
    [...inLogOrder].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
  );
});

test('over HTTP: a failed login logs one login_failed line naming its committed row, and a successful one login_succeeded', async (t) => {
  const service = await startTestService(t, { LOG_LEVEL: 'info' });
  const api = createApi(service.url);
  const email = `after-commit-${randomUUID()}@example.test`;
  const password = `Pw-${randomUUID()}`;
  t.is((await api.post('/auth/register', { email, password, displayName: 'After Commit' })).status, 201);

  const failed = `req-http-failed-${randomUUID()}`;
  t.is((await api.post('/auth/login', { email, password: `${password}-wrong` }, undefined, { 'x-request-id': failed })).status, 401);
  const succeeded = `req-http-ok-${randomUUID()}`;
  t.is((await api.post('/auth/login', { email, password }, undefined, { 'x-request-id': succeeded })).status, 200);

  const rows = await withAdminClient(
    async (client) =>
      (
        await client.query<{ id: string; event_type: string; request_id: string }>(
          'SELECT id, event_type, request_id FROM security_event_audit WHERE request_id IN ($1, $2) ORDER BY seq',
          [failed, succeeded],
        )
      ).rows,
    service.database.name,
  );
  const lines = service.logs
    .entries()
    .filter((entry) => entry.securityEvent !== undefined && (entry.requestId === failed || entry.requestId === succeeded))
    .map((entry) => ({ id: entry.securityEventId, event_type: entry.securityEvent, request_id: entry.requestId }));
  t.deepEqual(lines, rows);
  t.deepEqual(
    rows.map((row) => row.event_type),
    ['login_failed', 'login_succeeded'],
  );
});
