/**
 * The slonik pool. Every query states its row count (`one`, `maybeOne`, `many`, …) and,
 * through `sql.type(schema)`, its row type; the interceptor below validates rows against it.
 */
import {
  createPool,
  createTypeParserPreset,
  SchemaValidationError,
  sql,
  type ClientConfigurationInput,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
} from 'slonik';
import type { Config } from '../config/index.js';
import { createBoundedPgDriverFactory } from './driver.js';
import { tlsOptionsFor } from './tls.js';

export type { DatabasePool } from 'slonik';

/**
 * Validates rows of `sql.type(zodSchema)` queries and replaces them with the parsed values
 * (slonik leaves this to an interceptor; this is the one its documentation recommends).
 */
const createResultParserInterceptor = (): Interceptor => ({
  name: 'karaxas-result-parser',
  transformRow: (executionContext, actualQuery, row) => {
    const { resultParser } = executionContext;
    if (!resultParser) return row;
    const validated = resultParser.safeParse(row);
    if (!validated.success) {
      throw new SchemaValidationError(actualQuery, row, validated.error.issues);
    }
    return validated.data as QueryResultRow;
  },
});

/**
 * Session state is reset where a caller could have left some: after an explicit `pool.connect()`
 * session (e.g. the archive's session-level advisory lock). slonik's default runs DISCARD ALL
 * after every release, which doubled the round trips of every one-off query and transaction;
 * those only ever use transaction-scoped state (SET LOCAL, xact locks), which ends with them.
 */
const createExplicitSessionReset = (): Interceptor => ({
  name: 'karaxas-explicit-session-reset',
  beforePoolConnectionRelease: async (context, connection) => {
    if (context.connectionType === 'EXPLICIT') await connection.query(sql.unsafe`DISCARD ALL`);
    return null;
  },
});

/** Timestamps arrive as ISO-8601 strings; everything else keeps slonik's defaults. */
const typeParsers = [
  ...createTypeParserPreset().filter((parser) => parser.name !== 'timestamptz' && parser.name !== 'timestamp'),
  { name: 'timestamptz', parse: (value: string) => new Date(value).toISOString() },
  { name: 'timestamp', parse: (value: string) => new Date(`${value}Z`).toISOString() },
];

/**
 * How long a pool query may wait for its answer before the client gives up on the connection:
 * the statement timeout plus a margin. A running server cancels a statement at
 * DB_STATEMENT_TIMEOUT_MS and its error arrives one round trip later, so while the server runs
 * its own StatementTimeoutError comes first; the margin is DB_CONNECT_TIMEOUT_MS, the time
 * already allowed for the network to complete a connection. A server that does not answer at all
 * (frozen, partitioned) is what reaches this bound.
 */
export const clientQueryTimeoutMs = (database: Pick<Config['database'], 'statementTimeoutMs' | 'connectTimeoutMs'>): number =>
  database.statementTimeoutMs + database.connectTimeoutMs;

/**
 * The settings of the application pool. Apart from {@link createDatabasePool} so that a test can
 * run the same settings through slonik's own pg driver and compare.
 *
 * Every query is bounded on the client (see {@link clientQueryTimeoutMs} and app/db/driver.ts):
 * without an answer in time it rejects with a ClientQueryTimeoutError (a slonik
 * BackendTerminatedError, so 503 at the HTTP layer) and its connection is closed, never reused.
 * Pool connections use TCP keepalive.
 */
export const databasePoolConfiguration = (database: Config['database']): ClientConfigurationInput => {
  const ssl = tlsOptionsFor(database);
  return {
    driverFactory: createBoundedPgDriverFactory({ queryTimeoutMs: clientQueryTimeoutMs(database) }),
    maximumPoolSize: database.poolSize,
    connectionTimeout: database.connectTimeoutMs,
    statementTimeout: database.statementTimeoutMs,
    idleInTransactionSessionTimeout: 60_000,
    // A dead database should surface as 503s quickly, not as requests queued behind retries.
    connectionRetryLimit: 1,
    captureStackTrace: false,
    interceptors: [createResultParserInterceptor(), createExplicitSessionReset()],
    // A no-op rather than none: without an awaited reset, slonik's release finishes before it
    // records that it started, and the connection is then refused as "pending release".
    resetConnection: async () => undefined,
    typeParsers,
    ...(ssl === false ? {} : { ssl }),
  };
};

/**
 * Creates the application pool with {@link databasePoolConfiguration}. Opens one connection at
 * once (slonik's driver looks up the type parsers' oids); pool connections are opened on demand.
 * @throws when that first connection or lookup fails (slonik's or pg's error).
 */
export const createDatabasePool = async (database: Config['database']): Promise<DatabasePool> =>
  createPool(database.connectionUri, databasePoolConfiguration(database));
