/**
 * Wire schemas of the ops API (contract §7) and the public release-policy read (contract §6).
 *
 * Shared by the server routes, the OpenAPI document and the `karaxas-ops` CLI's typed client, so
 * this module imports nothing server-only: zod, semver and other pure schema modules only.
 * Keep these stable: the CLI is built on them.
 *
 * Conventions: timestamps are ISO-8601 UTC strings; ids are UUIDs; list endpoints answer
 * `{items, nextCursor}` newest first, `nextCursor` being null on the last page and opaque
 * otherwise (pass it back as `cursor`).
 */
import semver from 'semver';
import { z } from 'zod';
import { securityEventTypes } from '../audit/types.js';
import { userSchema } from '../auth/schemas.js';
import { DEFAULT_RESEAL_BATCH_SIZE, MAX_RESEAL_BATCH_SIZE } from '../mfa/schemas.js';

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** Client platforms of `X-Client-Platform` (contract §1). Kept equal to app/http/request-meta.ts. */
export const releasePlatforms = ['ios', 'android', 'windows', 'macos', 'linux', 'web'] as const;
export const platformSchema = z.enum(releasePlatforms);
export type ReleasePlatform = z.infer<typeof platformSchema>;

/** A semver version (`1.2.3`, `1.2.3-beta.1`); stored and returned in its clean form. */
export const versionSchema = z
  .string()
  .trim()
  .max(64, 'must be at most 64 characters')
  .refine((value) => semver.valid(value) !== null, 'must be a semver version (e.g. 1.4.0)')
  .transform((value) => semver.clean(value) ?? value);

/** At most this many items per page; the default page is {@link DEFAULT_PAGE_LIMIT}. */
export const MAX_PAGE_LIMIT = 500;
export const DEFAULT_PAGE_LIMIT = 50;
/** The longest grace a publish may ask for. */
export const MAX_GRACE_SECONDS = 3_600;

const isoTimestamp = z.string().datetime({ offset: true });
const limitSchema = z.coerce
  .number()
  .int('must be an integer')
  .min(1, 'must be at least 1')
  .max(MAX_PAGE_LIMIT, `must be at most ${MAX_PAGE_LIMIT}`)
  .default(DEFAULT_PAGE_LIMIT);
const cursorSchema = z.string().min(1).max(512);
const uuidSchema = z.string().uuid();

/** The id path parameter of `/ops/release/policies/:id/activate`, `/ops/release/drains/:id`, `/ops/users/:id/...`. */
export const idParamsSchema = z.object({ id: uuidSchema });

// ---------------------------------------------------------------------------------------------
// Release policies

/** A policy as the ops API shows it. */
export const releasePolicySchema = z.object({
  id: uuidSchema,
  platform: platformSchema,
  minSupportedVersion: z.string(),
  latestVersion: z.string(),
  forceUpdate: z.boolean(),
  loginGate: z.boolean(),
  active: z.boolean(),
  createdAt: isoTimestamp,
  activatedAt: isoTimestamp.nullable(),
  /** `ops-token` or the admin user id that created it. */
  createdBy: z.string(),
});
export type ReleasePolicy = z.infer<typeof releasePolicySchema>;

/** `POST /ops/release/policies` body. minSupportedVersion must not exceed latestVersion. */
export const createPolicyBodySchema = z
  .object({
    platform: platformSchema,
    minSupportedVersion: versionSchema,
    latestVersion: versionSchema,
    forceUpdate: z.boolean(),
    loginGate: z.boolean(),
  })
  .strict()
  .refine((body) => semver.lte(body.minSupportedVersion, body.latestVersion), {
    message: 'must not be greater than latestVersion',
    path: ['minSupportedVersion'],
  });
export type CreatePolicyBody = z.input<typeof createPolicyBodySchema>;

/** `POST /ops/release/policies` → 201; the policy is inactive until activated. */
export const createPolicyResponseSchema = z.object({ policy: releasePolicySchema });
/** `POST /ops/release/policies/:id/activate` → 200; the platform's previous active policy is deactivated in the same transaction. */
export const activatePolicyResponseSchema = z.object({ policy: releasePolicySchema });

/** `GET /release/policy?platform=&version=` (public, contract §6). */
export const publicPolicyQuerySchema = z
  .object({
    platform: platformSchema,
    /** The client's version; absent or invalid counts as "too old" when computing updateRequired. */
    version: z.string().max(64).optional(),
  })
  .strict();
export const publicPolicySchema = z.object({
  platform: platformSchema,
  minSupportedVersion: z.string(),
  latestVersion: z.string(),
  forceUpdate: z.boolean(),
  loginGate: z.boolean(),
});
export const publicPolicyResponseSchema = z.object({
  policy: publicPolicySchema.nullable(),
  /** True when there is an active policy and the version is missing, invalid or below minSupportedVersion. */
  updateRequired: z.boolean(),
});
export type PublicPolicyResponse = z.infer<typeof publicPolicyResponseSchema>;

// ---------------------------------------------------------------------------------------------
// Publish and drains

/**
 * `POST /ops/release/publish` body. Creates and activates the platform's policy
 * `{minSupportedVersion, latestVersion: version, forceUpdate, loginGate}` (loginGate defaults to
 * forceUpdate) and drains every connected socket of that platform below minSupportedVersion.
 */
export const publishBodySchema = z
  .object({
    platform: platformSchema,
    version: versionSchema,
    minSupportedVersion: versionSchema,
    forceUpdate: z.boolean(),
    graceSeconds: z.number().int().min(0).max(MAX_GRACE_SECONDS),
    loginGate: z.boolean().optional(),
  })
  .strict()
  .refine((body) => semver.lte(body.minSupportedVersion, body.version), {
    message: 'must not be greater than version',
    path: ['minSupportedVersion'],
  });
export type PublishBody = z.input<typeof publishBodySchema>;

/** `POST /ops/release/publish` → 202. */
export const publishResponseSchema = z.object({ drainId: uuidSchema, policyId: uuidSchema });
export type PublishResponse = z.infer<typeof publishResponseSchema>;

export const drainStatuses = ['running', 'completed', 'failed'] as const;
export const drainStatusSchema = z.enum(drainStatuses);
export type DrainStatus = z.infer<typeof drainStatusSchema>;

export const drainCountsSchema = z.object({
  /** Instances that started the drain. */
  instances: z.number().int(),
  instancesCompleted: z.number().int(),
  instancesFailed: z.number().int(),
  /** Sockets told about the release (`release.drain` sent). */
  notified: z.number().int(),
  /** Sockets closed with 4000 after the grace period. */
  closed: z.number().int(),
  /** Affected sockets that were already gone when their grace ended. */
  skipped: z.number().int(),
});

export const drainInstanceSchema = z.object({
  instanceId: z.string(),
  status: z.enum(['running', 'completed', 'failed']),
  notified: z.number().int(),
  closed: z.number().int(),
  skipped: z.number().int(),
  startedAt: isoTimestamp,
  completedAt: isoTimestamp.nullable(),
});

export const drainSchema = z.object({
  id: uuidSchema,
  policyId: uuidSchema,
  platform: platformSchema,
  version: z.string(),
  minSupportedVersion: z.string(),
  forceUpdate: z.boolean(),
  graceSeconds: z.number().int(),
  status: drainStatusSchema,
  requestedBy: z.string(),
  requestedAt: isoTimestamp,
  /** After this instant a drain still running is finalised by any instance's sweeper. */
  deadlineAt: isoTimestamp,
  finishedAt: isoTimestamp.nullable(),
  /** Why it failed (e.g. `instance_lost`), null otherwise. */
  failureReason: z.string().nullable(),
  counts: drainCountsSchema,
  instances: z.array(drainInstanceSchema),
});
export type Drain = z.infer<typeof drainSchema>;

/** `GET /ops/release/drains/:id` → 200. */
export const drainResponseSchema = z.object({ drain: drainSchema });

// ---------------------------------------------------------------------------------------------
// Audit queries

/** `GET /ops/release/admin-audit` query (since inclusive, until exclusive). */
export const adminAuditQuerySchema = z
  .object({
    action: z.string().min(1).max(100).optional(),
    actor: z.string().min(1).max(100).optional(),
    since: isoTimestamp.optional(),
    until: isoTimestamp.optional(),
    limit: limitSchema,
    cursor: cursorSchema.optional(),
  })
  .strict();
export type AdminAuditQuery = z.input<typeof adminAuditQuerySchema>;

export const adminAuditItemSchema = z.object({
  id: uuidSchema,
  /** `ops-token` or the admin's user id. */
  actor: z.string(),
  action: z.string(),
  target: z.string().nullable(),
  details: z.record(z.unknown()),
  requestId: z.string().nullable(),
  ip: z.string().nullable(),
  createdAt: isoTimestamp,
});
export type AdminAuditItem = z.infer<typeof adminAuditItemSchema>;
export const adminAuditPageSchema = z.object({ items: z.array(adminAuditItemSchema), nextCursor: z.string().nullable() });

/** `GET /ops/release/security-audit` query (since inclusive, until exclusive). */
export const securityAuditQuerySchema = z
  .object({
    event_type: z.enum(securityEventTypes).optional(),
    user_id: uuidSchema.optional(),
    since: isoTimestamp.optional(),
    until: isoTimestamp.optional(),
    limit: limitSchema,
    cursor: cursorSchema.optional(),
  })
  .strict();
export type SecurityAuditQueryParams = z.input<typeof securityAuditQuerySchema>;

export const securityEventItemSchema = z.object({
  id: uuidSchema,
  eventType: z.enum(securityEventTypes),
  userId: z.string().nullable(),
  sessionId: z.string().nullable(),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  requestId: z.string().nullable(),
  details: z.record(z.unknown()),
  createdAt: isoTimestamp,
});
export type SecurityEventItem = z.infer<typeof securityEventItemSchema>;
export const securityAuditPageSchema = z.object({ items: z.array(securityEventItemSchema), nextCursor: z.string().nullable() });

/** `GET /ops/release/security-audit/verify` → 200 (also when the chain is broken: `ok: false`). */
export const verifyResponseSchema = z.object({ ok: z.boolean(), checked: z.number().int(), firstBrokenId: z.string().nullable() });

// ---------------------------------------------------------------------------------------------
// Metrics

const windowCountsSchema = z.object({ last1h: z.number().int(), last24h: z.number().int(), total: z.number().int() });

/**
 * `GET /ops/release/metrics` → 200. `securityEvents` has every known event type (zeros included).
 * `drains`: all-time drains by outcome — `started` counts every drain ever started (running ones
 * included), so `started - completed - failed` are running now.
 */
export const metricsResponseSchema = z.object({
  generatedAt: isoTimestamp,
  securityEvents: z.record(z.enum(securityEventTypes), windowCountsSchema),
  auth: z.object({
    loginFailures1h: z.number().int(),
    lockouts1h: z.number().int(),
    rateLimited1h: z.number().int(),
  }),
  drains: z.object({ started: z.number().int(), completed: z.number().int(), failed: z.number().int() }),
  sessions: z.object({ active: z.number().int() }),
});
export type OpsMetrics = z.infer<typeof metricsResponseSchema>;

// ---------------------------------------------------------------------------------------------
// Incident actions

const reasonSchema = z.string().trim().min(1, 'must not be empty').max(500, 'must be at most 500 characters');

/** `POST /ops/sessions/revoke`: one user's sessions, or every session (`all: true`). */
export const revokeSessionsBodySchema = z.union([
  z.object({ userId: uuidSchema, reason: reasonSchema }).strict(),
  z.object({ all: z.literal(true), reason: reasonSchema }).strict(),
]);
export type RevokeSessionsBody = z.input<typeof revokeSessionsBodySchema>;
export const revokeSessionsResponseSchema = z.object({ revoked: z.number().int() });

/** `POST /ops/users/:id/role`. Changing the role revokes the user's sessions (the new role applies at the next sign-in). */
export const roleBodySchema = z.object({ role: z.enum(['player', 'admin']) }).strict();
export const roleResponseSchema = z.object({ user: userSchema, revoked: z.number().int() });

/** `POST /ops/users/:id/force-password-reset` (no body). */
export const forcePasswordResetResponseSchema = z.object({ user: userSchema, revoked: z.number().int() });

// ---------------------------------------------------------------------------------------------
// TOTP key rotation

/** A sealing key id: the 8-byte fingerprint of app/crypto/seal.ts in hex (names a key, reveals nothing of it). */
const keyIdSchema = z.string().regex(/^[0-9a-f]{16}$/);

/** `GET /ops/mfa/keys`: where the TOTP secrets are sealed. pendingReseal 0 means the previous key can be dropped. */
export const mfaKeysResponseSchema = z.object({
  currentKeyId: keyIdSchema,
  total: z.number().int().nonnegative(),
  underCurrentKey: z.number().int().nonnegative(),
  pendingReseal: z.number().int().nonnegative(),
  byKey: z.array(z.object({ keyId: keyIdSchema, count: z.number().int().nonnegative(), current: z.boolean() })),
});
export type MfaKeys = z.infer<typeof mfaKeysResponseSchema>;

/** `POST /ops/mfa/reseal` body (optional). */
export const mfaResealBodySchema = z
  .object({
    batchSize: z
      .number()
      .int('must be an integer')
      .min(1, 'must be at least 1')
      .max(MAX_RESEAL_BATCH_SIZE, `must be at most ${MAX_RESEAL_BATCH_SIZE}`)
      .default(DEFAULT_RESEAL_BATCH_SIZE),
  })
  .strict()
  .default({});
export type MfaResealBody = z.input<typeof mfaResealBodySchema>;

/**
 * `POST /ops/mfa/reseal` → 200. One call re-seals batches for a few seconds at most; repeat
 * while pendingReseal drops. unreadable: secrets no configured key opens (left untouched).
 */
export const mfaResealResponseSchema = z.object({
  resealed: z.number().int().nonnegative(),
  pendingReseal: z.number().int().nonnegative(),
  unreadable: z.number().int().nonnegative(),
  batches: z.number().int().nonnegative(),
  currentKeyId: keyIdSchema,
});
export type MfaReseal = z.infer<typeof mfaResealResponseSchema>;

// ---------------------------------------------------------------------------------------------
// The route table, for typed clients

type Route = {
  method: 'GET' | 'POST';
  path: string;
  query?: z.ZodTypeAny;
  body?: z.ZodTypeAny;
  status: number;
  response: z.ZodTypeAny;
};

/** Every ops route (and the public policy read) with its success status and schemas. `:id` is a path parameter. */
export const opsRoutes = {
  releasePolicy: { method: 'GET', path: '/release/policy', query: publicPolicyQuerySchema, status: 200, response: publicPolicyResponseSchema },
  metrics: { method: 'GET', path: '/ops/release/metrics', status: 200, response: metricsResponseSchema },
  adminAudit: { method: 'GET', path: '/ops/release/admin-audit', query: adminAuditQuerySchema, status: 200, response: adminAuditPageSchema },
  securityAudit: {
    method: 'GET',
    path: '/ops/release/security-audit',
    query: securityAuditQuerySchema,
    status: 200,
    response: securityAuditPageSchema,
  },
  verifySecurityAudit: { method: 'GET', path: '/ops/release/security-audit/verify', status: 200, response: verifyResponseSchema },
  createPolicy: { method: 'POST', path: '/ops/release/policies', body: createPolicyBodySchema, status: 201, response: createPolicyResponseSchema },
  activatePolicy: { method: 'POST', path: '/ops/release/policies/:id/activate', status: 200, response: activatePolicyResponseSchema },
  publish: { method: 'POST', path: '/ops/release/publish', body: publishBodySchema, status: 202, response: publishResponseSchema },
  drain: { method: 'GET', path: '/ops/release/drains/:id', status: 200, response: drainResponseSchema },
  revokeSessions: { method: 'POST', path: '/ops/sessions/revoke', body: revokeSessionsBodySchema, status: 200, response: revokeSessionsResponseSchema },
  setRole: { method: 'POST', path: '/ops/users/:id/role', body: roleBodySchema, status: 200, response: roleResponseSchema },
  forcePasswordReset: {
    method: 'POST',
    path: '/ops/users/:id/force-password-reset',
    status: 200,
    response: forcePasswordResetResponseSchema,
  },
  mfaKeys: { method: 'GET', path: '/ops/mfa/keys', status: 200, response: mfaKeysResponseSchema },
  mfaReseal: { method: 'POST', path: '/ops/mfa/reseal', body: mfaResealBodySchema, status: 200, response: mfaResealResponseSchema },
} as const satisfies Record<string, Route>;

/** `admin_action_audit.action` values written by the ops API (the archive command adds its own). */
export const adminActions = [
  'release.policy.create',
  'release.policy.activate',
  'release.publish',
  'sessions.revoke',
  'sessions.revoke_all',
  'user.role',
  'user.force_password_reset',
  'mfa.reseal',
] as const;
export type AdminAction = (typeof adminActions)[number];

/** The actor recorded for calls authenticated with OPS_API_TOKEN. */
export const OPS_TOKEN_ACTOR = 'ops-token';
