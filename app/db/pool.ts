/**
 * The slonik pool. Every query states its row count (`one`, `maybeOne`, `many`, …) and,
 * through `sql.type(schema)`, its row type; the interceptor below validates rows against it.
 */
import {
  createPool,
  createTypeParserPreset,
  SchemaValidationError,
  sql,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
} from 'slonik';
import type { Config } from '../config/index.js';
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
 * Creates the application pool. Connections are opened lazily; call {@link assertDatabaseReachable}
 * at boot to fail fast with a clear message.
 */
export const createDatabasePool = async (database: Config['database']): Promise<DatabasePool> => {
  const ssl = tlsOptionsFor(database);
  return createPool(database.connectionUri, {
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
  });
};
