/**
 * The composition root: builds every feature from the config and wires them into one HTTP
 * server. Nothing else constructs stores or services.
 */
import { createServer, type Server } from 'node:http';
import type { Redis } from 'ioredis';
import type { AddressInfo } from 'node:net';
import { sql } from 'slonik';
import { createSecurityAuditService } from './audit/service.js';
import { createSecurityAuditStore } from './audit/store.js';
import { createPasswordHasher } from './auth/passwords.js';
import { createAuthRoutes } from './auth/routes.js';
import { createAuthService } from './auth/service.js';
import { createAuthStore } from './auth/store.js';
import { createRevocationCache } from './auth/revocation-cache.js';
import { createAccessTokenIssuer } from './auth/tokens.js';
import type { Config } from './config/index.js';
import { createCommitHooks } from './db/after-commit.js';
import { createDatabasePool, type DatabasePool } from './db/pool.js';
import { runMigrations } from './db/migrate.js';
import { createNotificationHub } from './db/notifications.js';
import { createHealthRoutes } from './health/routes.js';
import { createHttpApp } from './http/app.js';
import { writeClientError } from './http/middleware.js';
import { buildOpenApiDocument } from './http/openapi.js';
import { createRateLimiter } from './http/rate-limit.js';
import { requestMeta } from './http/request-meta.js';
import type { AnyRoute } from './http/route.js';
import type { Logger } from './logger.js';
import { createRealtimeGateway } from './realtime/gateway.js';
import { createRealtimeRoutes } from './realtime/routes.js';
import { createRealtimeService } from './realtime/service.js';
import { createRealtimeStore } from './realtime/store.js';
import { createMfaRoutes } from './mfa/routes.js';
import { createMfaService } from './mfa/service.js';
import { createPasswordResetRoutes, createPasswordResetService } from './auth/password-reset.js';
import { createOpsGuard } from './ops/guard.js';
import { createOpsRoutes } from './ops/routes.js';
import { createAdminAuditRecorder, createOpsService } from './ops/service.js';
import { createOpsStore } from './ops/store.js';
import { createOpsConsole } from './ops/console/routes.js';
import { createGatewayDrainTarget } from './realtime/drain.js';
import { createReleaseGate } from './release/gate.js';
import { createReleaseRoutes } from './release/routes.js';
import { createReleaseService } from './release/service.js';
import { createReleaseStore } from './release/store.js';
import { version } from './version.js';

/** A boot failure the operator can act on; its message is one line and holds no secret. */
export class BootError extends Error {
  override name = 'BootError';
}

export type Service = {
  server: Server;
  pool: DatabasePool;
  /** `http://host:port` the server listens on. */
  url: string;
  /**
   * Graceful stop: readiness turns 503, the listener stops accepting, in-flight requests finish,
   * long-lived connections are told to go elsewhere, the pool closes. Idempotent.
   */
  shutdown: (reason: string) => Promise<void>;
};

export type ServiceOptions = {
  config: Config;
  logger: Logger;
  /** Port override (tests pass 0 for an ephemeral port). */
  port?: number;
  /** Routes mounted after the built-in ones; tests use this to exercise the platform with failing or slow handlers. */
  extraRoutes?: readonly AnyRoute[];
};

const describeConnectFailure = (config: Config, error: unknown): string => {
  const text = `${(error as Error)?.message ?? ''} ${String((error as { cause?: Error })?.cause?.message ?? '')}`;
  if (/does not support SSL/i.test(text)) {
    return `Invalid configuration: DB_SSLMODE ${config.database.sslMode} requires TLS, but the database server does not accept TLS connections`;
  }
  if (/self[- ]signed|unable to verify|certificate|altnames|Hostname\/IP/i.test(text)) {
    return `Invalid configuration: DB_SSLMODE ${config.database.sslMode}: the database server certificate did not verify against DB_SSL_ROOT_CERT`;
  }
  if (/password authentication failed|no pg_hba/i.test(text)) {
    return 'Database refused the credentials (check DB_USER and the DB password)';
  }
  if (/does not exist/i.test(text) && /database/i.test(text)) return 'The configured database does not exist';
  return 'The database is unreachable (check DATABASE_URL / DB_HOST and that the server is running)';
};

/**
 * Connects, migrates and starts listening.
 * @throws {BootError} when the database is unreachable, refuses TLS or a migration fails.
 */
export const startService = async ({ config, logger, port, extraRoutes = [] }: ServiceOptions): Promise<Service> => {
  // Creating the pool already connects (slonik reads the server's type OIDs), so TLS and
  // credential failures surface here as well as on the first query.
  const rawPool = await createDatabasePool(config.database).catch((error: unknown) => {
    logger.debug({ err: error }, 'database connection failed at boot');
    throw new BootError(describeConnectFailure(config, error), { cause: error });
  });
  // Every feature gets this pool: its transactions run after-commit callbacks (the audit trails'
  // log lines are written once their rows committed, never for a rollback). Nothing else uses rawPool.
  const { pool, afterCommit } = createCommitHooks({ pool: rawPool, logger });
  try {
    await pool.query(sql.unsafe`SELECT 1`);
  } catch (error) {
    await pool.end().catch(() => undefined);
    logger.debug({ err: error }, 'database connection failed at boot');
    throw new BootError(describeConnectFailure(config, error), { cause: error });
  }
  try {
    const result = await runMigrations(config.database);
    if (result.applied.length > 0) logger.info({ applied: result.applied }, 'migrations applied');
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw new BootError(`Database migration failed: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }

  let draining = false;
  const shutdownHooks: Array<() => Promise<void> | void> = [];

  const routes: AnyRoute[] = [];
  let openApiDocument: unknown;
  routes.push(
    ...createHealthRoutes({
      pingDatabase: async () => {
        // Bounded: a frozen or partitioned database (no refusal, no answer) must still read as not ready.
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error('readiness ping timed out')), config.database.connectTimeoutMs);
        });
        try {
          await Promise.race([pool.query(sql.unsafe`SELECT 1`), timeout]);
        } finally {
          clearTimeout(timer);
        }
      },
      isDraining: () => draining,
      openApiDocument: () => (openApiDocument ??= buildOpenApiDocument(routes, { version })),
    }),
  );


  // Shared infrastructure.
  // ioredis is loaded only when Redis is configured (it was a fifteenth of the cold start otherwise).
  const redis: Redis | undefined = config.redisUrl
    ? new (await import('ioredis')).Redis(config.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2_000, lazyConnect: false })
    : undefined;
  redis?.on('error', (error) => logger.debug({ err: error }, 'redis connection error'));

  // Features.
  const audit = createSecurityAuditService({ store: createSecurityAuditStore(pool), logger, afterCommit });
  // The LISTEN/NOTIFY hub (realtime below) is created first: authentication's revocation cache listens on it.
  const hub = createNotificationHub({ database: config.database, logger });
  const revocations = createRevocationCache({ hub, pool, logger });
  const authStore = createAuthStore(pool);
  const passwords = createPasswordHasher(config.passwordHashing);
  const auth = createAuthService({
    revocations,
    pool,
    store: authStore,
    audit,
    passwords,
    tokens: createAccessTokenIssuer(config),
    config,
    logger,
  });
  const authThrottle = createRateLimiter({
    namespace: 'auth',
    max: config.authThrottle.rateLimitMax,
    windowSeconds: config.authThrottle.rateLimitWindowSeconds,
    redis,
    logger,
    onLimited: (ctx) => {
      audit
        .record(pool, requestMeta(ctx), { type: 'rate_limited', details: { path: ctx.path, limiter: 'auth' } })
        .catch((error: unknown) => logger.warn({ err: error }, 'could not record rate_limited'));
    },
  });
  const mfa = createMfaService({ pool, audit, auth, config, logger });
  // The release policy's login gate reads the release service's in-memory policy cache (the
  // service is created below, once the notification hub exists; requests come only after that).
  const releaseGate = createReleaseGate({ activePolicies: () => release.activePolicies() });
  routes.push(...createAuthRoutes({ auth, throttle: authThrottle, clientGate: [releaseGate], afterPassword: mfa.afterPassword }));
  routes.push(...createMfaRoutes({ mfa, auth, throttle: authThrottle, clientGate: [releaseGate] }));

  // Realtime: the LISTEN/NOTIFY hub (chat fan-out, session revocations; usable by other
  // features), tickets and chat, and the /ws gateway attached to the server below.
  const realtime = createRealtimeService({ pool, store: createRealtimeStore(pool), audit, hub, config, logger });
  const gateway = createRealtimeGateway({ config, logger, realtime, hub, isDraining: () => draining });
  routes.push(...createRealtimeRoutes({ auth, realtime, chat: config.chat, clientGate: [releaseGate] }));
  // One connection and a LISTEN per channel: a few milliseconds. Never fails the boot; it retries.
  await Promise.all([hub.start(), gateway.ready, revocations.start()]);
  const realtimeHousekeeping = setInterval(() => {
    realtime.sweep().catch((error: unknown) => logger.warn({ err: error }, 'realtime housekeeping failed'));
  }, 60_000).unref();
  shutdownHooks.push(async () => {
    clearInterval(realtimeHousekeeping);
    await gateway.shutdown();
    await revocations.close();
    await hub.close();
  });

  // Release policies, publish drains across instances, the ops API and the password reset
  // (contract §6, §7).
  const opsStore = createOpsStore(pool);
  const adminAudit = createAdminAuditRecorder(opsStore);
  const release = createReleaseService({
    pool,
    store: createReleaseStore(pool),
    adminAudit,
    hub,
    logger,
    afterCommit,
    target: createGatewayDrainTarget(gateway),
  });
  const opsGuard = createOpsGuard({ opsApiToken: config.secrets.opsApiToken, auth, audit, pool, logger });
  const ops = createOpsService({ pool, store: opsStore, adminAudit, audit, auth, drainCounts: release.drainCounts, mfa });
  routes.push(...createReleaseRoutes({ release, opsGuard }), ...createOpsRoutes({ ops, opsGuard }));
  const passwordReset = createPasswordResetService({
    pool,
    auth,
    store: authStore,
    passwords,
    audit,
    secondFactor: mfa.withSecondFactor,
  });
  routes.push(...createPasswordResetRoutes({ reset: passwordReset, throttle: authThrottle }));
  await release.start();
  // First of the shutdown hooks: a drain in progress closes its sockets with 4000 (update)
  // before the gateway's shutdown closes the rest with 1012 (reconnect elsewhere).
  shutdownHooks.unshift(() => release.stop());

  routes.push(...extraRoutes);

  const housekeeping = setInterval(() => {
    authThrottle.sweep();
    auth.sweepSealedSuccessors().catch((error: unknown) => logger.warn({ err: error }, 'refresh-token housekeeping failed'));
    mfa.sweepChallenges().catch((error: unknown) => logger.warn({ err: error }, 'MFA challenge housekeeping failed'));
  }, 60_000).unref();
  shutdownHooks.push(() => clearInterval(housekeeping));

  const app = createHttpApp({ config, logger, routes });
  // The ops console's static files (GET /ops/console): after the router, behind the platform middleware.
  app.use(createOpsConsole());
  // Outermost, so that it sees every response (routes answer without calling `next`): while
  // draining, ask keep-alive clients to reconnect elsewhere after this response. Without it a
  // kept-alive socket holds server.close() open until the shutdown deadline.
  app.middleware.unshift(async (ctx, next) => {
    await next();
    if (draining) ctx.set('Connection', 'close');
  });
  // headersTimeout/requestTimeout are enforced by a periodic sweep (default every 30 s), so a
  // slow-header client could hold its socket up to 40 s; sweep every second instead.
  const handleRequest = app.callback();
  const server = createServer({ connectionsCheckingInterval: 1_000 }, handleRequest);
  server.on('clientError', writeClientError);
  // An Expect other than 100-continue: Node would answer a bare 417 (no envelope, no request id,
  // no security headers); the expectation is ignored instead, as RFC 9110 allows.
  server.on('checkExpectation', handleRequest);
  gateway.attach(server);
  // Slow-header and slow-body clients must not pin sockets (slowloris).
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new BootError(error.code === 'EADDRINUSE' ? `Port ${port ?? config.http.port} is already in use (PORT)` : error.message)),
    );
    server.listen(port ?? config.http.port, config.http.host, resolve);
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}`;

  let stopping: Promise<void> | undefined;
  const shutdown = (reason: string) =>
    (stopping ??= (async () => {
      logger.info({ reason }, 'shutting down');
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      for (const hook of shutdownHooks) await hook();
      const deadline = new Promise<'timeout'>((resolve) => setTimeout(resolve, config.shutdownTimeoutMs, 'timeout').unref());
      if ((await Promise.race([closed, deadline])) === 'timeout') {
        logger.warn('shutdown timeout reached; closing remaining connections');
        server.closeAllConnections();
      }
      // A connection killed mid-query by a database restart can make the pool's close reject; the
      // stop itself must still complete (seen once in test/fault-database.test.ts under load).
      await pool.end().catch((error: unknown) => logger.warn({ err: error }, 'database pool did not close cleanly'));
      await redis?.quit().catch(() => redis.disconnect());
      logger.info('shutdown complete');
    })());

  return { server, pool, url, shutdown };
};
