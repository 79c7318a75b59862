/**
 * Release policies, the login gate's policy cache, and publish drains across instances
 * (contract §6, §7).
 *
 * Policies: one active per platform; activation swaps them in one transaction under a
 * per-platform advisory lock and NOTIFYs every instance.
 *
 * Policy cache: the active policies (≤ 6 rows) are kept in memory for at most
 * {@link POLICY_CACHE_TTL_MS}, and dropped at once when a `karaxas_release_policy` notification
 * arrives (or the listener reconnects) — the gate costs at most one small query per second per
 * instance, never one per login.
 *
 * Drains — instances and completion:
 * - Every instance heartbeats into `service_instances` every {@link HEARTBEAT_INTERVAL_MS}; one
 *   whose heartbeat is older than {@link INSTANCE_STALE_SECONDS} (or that stopped) is not alive.
 * - Publishing (one transaction): a new policy, activated; a `publish_drains` row whose
 *   `expected_instances` are the live instances (and this one); the `requested` event; the admin
 *   action row; NOTIFY `karaxas_release_drain`.
 * - Each instance, on the notification — or on its sweep, for a running drain it has not run yet
 *   (a missed notification, an instance started meanwhile) — records `instance_started` (the first
 *   one also `started`), sends `release.drain` to its sockets of that platform below the minimum
 *   (a `notified` row each), closes them with 4000 after the grace (`closed`, or `skipped` when
 *   already gone), then records `instance_completed` with its counts.
 * - The drain is `completed` when every required instance — expected ∪ started — completed. An
 *   expected instance that stopped gracefully without starting is not required (its sockets were
 *   closed by its shutdown). A required instance that is not alive and did not complete makes the
 *   drain `failed` (`instance_lost`, with `instance_failed` for it): its sockets were cut without
 *   the drain message, so the operator must look (metrics count it). A drain still running at
 *   `deadline_at` (grace + {@link DRAIN_DEADLINE_MARGIN_SECONDS}) is `failed`
 *   (`deadline_exceeded`). Every instance's sweeper ({@link SWEEP_INTERVAL_MS}) evaluates running
 *   drains, so a drain never stays silently stuck.
 * - A graceful shutdown during a drain closes that instance's affected sockets with 4000 at once
 *   and completes its part before the socket shutdown (1012) runs.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import semver from 'semver';
import type { DatabasePool } from 'slonik';
import type { Queryable, RequestMeta } from '../audit/types.js';
import type { AfterCommit } from '../db/after-commit.js';
import type { NotificationHub } from '../db/notifications.js';
import { AppError } from '../http/errors.js';
import type { Logger } from '../logger.js';
import type { OpsCaller } from '../ops/guard.js';
import type { AdminAuditRecorder } from '../ops/service.js';
import type { Drain, PublicPolicyResponse, ReleasePlatform, ReleasePolicy } from '../ops/schemas.js';
import type { ReleaseDrainFrame } from '../realtime/schemas.js';
import type { DrainRow, DrainSessionRecord, PolicyRow, ReleaseStore } from './store.js';

export const POLICY_NOTIFY_CHANNEL = 'karaxas_release_policy';
export const DRAIN_NOTIFY_CHANNEL = 'karaxas_release_drain';

export const POLICY_CACHE_TTL_MS = 1_000;
export const HEARTBEAT_INTERVAL_MS = 2_000;
export const SWEEP_INTERVAL_MS = 2_000;
export const INSTANCE_STALE_SECONDS = 10;
export const DRAIN_DEADLINE_MARGIN_SECONDS = 60;
/** Close code and reason of a drained socket (contract §6). */
export const DRAIN_CLOSE_CODE = 4000;
export const DRAIN_CLOSE_REASON = 'release_drain';

/** A connected websocket as the drain sees it. */
export type DrainSocket = {
  readonly id: string;
  readonly sessionId: string;
  readonly userId: string;
  readonly platform: string | null;
  readonly version: string | null;
};

/** The `release.drain` websocket frame (wire schema: app/realtime/schemas.ts `releaseDrainFrameSchema`). */
export type DrainFrame = ReleaseDrainFrame;

/** What the drain needs from the websocket gateway (see app/realtime/drain.ts). */
export type DrainTarget = {
  /** Local sockets of `platform` whose version is below `minSupportedVersion` (or unknown). */
  select: (platform: string, minSupportedVersion: string) => DrainSocket[];
  /** Sends the frame; false when the socket is no longer open. */
  notify: (socket: DrainSocket, frame: DrainFrame) => boolean;
  /** Closes the socket; false when it was already gone. */
  close: (socket: DrainSocket, code: number, reason: string) => boolean;
};

export type ReleaseDeps = {
  pool: DatabasePool;
  store: ReleaseStore;
  adminAudit: AdminAuditRecorder;
  hub: Pick<NotificationHub, 'publish' | 'subscribe' | 'on'>;
  logger: Logger;
  /**
   * Holds back a drain's outcome line ("publish drain completed" / "publish drain failed…",
   * which the drain-failures log-based metric counts) until the transaction that decided the
   * outcome committed: when it rolls back, another evaluation decides again and logs then.
   */
  afterCommit: AfterCommit;
  /** Absent until the websocket gateway exists; then drains select nothing locally. */
  target?: DrainTarget;
  /** This process's id in service_instances (random by default). */
  instanceId?: string;
};

export type ActivePolicies = ReadonlyMap<string, PolicyRow>;

const toPolicy = (row: PolicyRow): ReleasePolicy => ({
  id: row.id,
  platform: row.platform,
  minSupportedVersion: row.min_supported_version,
  latestVersion: row.latest_version,
  forceUpdate: row.force_update,
  loginGate: row.login_gate,
  active: row.active,
  createdAt: row.created_at,
  activatedAt: row.activated_at,
  createdBy: row.created_by,
});

/** True when `version` is missing, not semver, or below `minimum`. */
export const isBelow = (version: string | null | undefined, minimum: string): boolean =>
  version === null || version === undefined || semver.valid(version) === null || semver.lt(version, minimum);

/**
 * The login gate's decision for a client:
 * - a known platform with an active gating policy: blocked when the version is missing or below
 *   its minimum;
 * - no (or an unknown) platform while ANY active policy gates logins: blocked — omitting the
 *   header must not bypass the gate;
 * - otherwise allowed.
 */
export const gateDecision = (
  policies: ActivePolicies,
  client: { platform: string | null; version: string | null },
): { blocked: false } | { blocked: true; policy: PolicyRow | undefined } => {
  if (client.platform === null) {
    for (const policy of policies.values()) if (policy.login_gate) return { blocked: true, policy: undefined };
    return { blocked: false };
  }
  const policy = policies.get(client.platform);
  if (policy?.login_gate && isBelow(client.version, policy.min_supported_version)) return { blocked: true, policy };
  return { blocked: false };
};

type LocalRun = {
  drain: DrainRow;
  notified: DrainSocket[];
  timer?: NodeJS.Timeout;
  finishing?: Promise<void>;
};

export const createReleaseService = (deps: ReleaseDeps) => {
  const { pool, store, adminAudit, hub, logger, afterCommit } = deps;
  let target = deps.target;
  const instanceId = deps.instanceId ?? `${hostname().slice(0, 40)}-${process.pid}-${randomUUID().slice(0, 8)}`;

  // ---- the policy cache ---------------------------------------------------------------------

  let cache: { at: number; policies: Map<string, PolicyRow> } | undefined;
  let generation = 0;
  let loading: Promise<Map<string, PolicyRow>> | undefined;

  const invalidate = () => {
    generation += 1;
    cache = undefined;
  };

  const loadPolicies = (): Promise<Map<string, PolicyRow>> =>
    (loading ??= (async () => {
      const started = generation;
      try {
        const rows = await store.activePolicies(pool);
        const policies = new Map(rows.map((row) => [row.platform, row]));
        // A notification that arrived during the read may describe a newer state: don't keep it.
        if (started === generation) cache = { at: Date.now(), policies };
        return policies;
      } finally {
        loading = undefined;
      }
    })());

  /** The active policies, from memory when fresh. On a read failure a stale copy is used if there is one. */
  const activePolicies = async (): Promise<ActivePolicies> => {
    if (cache && Date.now() - cache.at < POLICY_CACHE_TTL_MS) return cache.policies;
    const stale = cache;
    try {
      return await loadPolicies();
    } catch (error) {
      if (stale) {
        logger.warn({ err: error }, 'release policies could not be read; using the last known ones');
        return stale.policies;
      }
      throw error;
    }
  };

  const notifyPolicyChange = (tx: Queryable, platform: string) => hub.publish(tx, POLICY_NOTIFY_CHANNEL, JSON.stringify({ platform }));

  // ---- drains on this instance --------------------------------------------------------------

  /** Drains this process has run or is running (by id); never run twice. */
  const handled = new Set<string>();
  const runs = new Map<string, LocalRun>();
  let stopping = false;

  const frameOf = (drain: DrainRow): DrainFrame => ({
    type: 'release.drain',
    version: drain.version,
    minSupportedVersion: drain.min_supported_version,
    forceUpdate: drain.force_update,
    graceSeconds: drain.grace_seconds,
  });

  const sessionRecord = (socket: DrainSocket, action: DrainSessionRecord['action']): DrainSessionRecord => ({
    sessionId: socket.sessionId,
    userId: socket.userId,
    connectionId: socket.id,
    platform: socket.platform,
    clientVersion: socket.version?.slice(0, 64) ?? null,
    action,
  });

  /**
   * Decides a running drain's outcome (on the locked row): completed when every required instance
   * completed; failed when one of them is gone or the deadline passed; otherwise still running.
   * `tx` is the transaction of the lock; the outcome is logged once it commits.
   */
  const evaluate = async (tx: Queryable, drain: DrainRow, by: string) => {
    if (drain.status !== 'running') return drain.status;
    const events = await store.drainEventsOf(tx, drain.id);
    const started = new Set(events.filter((e) => e.event === 'instance_started').map((e) => e.instance_id!));
    const completed = events.filter((e) => e.event === 'instance_completed');
    const completedIds = new Set(completed.map((e) => e.instance_id!));
    const alreadyFailed = new Set(events.filter((e) => e.event === 'instance_failed').map((e) => e.instance_id!));
    const required = new Set([...drain.expected_instances, ...started]);
    const pending = [...required].filter((id) => !completedIds.has(id));
    const states = new Map((await store.instanceStates(tx, pending, INSTANCE_STALE_SECONDS)).map((s) => [s.instance_id, s]));

    const notRequired: string[] = [];
    const lost: string[] = [];
    for (const id of pending) {
      const state = states.get(id);
      if (state?.alive) continue;
      // Stopped gracefully before it ever started this drain: its sockets were closed by its shutdown.
      if (state?.stopped && !started.has(id)) notRequired.push(id);
      else lost.push(id);
    }
    const waiting = pending.filter((id) => !notRequired.includes(id) && !lost.includes(id));
    const totals = completed.reduce(
      (sum, e) => ({ notified: sum.notified + (e.notified ?? 0), closed: sum.closed + (e.closed ?? 0), skipped: sum.skipped + (e.skipped ?? 0) }),
      { notified: 0, closed: 0, skipped: 0 },
    );

    if (lost.length > 0 || alreadyFailed.size > 0) {
      for (const id of lost) {
        if (alreadyFailed.has(id)) continue;
        await store.insertDrainEvent(tx, {
          drainId: drain.id,
          event: 'instance_failed',
          instanceId: id,
          details: { reason: states.get(id)?.stopped ? 'instance_stopped' : 'instance_lost', startedDrain: started.has(id), detectedBy: by },
        });
      }
      const finished = await store.finishDrain(tx, drain.id, { status: 'failed', reason: 'instance_lost' });
      if (finished) {
        await store.insertDrainEvent(tx, {
          drainId: drain.id,
          event: 'failed',
          instanceId: by,
          counts: totals,
          details: { reason: 'instance_lost', lostInstances: [...new Set([...lost, ...alreadyFailed])], completedInstances: [...completedIds] },
        });
        afterCommit(tx, () => logger.warn({ drainId: drain.id, lost }, 'publish drain failed: an instance was lost'));
      }
      return 'failed';
    }
    if (waiting.length === 0) {
      const finished = await store.finishDrain(tx, drain.id, { status: 'completed' });
      if (finished) {
        await store.insertDrainEvent(tx, {
          drainId: drain.id,
          event: 'completed',
          instanceId: by,
          counts: totals,
          details: { instances: [...completedIds], notRequired },
        });
        afterCommit(tx, () => logger.info({ drainId: drain.id, ...totals }, 'publish drain completed'));
      }
      return 'completed';
    }
    if (drain.overdue) {
      const finished = await store.finishDrain(tx, drain.id, { status: 'failed', reason: 'deadline_exceeded' });
      if (finished) {
        await store.insertDrainEvent(tx, {
          drainId: drain.id,
          event: 'failed',
          instanceId: by,
          counts: totals,
          details: { reason: 'deadline_exceeded', waitingFor: waiting },
        });
        afterCommit(tx, () => logger.warn({ drainId: drain.id, waiting }, 'publish drain failed: deadline exceeded'));
      }
      return 'failed';
    }
    return 'running';
  };

  const evaluateDrain = (drainId: string) =>
    pool.transaction(async (tx) => {
      const drain = await store.lockDrain(tx, drainId);
      if (!drain) return undefined;
      return evaluate(tx, drain, instanceId);
    });

  /** Ends this instance's part: closes what is still open, records it, completes. */
  const finishLocal = (run: LocalRun, interrupted: string | undefined) =>
    (run.finishing ??= (async () => {
      if (run.timer) clearTimeout(run.timer);
      const records: DrainSessionRecord[] = [];
      let closed = 0;
      let skipped = 0;
      for (const socket of run.notified) {
        const wasOpen = target?.close(socket, DRAIN_CLOSE_CODE, DRAIN_CLOSE_REASON) ?? false;
        if (wasOpen) closed += 1;
        else skipped += 1;
        records.push(sessionRecord(socket, wasOpen ? 'closed' : 'skipped'));
      }
      try {
        await pool.transaction(async (tx) => {
          await store.insertSessionAudit(tx, run.drain.id, instanceId, records);
          await store.insertDrainEvent(tx, {
            drainId: run.drain.id,
            event: 'instance_completed',
            instanceId,
            counts: { notified: run.notified.length, closed, skipped },
            details: interrupted ? { interrupted } : {},
          });
          const drain = await store.lockDrain(tx, run.drain.id);
          if (drain) await evaluate(tx, drain, instanceId);
        });
      } catch (error) {
        logger.error({ err: error, drainId: run.drain.id }, 'could not record the end of a publish drain');
      } finally {
        runs.delete(run.drain.id);
      }
    })());

  /** Runs `drain` on this instance once: notify now, close after the grace. */
  const runLocal = async (drain: DrainRow) => {
    if (handled.has(drain.id) || stopping || drain.status !== 'running') return;
    handled.add(drain.id);
    try {
      const claimed = await pool.transaction(async (tx) => {
        const current = await store.lockDrain(tx, drain.id);
        if (!current || current.status !== 'running' || current.overdue) return undefined;
        const first = await store.insertDrainEvent(tx, {
          drainId: drain.id,
          event: 'instance_started',
          instanceId,
          details: { expected: current.expected_instances.includes(instanceId) },
        });
        if (!first) return undefined;
        await store.insertDrainEvent(tx, { drainId: drain.id, event: 'started', instanceId });
        return current;
      });
      if (!claimed) return;
      const frame = frameOf(claimed);
      const affected = target?.select(claimed.platform, claimed.min_supported_version) ?? [];
      const notified = affected.filter((socket) => target?.notify(socket, frame) ?? false);
      const run: LocalRun = { drain: claimed, notified };
      runs.set(claimed.id, run);
      await store.insertSessionAudit(pool, claimed.id, instanceId, notified.map((socket) => sessionRecord(socket, 'notified')));
      logger.info({ drainId: claimed.id, notified: notified.length, graceSeconds: claimed.grace_seconds }, 'publish drain started on this instance');
      if (stopping) {
        await finishLocal(run, 'shutdown');
        return;
      }
      run.timer = setTimeout(() => void finishLocal(run, undefined), claimed.grace_seconds * 1000);
      run.timer.unref();
    } catch (error) {
      logger.error({ err: error, drainId: drain.id }, 'publish drain could not start on this instance');
      // Let the sweeper try again.
      if (!runs.has(drain.id)) handled.delete(drain.id);
    }
  };

  /** Heartbeat, catch up on running drains, and decide the ones that are over. */
  let sweeping: Promise<void> | undefined;
  const sweep = () =>
    (sweeping ??= (async () => {
      try {
        await store.heartbeat(pool, { instanceId, hostname: hostname().slice(0, 100), pid: process.pid });
        for (const drain of await store.runningDrains(pool)) {
          if (!handled.has(drain.id) && !drain.overdue) await runLocal(drain);
          // Also while this instance runs its part: another instance may have died.
          await evaluateDrain(drain.id);
        }
      } catch (error) {
        logger.warn({ err: error }, 'release sweep failed');
      } finally {
        sweeping = undefined;
      }
    })());

  let timer: NodeJS.Timeout | undefined;
  let housekeeping: NodeJS.Timeout | undefined;
  const unsubscribers: Array<() => Promise<void> | void> = [];

  const service = {
    instanceId,

    /** Attaches the websocket gateway (when it is created after this service). */
    setTarget: (value: DrainTarget) => {
      target = value;
    },

    // ---- lifecycle ----

    /** Registers this instance, subscribes to policy and drain notifications, starts the sweeper. */
    start: async () => {
      await store.heartbeat(pool, { instanceId, hostname: hostname().slice(0, 100), pid: process.pid });
      unsubscribers.push(
        await hub.subscribe(POLICY_NOTIFY_CHANNEL, () => invalidate()),
        await hub.subscribe(DRAIN_NOTIFY_CHANNEL, (payload) => {
          let drainId: unknown;
          try {
            drainId = (JSON.parse(payload) as { drainId?: unknown }).drainId;
          } catch {
            drainId = undefined;
          }
          if (typeof drainId !== 'string' || !/^[0-9a-f-]{36}$/i.test(drainId)) {
            logger.warn('malformed drain notification ignored');
            return;
          }
          store
            .findDrain(pool, drainId)
            .then((drain) => (drain ? runLocal(drain) : undefined))
            .catch((error: unknown) => logger.warn({ err: error, drainId }, 'could not start a notified drain'));
        }),
        hub.on('reconnected', () => {
          // Notifications sent while the listener was away are lost: re-read everything.
          invalidate();
          void sweep();
        }),
      );
      timer = setInterval(() => void sweep(), Math.min(HEARTBEAT_INTERVAL_MS, SWEEP_INTERVAL_MS));
      timer.unref();
      housekeeping = setInterval(() => {
        store.forgetOldInstances(pool).catch((error: unknown) => logger.debug({ err: error }, 'instance housekeeping failed'));
      }, 3_600_000);
      housekeeping.unref();
      void sweep();
    },

    /**
     * Graceful stop: this instance's running drains end now (affected sockets closed with 4000),
     * then the instance is marked stopped. Call before the websocket gateway shuts down.
     */
    stop: async () => {
      if (stopping) return;
      stopping = true;
      if (timer) clearInterval(timer);
      if (housekeeping) clearInterval(housekeeping);
      await sweeping;
      await Promise.all([...runs.values()].map((run) => finishLocal(run, 'shutdown')));
      for (const unsubscribe of unsubscribers.splice(0)) await Promise.resolve(unsubscribe()).catch(() => undefined);
      await store.markStopped(pool, instanceId).catch((error: unknown) => logger.warn({ err: error }, 'could not mark the instance stopped'));
    },

    /** One sweep now (tests; normally every {@link SWEEP_INTERVAL_MS}). */
    sweep,

    // ---- policies ----

    activePolicies,
    invalidatePolicies: invalidate,

    /** `GET /release/policy` (public). */
    publicPolicy: async (platform: ReleasePlatform, version: string | undefined): Promise<PublicPolicyResponse> => {
      const policy = (await activePolicies()).get(platform);
      if (!policy) return { policy: null, updateRequired: false };
      const clean = version === undefined ? null : semver.valid(version.trim());
      return {
        policy: {
          platform: policy.platform,
          minSupportedVersion: policy.min_supported_version,
          latestVersion: policy.latest_version,
          forceUpdate: policy.force_update,
          loginGate: policy.login_gate,
        },
        updateRequired: isBelow(clean, policy.min_supported_version),
      };
    },

    createPolicy: (
      caller: OpsCaller,
      meta: RequestMeta,
      input: { platform: ReleasePlatform; minSupportedVersion: string; latestVersion: string; forceUpdate: boolean; loginGate: boolean },
    ) =>
      pool.transaction(async (tx) => {
        const row = await store.insertPolicy(tx, { ...input, createdBy: caller.actor });
        await adminAudit.record(tx, caller, meta, {
          action: 'release.policy.create',
          target: row.id,
          details: { platform: row.platform, minSupportedVersion: row.min_supported_version, latestVersion: row.latest_version, forceUpdate: row.force_update, loginGate: row.login_gate },
        });
        return toPolicy(row);
      }),

    /** @throws {AppError} not_found */
    activatePolicy: async (caller: OpsCaller, meta: RequestMeta, id: string) => {
      const policy = await pool.transaction(async (tx) => {
        const found = await store.findPolicy(tx, id);
        if (!found) throw new AppError('not_found');
        await store.lockPlatform(tx, found.platform);
        const previous = (await store.activePolicies(tx)).find((row) => row.platform === found.platform);
        const row = await store.activatePolicy(tx, id, found.platform);
        await notifyPolicyChange(tx, row.platform);
        await adminAudit.record(tx, caller, meta, {
          action: 'release.policy.activate',
          target: row.id,
          details: { platform: row.platform, previousPolicyId: previous?.id ?? null, alreadyActive: previous?.id === row.id },
        });
        return toPolicy(row);
      });
      invalidate();
      return policy;
    },

    /** Records the release, activates its policy and starts the drain everywhere. */
    publish: async (
      caller: OpsCaller,
      meta: RequestMeta,
      input: { platform: ReleasePlatform; version: string; minSupportedVersion: string; forceUpdate: boolean; graceSeconds: number; loginGate?: boolean },
    ) => {
      const result = await pool.transaction(async (tx) => {
        await store.lockPlatform(tx, input.platform);
        const previous = (await store.activePolicies(tx)).find((row) => row.platform === input.platform);
        const created = await store.insertPolicy(tx, {
          platform: input.platform,
          minSupportedVersion: input.minSupportedVersion,
          latestVersion: input.version,
          forceUpdate: input.forceUpdate,
          loginGate: input.loginGate ?? input.forceUpdate,
          createdBy: caller.actor,
        });
        const policy = await store.activatePolicy(tx, created.id, input.platform);
        const live = await store.liveInstances(tx, INSTANCE_STALE_SECONDS);
        const expected = [...new Set([...live, instanceId])].sort();
        const drain = await store.insertDrain(tx, {
          policyId: policy.id,
          platform: input.platform,
          version: input.version,
          minSupportedVersion: input.minSupportedVersion,
          forceUpdate: input.forceUpdate,
          graceSeconds: input.graceSeconds,
          requestedBy: caller.actor,
          expectedInstances: expected,
          deadlineSeconds: input.graceSeconds + DRAIN_DEADLINE_MARGIN_SECONDS,
        });
        await store.insertDrainEvent(tx, {
          drainId: drain.id,
          event: 'requested',
          instanceId: null,
          details: {
            version: input.version,
            minSupportedVersion: input.minSupportedVersion,
            forceUpdate: input.forceUpdate,
            graceSeconds: input.graceSeconds,
            policyId: policy.id,
            requestedBy: caller.actor,
            requestId: meta.requestId,
            expectedInstances: expected,
          },
        });
        await notifyPolicyChange(tx, input.platform);
        await hub.publish(tx, DRAIN_NOTIFY_CHANNEL, JSON.stringify({ drainId: drain.id }));
        await adminAudit.record(tx, caller, meta, {
          action: 'release.publish',
          target: drain.id,
          details: {
            platform: input.platform,
            version: input.version,
            minSupportedVersion: input.minSupportedVersion,
            forceUpdate: input.forceUpdate,
            loginGate: policy.login_gate,
            graceSeconds: input.graceSeconds,
            policyId: policy.id,
            previousPolicyId: previous?.id ?? null,
            expectedInstances: expected,
          },
        });
        return { drainId: drain.id, policyId: policy.id };
      });
      invalidate();
      return result;
    },

    /** @throws {AppError} not_found */
    drainStatus: async (id: string): Promise<Drain> => {
      const drain = await store.findDrain(pool, id);
      if (!drain) throw new AppError('not_found');
      const [events, sessionCounts] = await Promise.all([store.drainEventsOf(pool, id), store.sessionCounts(pool, id)]);
      type Instance = Drain['instances'][number];
      const instances = new Map<string, Instance>();
      const count = (instance: string, action: 'notified' | 'closed' | 'skipped') =>
        sessionCounts.find((row) => row.instance_id === instance && row.action === action)?.n ?? 0;
      for (const event of events) {
        if (event.instance_id === null) continue;
        if (event.event === 'instance_started') {
          instances.set(event.instance_id, {
            instanceId: event.instance_id,
            status: 'running',
            notified: count(event.instance_id, 'notified'),
            closed: count(event.instance_id, 'closed'),
            skipped: count(event.instance_id, 'skipped'),
            startedAt: event.created_at,
            completedAt: null,
          });
        }
        const instance = instances.get(event.instance_id);
        if (!instance) continue;
        if (event.event === 'instance_completed') {
          instance.status = 'completed';
          instance.completedAt = event.created_at;
          instance.notified = event.notified ?? instance.notified;
          instance.closed = event.closed ?? instance.closed;
          instance.skipped = event.skipped ?? instance.skipped;
        } else if (event.event === 'instance_failed' && instance.status !== 'completed') {
          instance.status = 'failed';
        }
      }
      const list = [...instances.values()];
      const sum = (action: 'notified' | 'closed' | 'skipped') => sessionCounts.filter((row) => row.action === action).reduce((n, row) => n + row.n, 0);
      return {
        id: drain.id,
        policyId: drain.policy_id,
        platform: drain.platform,
        version: drain.version,
        minSupportedVersion: drain.min_supported_version,
        forceUpdate: drain.force_update,
        graceSeconds: drain.grace_seconds,
        status: drain.status,
        requestedBy: drain.requested_by,
        requestedAt: drain.requested_at,
        deadlineAt: drain.deadline_at,
        finishedAt: drain.finished_at,
        failureReason: drain.failure_reason,
        counts: {
          instances: list.length,
          instancesCompleted: list.filter((i) => i.status === 'completed').length,
          instancesFailed: events.filter((e) => e.event === 'instance_failed').length,
          notified: sum('notified'),
          closed: sum('closed'),
          skipped: sum('skipped'),
        },
        instances: list,
      };
    },

    /** All-time drains by outcome (`started` counts every drain, running ones included). */
    drainCounts: async () => {
      const rows = await store.drainCounts(pool);
      const of = (status: 'running' | 'completed' | 'failed') => rows.find((row) => row.status === status)?.n ?? 0;
      return { started: of('running') + of('completed') + of('failed'), completed: of('completed'), failed: of('failed') };
    },
  };
  return service;
};

export type ReleaseService = ReturnType<typeof createReleaseService>;
