/**
 * All SQL of release policies, service instances (heartbeats) and publish drains. The schema is
 * in app/db/migrations/0006_release_ops.sql.
 */
import { sql, type CommonQueryMethods, type DatabasePool } from 'slonik';
import { z } from 'zod';
import { platformSchema } from '../ops/schemas.js';

type Queryable = CommonQueryMethods;

const policyRow = z.object({
  id: z.string().uuid(),
  platform: platformSchema,
  min_supported_version: z.string(),
  latest_version: z.string(),
  force_update: z.boolean(),
  login_gate: z.boolean(),
  active: z.boolean(),
  created_at: z.string(),
  activated_at: z.string().nullable(),
  created_by: z.string(),
});
export type PolicyRow = z.infer<typeof policyRow>;

const policyColumns = sql.fragment`
  id, platform, min_supported_version, latest_version, force_update, login_gate, active, created_at, activated_at, created_by`;

const drainRow = z.object({
  id: z.string().uuid(),
  policy_id: z.string().uuid(),
  platform: platformSchema,
  version: z.string(),
  min_supported_version: z.string(),
  force_update: z.boolean(),
  grace_seconds: z.number(),
  status: z.enum(['running', 'completed', 'failed']),
  requested_by: z.string(),
  requested_at: z.string(),
  expected_instances: z.array(z.string()),
  deadline_at: z.string(),
  finished_at: z.string().nullable(),
  failure_reason: z.string().nullable(),
  /** Computed: deadline_at has passed (by the database clock). */
  overdue: z.boolean(),
});
export type DrainRow = z.infer<typeof drainRow>;

const drainColumns = sql.fragment`
  id, policy_id, platform, version, min_supported_version, force_update, grace_seconds, status, requested_by,
  requested_at, expected_instances, deadline_at, finished_at, failure_reason, deadline_at <= now() AS overdue`;

export const drainEvents = [
  'requested',
  'started',
  'instance_started',
  'instance_completed',
  'instance_failed',
  'completed',
  'failed',
] as const;
export type DrainEvent = (typeof drainEvents)[number];

const drainEventRow = z.object({
  id: z.bigint(),
  event: z.enum(drainEvents),
  instance_id: z.string().nullable(),
  notified: z.number().nullable(),
  closed: z.number().nullable(),
  skipped: z.number().nullable(),
  details: z.record(z.unknown()),
  created_at: z.string(),
});
export type DrainEventRow = z.infer<typeof drainEventRow>;

const sessionCountRow = z.object({ instance_id: z.string(), action: z.enum(['notified', 'closed', 'skipped']), n: z.number() });

const instanceStateRow = z.object({
  instance_id: z.string(),
  /** Heartbeat within the staleness window and not stopped. */
  alive: z.boolean(),
  stopped: z.boolean(),
});

export type DrainSessionRecord = {
  sessionId: string;
  userId: string;
  connectionId: string;
  platform: string | null;
  clientVersion: string | null;
  action: 'notified' | 'closed' | 'skipped';
};

export const createReleaseStore = (pool: DatabasePool) => ({
  pool,

  // ---- policies -----------------------------------------------------------------------------

  insertPolicy: (
    db: Queryable,
    policy: { platform: string; minSupportedVersion: string; latestVersion: string; forceUpdate: boolean; loginGate: boolean; createdBy: string },
  ) =>
    db.one(sql.type(policyRow)`
      INSERT INTO release_policies (platform, min_supported_version, latest_version, force_update, login_gate, created_by)
      VALUES (${policy.platform}, ${policy.minSupportedVersion}, ${policy.latestVersion}, ${policy.forceUpdate},
              ${policy.loginGate}, ${policy.createdBy})
      RETURNING ${policyColumns}`),

  findPolicy: (db: Queryable, id: string) =>
    db.maybeOne(sql.type(policyRow)`SELECT ${policyColumns} FROM release_policies WHERE id = ${id}`),

  /** Serialises policy changes of one platform until the transaction ends. */
  lockPlatform: (db: Queryable, platform: string) =>
    db.query(sql.unsafe`SELECT pg_advisory_xact_lock(730511420, hashtext(${`release_policy:${platform}`}))`),

  /**
   * Makes `id` the platform's only active policy. Call under {@link lockPlatform}: the previous
   * one is deactivated first (the partial unique index allows one active row at any moment).
   */
  activatePolicy: async (db: Queryable, id: string, platform: string) => {
    await db.query(sql.unsafe`
      UPDATE release_policies SET active = false, deactivated_at = now()
       WHERE platform = ${platform} AND active AND id <> ${id}`);
    return db.one(sql.type(policyRow)`
      UPDATE release_policies
         SET active = true, activated_at = CASE WHEN active THEN activated_at ELSE now() END, deactivated_at = NULL
       WHERE id = ${id}
      RETURNING ${policyColumns}`);
  },

  /** The active policy of every platform (at most six rows, from the partial unique index). */
  activePolicies: (db: Queryable) => db.any(sql.type(policyRow)`SELECT ${policyColumns} FROM release_policies WHERE active`),

  // ---- service instances --------------------------------------------------------------------

  heartbeat: (db: Queryable, instance: { instanceId: string; hostname: string; pid: number }) =>
    db.query(sql.unsafe`
      INSERT INTO service_instances (instance_id, hostname, pid) VALUES (${instance.instanceId}, ${instance.hostname}, ${instance.pid})
      ON CONFLICT (instance_id) DO UPDATE SET last_seen_at = now(), stopped_at = NULL`),

  markStopped: (db: Queryable, instanceId: string) =>
    db.query(sql.unsafe`UPDATE service_instances SET stopped_at = now(), last_seen_at = now() WHERE instance_id = ${instanceId}`),

  /** Instances whose heartbeat is fresher than `staleSeconds` and that did not stop. */
  liveInstances: (db: Queryable, staleSeconds: number) =>
    db.anyFirst(sql.type(z.object({ instance_id: z.string() }))`
      SELECT instance_id FROM service_instances
       WHERE stopped_at IS NULL AND last_seen_at > now() - make_interval(secs => ${staleSeconds})
       ORDER BY instance_id`),

  instanceStates: (db: Queryable, instanceIds: readonly string[], staleSeconds: number) =>
    db.any(sql.type(instanceStateRow)`
      SELECT instance_id,
             stopped_at IS NULL AND last_seen_at > now() - make_interval(secs => ${staleSeconds}) AS alive,
             stopped_at IS NOT NULL AS stopped
        FROM service_instances
       WHERE instance_id = ANY(${sql.array([...instanceIds], 'text')})`),

  /** Forgets instances gone for a day (they can no longer matter to any drain). */
  forgetOldInstances: (db: Queryable) =>
    db.query(sql.unsafe`DELETE FROM service_instances WHERE last_seen_at < now() - interval '1 day'`),

  // ---- drains -------------------------------------------------------------------------------

  insertDrain: (
    db: Queryable,
    drain: {
      policyId: string;
      platform: string;
      version: string;
      minSupportedVersion: string;
      forceUpdate: boolean;
      graceSeconds: number;
      requestedBy: string;
      expectedInstances: readonly string[];
      deadlineSeconds: number;
    },
  ) =>
    db.one(sql.type(drainRow)`
      INSERT INTO publish_drains (policy_id, platform, version, min_supported_version, force_update, grace_seconds,
                                  requested_by, expected_instances, deadline_at)
      VALUES (${drain.policyId}, ${drain.platform}, ${drain.version}, ${drain.minSupportedVersion}, ${drain.forceUpdate},
              ${drain.graceSeconds}, ${drain.requestedBy}, ${sql.array([...drain.expectedInstances], 'text')},
              now() + make_interval(secs => ${drain.deadlineSeconds}))
      RETURNING ${drainColumns}`),

  findDrain: (db: Queryable, id: string) => db.maybeOne(sql.type(drainRow)`SELECT ${drainColumns} FROM publish_drains WHERE id = ${id}`),

  /** Locks the drain row: completion and failure decisions for one drain are taken one at a time. */
  lockDrain: (db: Queryable, id: string) =>
    db.maybeOne(sql.type(drainRow)`SELECT ${drainColumns} FROM publish_drains WHERE id = ${id} FOR UPDATE`),

  /** Running drains (the partial index; a handful of rows at most). */
  runningDrains: (db: Queryable) =>
    db.any(sql.type(drainRow)`SELECT ${drainColumns} FROM publish_drains WHERE status = 'running' ORDER BY deadline_at`),

  finishDrain: (db: Queryable, id: string, outcome: { status: 'completed' } | { status: 'failed'; reason: string }) =>
    db.maybeOne(sql.type(drainRow)`
      UPDATE publish_drains
         SET status = ${outcome.status}, finished_at = now(),
             failure_reason = ${outcome.status === 'failed' ? outcome.reason : null}
       WHERE id = ${id} AND status = 'running'
      RETURNING ${drainColumns}`),

  /** Drains by status, all time (publish_drains holds one row per release: a small table). */
  drainCounts: (db: Queryable) =>
    db.any(sql.type(z.object({ status: z.enum(['running', 'completed', 'failed']), n: z.number() }))`
      SELECT status, count(*)::int AS n FROM publish_drains GROUP BY status`),

  /**
   * Appends a lifecycle event; returns false when that step was already recorded (the unique
   * index absorbs retries and races between instances).
   */
  insertDrainEvent: async (
    db: Queryable,
    event: {
      drainId: string;
      event: DrainEvent;
      instanceId: string | null;
      counts?: { notified: number; closed: number; skipped: number };
      details?: Record<string, unknown>;
    },
  ) =>
    (await db.maybeOne(sql.type(z.object({ id: z.bigint() }))`
      INSERT INTO publish_drain_events (drain_id, event, instance_id, notified, closed, skipped, details)
      VALUES (${event.drainId}, ${event.event}, ${event.instanceId}, ${event.counts?.notified ?? null},
              ${event.counts?.closed ?? null}, ${event.counts?.skipped ?? null}, ${sql.jsonb((event.details ?? {}) as never)})
      ON CONFLICT DO NOTHING
      RETURNING id`)) !== null,

  drainEventsOf: (db: Queryable, drainId: string) =>
    db.any(sql.type(drainEventRow)`
      SELECT id, event, instance_id, notified, closed, skipped, details, created_at
        FROM publish_drain_events WHERE drain_id = ${drainId} ORDER BY id`),

  /** One row per affected socket and action, in one statement. */
  insertSessionAudit: async (db: Queryable, drainId: string, instanceId: string, records: readonly DrainSessionRecord[]) => {
    if (records.length === 0) return;
    await db.query(sql.unsafe`
      INSERT INTO publish_drain_session_audit (drain_id, instance_id, session_id, user_id, connection_id, platform, client_version, action)
      SELECT ${drainId}, ${instanceId}, s, u, c, p, v, a
        FROM unnest(
          ${sql.array(records.map((r) => r.sessionId), 'uuid')},
          ${sql.array(records.map((r) => r.userId), 'uuid')},
          ${sql.array(records.map((r) => r.connectionId), 'uuid')},
          ${sql.array(records.map((r) => r.platform), 'text')},
          ${sql.array(records.map((r) => r.clientVersion), 'text')},
          ${sql.array(records.map((r) => r.action), 'text')}
        ) AS t(s, u, c, p, v, a)`);
  },

  /** Affected sockets per instance and action (the (drain_id, instance_id, action) index). */
  sessionCounts: (db: Queryable, drainId: string) =>
    db.any(sql.type(sessionCountRow)`
      SELECT instance_id, action, count(*)::int AS n
        FROM publish_drain_session_audit WHERE drain_id = ${drainId}
       GROUP BY instance_id, action`),
});

export type ReleaseStore = ReturnType<typeof createReleaseStore>;
