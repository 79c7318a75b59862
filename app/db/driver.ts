/**
 * The pg driver of the application pool: slonik's own pg driver (`createPgDriverFactory` of
 * @slonik/pg-driver 47, which slonik uses when no `driverFactory` is given), with two additions
 * for a database that stops answering without refusing — a frozen or failing-over Cloud SQL
 * primary, a network partition:
 *
 * - **Every query has a client-side bound.** `statement_timeout` is enforced by the server, so a
 *   server that does not run (or cannot be reached) never enforces it, and pg has no client-side
 *   timeout unless one is configured: a request that took an idle pool connection to a frozen
 *   server waited forever. When no answer arrives within the bound the query fails with
 *   {@link ClientQueryTimeoutError} and its socket is destroyed — the old query is still in flight
 *   on that connection, so anything sent after it would queue behind it.
 * - **TCP keepalive** on every connection, so a peer that vanished is noticed without the client
 *   sending anything — on a connection waiting for a long statement (the audit archive allows
 *   300 s) — and idle-flow timeouts of the network path (NAT, firewalls) do not silently drop
 *   one. Pool connections idle longer than 5 s are closed anyway (slonik's idle timeout), so for
 *   an idle connection to a frozen server it is the query bound that answers.
 *
 * Everything else follows @slonik/pg-driver line for line — the pg client settings from the DSN
 * and slonik's timeouts, the type parsers (the same pg-types 4 and postgres-array, pinned as
 * direct dependencies), the translation of pg errors into slonik's classes (the app maps
 * constraint violations by name and connection failures to 503 by class) — so a healthy
 * database behaves exactly as before; test/db-driver.test.ts compares the two drivers. Re-check
 * this file against node_modules/@slonik/pg-driver/dist/factories/createPgDriverFactory.js when
 * upgrading slonik.
 *
 * Scoped to the pool that asks for it: nothing is set on `pg.defaults`, so the migration client,
 * the LISTEN connection and tests' own pg clients keep their settings.
 */
import { Transform } from 'node:stream';
import pg from 'pg';
import QueryStream from 'pg-query-stream';
import pgTypes from 'pg-types';
import postgresArray from 'postgres-array';
import {
  BackendTerminatedError,
  BackendTerminatedUnexpectedlyError,
  CheckExclusionConstraintViolationError,
  CheckIntegrityConstraintViolationError,
  createDriverFactory,
  ForeignKeyIntegrityConstraintViolationError,
  IdleTransactionTimeoutError,
  InputSyntaxError,
  InvalidInputError,
  NotNullIntegrityConstraintViolationError,
  parseDsn,
  StatementCancelledError,
  StatementTimeoutError,
  UnexpectedStateError,
  UniqueIntegrityConstraintViolationError,
  type DriverConfiguration,
  type DriverFactory,
  type DriverClient,
  type DriverTypeParser,
  type Query,
} from 'slonik';

/**
 * Idle time before the first TCP keepalive probe. Node sets only this delay; the probe interval
 * and count are the operating system's (or libuv's, depending on the Node version). Well under
 * the 10-minute idle-flow timeout of Google Cloud's network path.
 */
export const TCP_KEEPALIVE_INITIAL_DELAY_MS = 10_000;

/**
 * A query got no answer within the client-side bound; its connection was closed and is never
 * reused. A {@link BackendTerminatedError} on purpose: slonik then marks the connection
 * terminated (a transaction does not try to ROLLBACK over it, later queries on it fail at once)
 * and destroys it, and the HTTP layer answers 503 `service_unavailable` as for any lost backend.
 */
export class ClientQueryTimeoutError extends BackendTerminatedError {
  declare readonly message: string;

  constructor(readonly timeoutMs: number) {
    super(new Error('client-side query timeout'));
    this.message = `The database did not answer within ${timeoutMs} ms; the connection was closed.`;
  }
}
// On the prototype, as Error's own: not repeated as a field in every logged error.
Object.defineProperty(ClientQueryTimeoutError.prototype, 'name', { value: 'ClientQueryTimeoutError', configurable: true, writable: true });

export type BoundedPgDriverOptions = {
  /** Longest wait for the answer to one query, in ms; then {@link ClientQueryTimeoutError}. */
  queryTimeoutMs: number;
  /** Defaults to {@link TCP_KEEPALIVE_INITIAL_DELAY_MS}. */
  keepAliveInitialDelayMs?: number;
};

type PgClientConfiguration = pg.ClientConfig & { queryMode: 'extended' };

/** pg's socket: not in its typings, but the only handle that ends a connection without a goodbye. */
const destroySocket = (client: pg.Client) => {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
};

/**
 * Closes `client` without waiting for the server: marks it ending (so pg reports no error event
 * for it) and destroys the socket. Safe to call more than once.
 */
const abandon = (client: pg.Client) => {
  client.end().catch(() => undefined);
  destroySocket(client);
};

/**
 * Runs `work` on `client` within `timeoutMs`.
 * @throws {ClientQueryTimeoutError} when no answer arrives in time; `client` is abandoned then.
 */
const withinBound = async <T>(client: pg.Client, timeoutMs: number, work: Promise<T>): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      abandon(client);
      reject(new ClientQueryTimeoutError(timeoutMs));
    }, timeoutMs);
  });
  try {
    // `work` rejects too once the socket is gone; the race has already settled and handles it.
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
};

/**
 * Ends `client` gracefully, but a peer that does not acknowledge the goodbye (frozen,
 * partitioned: pg waits for the server to close its side) gets its socket destroyed after
 * `timeoutMs`, so pool shutdown, idle eviction and the LISTEN hub's close never hang on it.
 * Never rejects.
 */
export const endWithin = async (client: pg.Client, timeoutMs: number): Promise<void> => {
  const timer = setTimeout(() => destroySocket(client), timeoutMs);
  try {
    await client.end().catch(() => undefined);
  } finally {
    clearTimeout(timer);
  }
};

// ---------------------------------------------------------------------------------------------
// As in @slonik/pg-driver

const createTypeOverrides = async (client: pg.Client, typeParsers: readonly DriverTypeParser[], timeoutMs: number) => {
  const typeNames = typeParsers.map((typeParser) => typeParser.name);
  const postgresTypes = (
    await withinBound(
      client,
      timeoutMs,
      client.query<{ oid: number; typarray: number; typname: string }>(
        `
        SELECT
          oid,
          typarray,
          typname
        FROM pg_type
        WHERE typname = ANY($1::text[])
      `,
        [typeNames],
      ),
    )
  ).rows;
  const parsers: Record<number, (value: string) => unknown> = {};
  for (const typeParser of typeParsers) {
    const postgresType = postgresTypes.find((candidate) => candidate.typname === typeParser.name);
    if (!postgresType) throw new Error(`Database type "${typeParser.name}" not found.`);
    parsers[postgresType.oid] = (value) => typeParser.parse(value);
    if (postgresType.typarray) {
      parsers[postgresType.typarray] = (arrayValue) => postgresArray.parse(arrayValue).map((value) => typeParser.parse(value));
    }
  }
  return (oid: number) => parsers[oid] ?? pgTypes.getTypeParser(oid);
};

const createClientConfiguration = (driverConfiguration: DriverConfiguration, options: Required<BoundedPgDriverOptions>): PgClientConfiguration => {
  const connectionOptions = parseDsn(driverConfiguration.connectionUri);
  const configuration: PgClientConfiguration = {
    application_name: connectionOptions.applicationName,
    database: connectionOptions.databaseName,
    host: connectionOptions.host,
    options: connectionOptions.options,
    password: connectionOptions.password,
    port: connectionOptions.port,
    queryMode: 'extended',
    ssl: false,
    user: connectionOptions.username,
    // The additions (see the top of this file).
    keepAlive: true,
    keepAliveInitialDelayMillis: options.keepAliveInitialDelayMs,
  };
  if (driverConfiguration.ssl) configuration.ssl = driverConfiguration.ssl;
  else if (connectionOptions.sslMode === 'disable') configuration.ssl = false;
  else if (connectionOptions.sslMode === 'require') configuration.ssl = true;
  else if (connectionOptions.sslMode === 'no-verify') configuration.ssl = { rejectUnauthorized: false };
  if (driverConfiguration.connectionTimeout !== 'DISABLE_TIMEOUT') {
    configuration.connectionTimeoutMillis = driverConfiguration.connectionTimeout === 0 ? 1 : driverConfiguration.connectionTimeout;
  }
  if (driverConfiguration.statementTimeout !== 'DISABLE_TIMEOUT') {
    configuration.statement_timeout = driverConfiguration.statementTimeout === 0 ? 1 : driverConfiguration.statementTimeout;
  }
  if (driverConfiguration.idleInTransactionSessionTimeout !== 'DISABLE_TIMEOUT') {
    configuration.idle_in_transaction_session_timeout =
      driverConfiguration.idleInTransactionSessionTimeout === 0 ? 1 : driverConfiguration.idleInTransactionSessionTimeout;
  }
  return configuration;
};

type PgError = Error & { code?: string; constraint?: string; column?: string; table?: string };

/** pg's errors as slonik's classes, exactly as @slonik/pg-driver translates them. */
const wrapError = (error: PgError, query: Query | null): Error => {
  const message = error.message.toLowerCase();
  if (message.includes('connection terminated unexpectedly')) return new BackendTerminatedUnexpectedlyError(error);
  if (message.includes('connection terminated')) return new BackendTerminatedError(error);
  if (!('code' in error)) return error;
  switch (error.code) {
    case '22P02':
      return new InvalidInputError(error.message);
    case '25P03':
      return new IdleTransactionTimeoutError(error);
    case '57P01':
      return new BackendTerminatedError(error);
    case '57014':
      // The code alone does not tell a statement timeout from a cancellation.
      return error.message.includes('canceling statement due to user request') ? new StatementCancelledError(error) : new StatementTimeoutError(error);
    case '23502':
      return new NotNullIntegrityConstraintViolationError(error);
    case '23503':
      return new ForeignKeyIntegrityConstraintViolationError(error);
    case '23505':
      return new UniqueIntegrityConstraintViolationError(error);
    case '23P01':
      return new CheckExclusionConstraintViolationError(error);
    case '23514':
      return new CheckIntegrityConstraintViolationError(error);
    case '42601':
      return query ? new InputSyntaxError(error, query) : new UnexpectedStateError('Expected query to be provided');
    default:
      return error;
  }
};

// ---------------------------------------------------------------------------------------------

/**
 * slonik's pg driver with a client-side bound on every query and TCP keepalive; pass it as
 * `createPool(uri, { driverFactory })`.
 *
 * A query (or the type lookup when the pool starts) that gets no answer within
 * `queryTimeoutMs` rejects with {@link ClientQueryTimeoutError} and its connection is closed
 * without a goodbye; slonik then drops it from the pool. Pick a bound longer than the statement
 * timeout, so that the server's own StatementTimeoutError still arrives first whenever the
 * server runs. Streams (`pool.stream`, unused by the app) are paced by their consumer and so are
 * not bounded; keepalive still applies to them.
 *
 * The factory, when createPool runs it, opens one connection to look up the type parsers' oids
 * and rejects as that fails (pg's connect error, or {@link ClientQueryTimeoutError}).
 * @throws {RangeError} when `queryTimeoutMs` is not a positive finite number.
 */
export const createBoundedPgDriverFactory = (options: BoundedPgDriverOptions): DriverFactory => {
  const settings: Required<BoundedPgDriverOptions> = {
    queryTimeoutMs: options.queryTimeoutMs,
    keepAliveInitialDelayMs: options.keepAliveInitialDelayMs ?? TCP_KEEPALIVE_INITIAL_DELAY_MS,
  };
  if (!Number.isFinite(settings.queryTimeoutMs) || settings.queryTimeoutMs <= 0) {
    throw new RangeError(`queryTimeoutMs must be a positive number of milliseconds, got ${settings.queryTimeoutMs}`);
  }
  return createDriverFactory(async ({ driverConfiguration }) => {
    const clientConfiguration = createClientConfiguration(driverConfiguration, settings);
    // A goodbye is given as long as a hello: the connect timeout.
    const endTimeoutMs = driverConfiguration.connectionTimeout === 'DISABLE_TIMEOUT' ? settings.queryTimeoutMs : Math.max(1, driverConfiguration.connectionTimeout);

    const bootstrap = new pg.Client(clientConfiguration);
    await bootstrap.connect();
    let getTypeParser: (oid: number) => (value: string) => unknown;
    try {
      getTypeParser = await createTypeOverrides(bootstrap, driverConfiguration.typeParsers, settings.queryTimeoutMs);
    } finally {
      await endWithin(bootstrap, endTimeoutMs);
    }
    clientConfiguration.types = { getTypeParser } as pg.CustomTypesConfig;

    return {
      createPoolClient: async ({ clientEventEmitter }) => {
        const client = new pg.Client(clientConfiguration);
        // Connection-level errors (a backend terminated while idle, a keepalive that found the
        // peer gone): slonik destroys the client on them.
        const onError = (error: Error) => {
          clientEventEmitter.emit('error', wrapError(error, null));
        };
        const onNotice = (notice: { message?: string }) => {
          if (notice.message) clientEventEmitter.emit('notice', { message: notice.message });
        };
        client.on('error', onError);
        client.on('notice', onNotice);
        let timedOut: ClientQueryTimeoutError | undefined;

        return {
          connect: async () => {
            await client.connect();
          },
          end: async () => {
            await endWithin(client, endTimeoutMs);
            client.removeListener('error', onError);
            client.removeListener('notice', onNotice);
          },
          query: async (sql, values) => {
            // slonik destroys a connection whose query failed this way; should one ever be asked
            // again, it answers as a terminated backend rather than with pg's "not queryable".
            if (timedOut) throw new BackendTerminatedError(timedOut);
            let result: pg.QueryResult | pg.QueryResult[];
            try {
              result = await withinBound(client, settings.queryTimeoutMs, client.query(sql, values));
            } catch (error) {
              if (error instanceof ClientQueryTimeoutError) {
                timedOut = error;
                throw error;
              }
              throw wrapError(error as PgError, { sql, values: (values ?? []) as Query['values'] });
            }
            if (Array.isArray(result)) throw new InvalidInputError('Must not use multiple statements in a single query.');
            return {
              command: result.command as 'COPY' | 'DELETE' | 'INSERT' | 'SELECT' | 'UPDATE',
              fields: result.fields.map((field) => ({ dataTypeId: field.dataTypeID, name: field.name })),
              rowCount: result.rowCount,
              rows: result.rows as Array<Record<string, unknown>>,
            };
          },
          stream: (sql, values) => {
            const stream = client.query(new QueryStream(sql, values));
            let fields: Array<{ dataTypeId: number; name: string }> = [];
            // `rowDescription` does not fire for a syntax error, nor before the stream is read.
            (client as unknown as { connection: NodeJS.EventEmitter }).connection.once(
              'rowDescription',
              (rowDescription: { fields: Array<{ dataTypeID: number; name: string }> }) => {
                fields = rowDescription.fields.map((field) => ({ dataTypeId: field.dataTypeID, name: field.name }));
              },
            );
            const transform = new Transform({
              objectMode: true,
              transform(datum, _encoding, callback) {
                this.push({ fields, row: datum });
                callback();
              },
            });
            stream.on('error', (error: Error) => {
              transform.emit('error', wrapError(error, { sql, values: (values ?? []) as Query['values'] }));
            });
            return stream.pipe(transform) as unknown as ReturnType<DriverClient['stream']>;
          },
        };
      },
    };
  });
};
