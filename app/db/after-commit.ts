/**
 * After-commit callbacks: work that must happen if and only if a transaction committed — above
 * all the audit trails' log lines, which log-based metrics and alert policies count (infra/) —
 * runs right after COMMIT, never for a transaction that rolled back.
 *
 * slonik has no commit hook, so {@link createCommitHooks} wraps the pool: its `transaction()`
 * (and the `transaction()` of the connections its `connect()` hands out, and the savepoints
 * opened with `tx.transaction()`) gives the handler a connection object that keys a list of
 * callbacks in a WeakMap. `afterCommit(connection, callback)` adds to that list; the list runs
 * once slonik's `transaction()` has resolved, which it does only after COMMIT succeeded.
 * Services keep calling `pool.transaction(async (tx) => …)` as before; the composition root
 * (app/server.ts) hands them the wrapped pool.
 *
 * The guarantee, case by case:
 * - committed: the callbacks run in the order they were added, right after `transaction()`
 *   resolves (COMMIT, then the connection's release, without I/O in between) and before the
 *   caller's `await` continues. Within the process that is commit order: a COMMIT's reply and
 *   everything up to the callbacks run in one turn of the event loop.
 * - rolled back (the handler threw, COMMIT failed, the backend was terminated, the process died
 *   before COMMIT): the callbacks are dropped. When slonik retries a transaction after a
 *   serialization failure or deadlock, each attempt starts with an empty list; only the attempt
 *   that committed counts.
 * - a savepoint (`tx.transaction()`): its callbacks join the enclosing transaction's list when it
 *   succeeds and wait for the outermost COMMIT; they are dropped when it rolls back to the
 *   savepoint, whatever the enclosing transaction does next.
 * - a failed statement the handler swallowed: PostgreSQL then answers COMMIT by rolling back —
 *   without an error, so slonik resolves as if it had committed. Any rejected call on the
 *   transaction is noted, and before such a transaction ends with callbacks pending one
 *   `SELECT 1` asks the server whether it is still alive; if not, the callbacks are dropped (and
 *   a warning names the count). Transactions without a failed call pay nothing.
 * - no transaction (the pool itself, or a connection of `connect()` outside a transaction): a
 *   statement on its own commits when it returns, so the callback runs at once.
 * - a connection this object did not hand out (the unwrapped pool, a transaction of it):
 *   `afterCommit` throws — it cannot know whether that work committed, and guessing would bring
 *   back the lines for rolled-back rows.
 *
 * At most once, not exactly once: when the outcome of COMMIT is unknown (the connection broke
 * while committing) or the process dies between COMMIT and the callbacks, a committed row goes
 * without its callback. A missing log line is preferred to one claiming a row that does not
 * exist; the rows themselves (and the ops metrics counting them) stay authoritative.
 */
import { sql, type CommonQueryMethods, type DatabasePool, type DatabaseTransactionConnection } from 'slonik';
import type { Logger } from '../logger.js';

/**
 * Runs after a commit. Keep it short and synchronous (a log line): it runs before the caller of
 * `transaction()` continues. Errors it throws (or a promise it returns rejects with) are logged
 * and go no further.
 */
export type AfterCommitCallback = () => void;

/**
 * Schedules `callback` for when the work done so far on `connection` is committed: right after
 * the outermost COMMIT for a transaction or savepoint of the hooked pool (dropped if it rolls
 * back), at once for the hooked pool or one of its explicit connections outside a transaction.
 * @throws {UntrackedConnectionError} when `connection` was not handed out by the hooked pool, or
 *   its transaction has already ended.
 */
export type AfterCommit = (connection: CommonQueryMethods, callback: AfterCommitCallback) => void;

export type CommitHooks = {
  /**
   * The pool to hand to every service and store: the wrapped pool's own behaviour, plus the
   * bookkeeping {@link AfterCommit} needs. Everything but `transaction` and `connect` is the
   * pool's own (events, `end`, `state`, one-off queries).
   */
  pool: DatabasePool;
  afterCommit: AfterCommit;
};

/** A wiring mistake: the connection did not come from {@link CommitHooks.pool}, or its transaction is over. */
export class UntrackedConnectionError extends Error {
  override name = 'UntrackedConnectionError';
}

/** One attempt of a transaction or savepoint. */
type Scope = {
  readonly callbacks: AfterCommitCallback[];
  /** A call on this connection was rejected: the transaction may be aborted (see the module comment). */
  failed: boolean;
  /** Ended (committed, merged into its parent, or rolled back): adding to it is a bug. */
  ended: boolean;
};

/** The pool, or a connection of `connect()`: every statement commits on its own. */
const AUTOCOMMIT = 'autocommit';

type Begin<T> = (handler: (tx: DatabaseTransactionConnection) => Promise<T>) => Promise<T>;

export const createCommitHooks = ({ pool, logger }: { pool: DatabasePool; logger: Pick<Logger, 'error' | 'warn'> }): CommitHooks => {
  // Keyed by the connection objects this module hands out; an entry goes with its object.
  const tracked = new WeakMap<object, Scope | typeof AUTOCOMMIT>();

  const invoke = (callback: AfterCommitCallback) => {
    try {
      const returned: unknown = callback();
      // Typed as returning void, an async function still fits; its rejection must not go unhandled.
      if (returned instanceof Promise) returned.catch((error: unknown) => logger.error({ err: error }, 'after-commit callback failed'));
    } catch (error) {
      logger.error({ err: error }, 'after-commit callback failed');
    }
  };

  /**
   * `target`'s methods, called lazily (slonik disables a released connection's methods in place,
   * and that must still show through), each result passed through `watch`.
   */
  const delegate = (
    target: CommonQueryMethods,
    transaction: CommonQueryMethods['transaction'],
    watch: <R>(promise: Promise<R>) => Promise<R>,
  ): CommonQueryMethods => ({
    any: (query, values) => watch(target.any(query, values)),
    anyFirst: (query, values) => watch(target.anyFirst(query, values)),
    exists: (query, values) => watch(target.exists(query, values)),
    many: (query, values) => watch(target.many(query, values)),
    manyFirst: (query, values) => watch(target.manyFirst(query, values)),
    maybeOne: (query, values) => watch(target.maybeOne(query, values)),
    maybeOneFirst: (query, values) => watch(target.maybeOneFirst(query, values)),
    one: (query, values) => watch(target.one(query, values)),
    oneFirst: (query, values) => watch(target.oneFirst(query, values)),
    query: (query, values) => watch(target.query(query, values)),
    stream: (query, handler) => watch(target.stream(query, handler)),
    transaction: (handler, retryLimit) => watch(transaction(handler, retryLimit)),
  });

  const unwatched = <R>(promise: Promise<R>) => promise;

  /** Whether an open transaction can still commit (a failed statement aborts it until the end). */
  const stillAlive = (tx: DatabaseTransactionConnection) =>
    tx.query(sql.unsafe`SELECT 1`).then(
      () => true,
      () => false,
    );

  /**
   * Runs `handler` in the transaction or savepoint that `begin` opens, giving each attempt its
   * own scope. `parent` is the enclosing transaction's scope for a savepoint.
   */
  const runScoped = async <T>(begin: Begin<T>, handler: (tx: DatabaseTransactionConnection) => Promise<T>, parent?: Scope): Promise<T> => {
    let attempt: Scope | undefined;
    try {
      const result = await begin(async (tx) => {
        // slonik calls this again, with a new connection object, when it retries the transaction;
        // what an earlier attempt scheduled was rolled back with it.
        if (attempt) attempt.ended = true;
        const scope: Scope = { callbacks: [], failed: false, ended: false };
        attempt = scope;
        const watched = delegate(
          tx,
          (inner, retryLimit) => runScoped((innerHandler) => tx.transaction(innerHandler, retryLimit), inner, scope),
          (promise) =>
            promise.catch((error: unknown) => {
              scope.failed = true;
              throw error;
            }),
        );
        tracked.set(watched, scope);
        const value = await handler(watched);
        if (parent === undefined && scope.failed && scope.callbacks.length > 0 && !(await stillAlive(tx))) {
          logger.warn(
            { droppedCallbacks: scope.callbacks.length },
            'a transaction ended after a failed statement it did not roll back: PostgreSQL rolls it back at COMMIT; its after-commit callbacks were dropped',
          );
          scope.callbacks.length = 0;
        }
        return value;
      });
      // Resolved: the last attempt is the one that committed (or, for a savepoint, that stands).
      const done = attempt!;
      done.ended = true;
      if (parent) {
        // Not durable yet: the enclosing transaction may still roll back.
        parent.callbacks.push(...done.callbacks);
        parent.failed ||= done.failed;
      } else {
        for (const callback of done.callbacks) invoke(callback);
      }
      return result;
    } catch (error) {
      if (attempt) attempt.ended = true;
      throw error;
    }
  };

  const connect: DatabasePool['connect'] = (routine) =>
    pool.connect((connection) => {
      const session = delegate(
        connection,
        (handler, retryLimit) => runScoped((inner) => connection.transaction(inner, retryLimit), handler),
        unwatched,
      );
      tracked.set(session, AUTOCOMMIT);
      return routine(session);
    });

  const transaction: DatabasePool['transaction'] = (handler, retryLimit) =>
    runScoped((inner) => pool.transaction(inner, retryLimit), handler);

  // A Proxy rather than a copy: the pool is also an EventEmitter whose state lives on the object
  // itself, so reads and writes of everything else must reach the pool unchanged.
  const hookedPool = new Proxy(pool, {
    get: (target, key) => (key === 'transaction' ? transaction : key === 'connect' ? connect : Reflect.get(target, key, target)),
  });
  tracked.set(hookedPool, AUTOCOMMIT);

  return {
    pool: hookedPool,
    afterCommit: (connection, callback) => {
      const scope = tracked.get(connection);
      if (scope === undefined) {
        throw new UntrackedConnectionError(
          'afterCommit: this connection does not come from the commit-hooks pool, so its commit cannot be observed (hand the service CommitHooks.pool)',
        );
      }
      if (scope === AUTOCOMMIT) return invoke(callback);
      if (scope.ended) throw new UntrackedConnectionError('afterCommit: the transaction of this connection has already ended');
      scope.callbacks.push(callback);
    },
  };
};
