/**
 * The one typed, validated view of the stack configuration.
 *
 * Every value the program uses comes from here. Each top-level field is one
 * Pulumi config key in the `karaxas-backend` namespace (`gcp:project` and
 * `gcp:region` come from the provider namespace). A bad or missing value stops
 * the program with one line naming the key, e.g.
 * `karaxas-backend:database.tier: Required`.
 */
import * as pulumi from '@pulumi/pulumi';
import { z } from 'zod';
import { tunableRefinements, tunableSchemas, type TunableName } from '../app/config/tunables.js';

export const CONFIG_NAMESPACE = 'karaxas-backend';

/** Logical names of the runtime secrets the app reads through `*_SECRET_REF`. */
export const SECRET_KEYS = ['jwtSecret', 'opsApiToken', 'dbPassword', 'totpEncryptionKey'] as const;
export type SecretKey = (typeof SECRET_KEYS)[number];

/** OWASP CRS rule sets (Cloud Armor preconfigured WAF rules) we always enable. */
export const WAF_RULE_SETS = [
  'sqli',
  'xss',
  'lfi',
  'rfi',
  'rce',
  'scannerdetection',
  'protocolattack',
  'sessionfixation',
  'methodenforcement',
  'nodejs',
] as const;
export type WafRuleSet = (typeof WAF_RULE_SETS)[number];

/** Cloud Armor accepts only these rate-limit intervals (seconds). */
export const ARMOR_INTERVALS = [10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600] as const;

const intervalSec = z
  .number()
  .int()
  .refine((v) => (ARMOR_INTERVALS as readonly number[]).includes(v), {
    message: `must be one of ${ARMOR_INTERVALS.join(', ')}`,
  });

const hostname = z
  .string()
  .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, 'must be a lower-case DNS name');

const cidr = z
  .string()
  .regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d|[12]\d|3[0-2])$/, 'must be an IPv4 CIDR range');

/** An IPv4 or IPv6 range in CIDR notation (a single address is `/32` or `/128`). */
const sourceRange = z.string().refine(isSourceRange, { message: 'must be an IPv4 or IPv6 range in CIDR notation, e.g. 198.51.100.0/24' });

/** Whether `value` is an IPv4 `/0-32` or IPv6 `/0-128` CIDR range. */
export function isSourceRange(value: string): boolean {
  const slash = value.indexOf('/');
  if (slash < 0) return false;
  const addr = value.slice(0, slash);
  const bits = value.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits)) return false;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(addr);
  if (v4) return v4.slice(1).every((o) => Number(o) <= 255) && Number(bits) <= 32;
  if (!/^[0-9a-f:]+$/i.test(addr) || !addr.includes(':') || (addr.match(/::/g) ?? []).length > 1) return false;
  const groups = addr.split(':').filter((g) => g !== '');
  if (groups.some((g) => g.length > 4)) return false;
  return (addr.includes('::') ? groups.length < 8 : groups.length === 8) && Number(bits) <= 128;
}

const numericId = z.string().regex(/^\d+$/, 'must be the numeric GitHub id (as a string), not a name');

const serviceSchema = z
  .object({
    /** Minimum Cloud Run instances (0 allows scale to zero). */
    minInstances: z.number().int().min(0).max(100).default(0),
    /** Maximum Cloud Run instances. */
    maxInstances: z.number().int().min(1).max(1000).default(10),
    /** Concurrent requests (including open websockets) per instance. */
    concurrency: z.number().int().min(1).max(1000).default(80),
    cpu: z.enum(['1', '2', '4', '8']).default('1'),
    memory: z.string().regex(/^\d+(Mi|Gi)$/, 'must look like 512Mi or 2Gi').default('512Mi'),
    /** Request timeout; also the upper bound of one websocket connection. */
    requestTimeoutSeconds: z.number().int().min(60).max(3600).default(3600),
    /** Keep CPU allocated outside requests (drain timers, fan-out listeners). */
    alwaysOnCpu: z.boolean().default(true),
    /** TRUSTED_PROXY_HOPS (contract §9): the external ALB appends the client IP and its own. */
    trustedProxyHops: z.number().int().min(1).max(5).default(2),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    /** `defaultUriDisabled` is a Cloud Run preview feature, which needs launch stage BETA. */
    launchStage: z.enum(['GA', 'BETA']).default('BETA'),
    /** Terraform-level deletion protection of the Cloud Run service (defaults to on in prod). */
    deletionProtection: z.boolean().optional(),
    /**
     * Service accounts (e.g. the prod project's Cloud Run service agent) that may pull images
     * from this stack's Artifact Registry repository, to promote one digest across stacks.
     */
    registryReaders: z
      .array(z.string().regex(/^serviceAccount:[a-z0-9-]+@[a-z0-9.-]+\.iam\.gserviceaccount\.com$/, 'must be serviceAccount:<email>'))
      .default([]),
  })
  .strict()
  .refine((s) => s.minInstances <= s.maxInstances, {
    message: 'minInstances must not exceed maxInstances',
    path: ['minInstances'],
  });

const networkSchema = z
  .object({
    /** Subnet used by Cloud Run Direct VPC egress (at least a /26). */
    subnetCidr: cidr.default('10.10.0.0/24'),
    /** Prefix length of the range reserved for private services access (Cloud SQL). */
    privateServicesPrefixLength: z.number().int().min(16).max(24).default(20),
    /** VPC flow logs on the subnet. */
    flowLogs: z.boolean().default(true),
  })
  .strict();

const databaseSchema = z
  .object({
    /** PostgreSQL major version: 17 or newer. */
    version: z
      .string()
      .regex(/^POSTGRES_\d+$/, 'must look like POSTGRES_17')
      .refine((v) => Number(v.slice('POSTGRES_'.length)) >= 17, { message: 'must be POSTGRES_17 or newer' })
      .default('POSTGRES_17'),
    tier: z.string().regex(/^db-[a-z0-9-]+$/, 'must be a Cloud SQL tier such as db-custom-2-7680'),
    edition: z.enum(['ENTERPRISE', 'ENTERPRISE_PLUS']).default('ENTERPRISE'),
    availabilityType: z.enum(['ZONAL', 'REGIONAL']).default('ZONAL'),
    diskSizeGb: z.number().int().min(10).max(65536).default(20),
    /** Require client certificates (`TRUSTED_CLIENT_CERTIFICATE_REQUIRED`) instead of `ENCRYPTED_ONLY`. */
    requireClientCertificates: z.boolean().default(false),
    /** DB_SSLMODE the app uses: `require`, or `verify-ca` with the instance's server CA. */
    clientSslMode: z.enum(['require', 'verify-ca']).default('require'),
    backupStartTime: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be HH:MM (UTC)').default('02:00'),
    retainedBackups: z.number().int().min(7).max(365).default(14),
    transactionLogRetentionDays: z.number().int().min(1).max(35).default(7),
    /** Both Terraform-level and API-level deletion protection. Must stay on in prod. */
    deletionProtection: z.boolean().default(true),
    databaseName: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/).default('karaxas'),
    userName: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/).default('karaxas_app'),
    maintenanceDay: z.number().int().min(1).max(7).default(7),
    maintenanceHour: z.number().int().min(0).max(23).default(3),
  })
  .strict();

/** At most this many deny-listed ranges (40 Armor rules of 10). */
export const MAX_DENY_RANGES = 400;
/** At most this many path throttles (one Armor rule each). */
export const MAX_PATH_THROTTLES = 50;

/** One per-path throttle override (`armor.pathThrottles[]`). */
const pathThrottleSchema = z
  .object({
    /** Path (or path prefix) the throttle counts, e.g. `/auth/login`. Letters, digits and `/._~-` only. */
    path: z.string().regex(/^\/[A-Za-z0-9._~/-]{0,200}$/, 'must be a path such as /auth/login (letters, digits, / . _ ~ -)'),
    /** `prefix` (default): every path starting with `path`; `exact`: only `path`. */
    match: z.enum(['prefix', 'exact']).default('prefix'),
    /** Only requests with this method (default: every method). */
    method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']).optional(),
    /** Requests per client IP per `intervalSec`. */
    count: z.number().int().min(1).max(100000),
    intervalSec,
    /** Ban the IP for this long once over the limit (rate_based_ban) instead of throttling (429 per request). */
    banDurationSec: z.number().int().min(60).max(86400).optional(),
  })
  .strict();

const armorSchema = z
  .object({
    /** Name of the Cloud Armor policy (the seed runbook's name is the default). */
    policyName: z
      .string()
      .regex(/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/)
      .default('karaxas-backend-policy'),
    /** Preconfigured WAF rule version suffix. */
    crsVersion: z.enum(['v33-stable', 'v422-stable']).default('v33-stable'),
    /** OWASP CRS sensitivity (paranoia level) for every rule set. */
    wafSensitivity: z.number().int().min(1).max(4).default(1),
    /** Per-rule-set sensitivity overrides, e.g. `{ nodejs: 2 }`. */
    wafSensitivityOverrides: z.record(z.enum(WAF_RULE_SETS), z.number().int().min(1).max(4)).default({}),
    jsonParsing: z.enum(['STANDARD', 'STANDARD_WITH_GRAPHQL']).default('STANDARD'),
    /** VERBOSE Armor logging (which signature matched) — for staging. */
    verboseLogging: z.boolean().default(false),
    /** Put every rule marked as new in the rule catalog into preview (log-only). */
    previewNewRules: z.boolean().default(false),
    /** Put these rules (by key, e.g. `waf-nodejs`) into preview (log-only). */
    previewRules: z.array(z.string().regex(/^[a-z0-9-]+$/)).default([]),
    /** Per-IP ban on /auth/*: over `count` requests per `intervalSec` bans for `banDurationSec`. */
    authRateLimit: z
      .object({
        count: z.number().int().min(1).max(100000),
        intervalSec,
        banDurationSec: z.number().int().min(60).max(86400),
      })
      .strict(),
    /** Per-IP throttle on HTTP chat writes (POST /chat/channels/:channel/messages). */
    chatWriteThrottle: z
      .object({
        count: z.number().int().min(1).max(100000),
        intervalSec,
      })
      .strict(),
    /**
     * Source ranges refused at the edge (403) before any other rule, on every path — the
     * runbook's "apply network perimeter controls". 10 ranges per Armor rule.
     */
    denySourceRanges: z.array(sourceRange).max(MAX_DENY_RANGES).default([]),
    /**
     * Per-path, per-IP throttles that override the baseline limits for their path (evaluated
     * after the WAF rules and before the /auth ban and the chat throttle; the longest path wins).
     */
    pathThrottles: z.array(pathThrottleSchema).max(MAX_PATH_THROTTLES).default([]),
  })
  .strict()
  .superRefine((a, ctx) => {
    const seen = new Set<string>();
    a.pathThrottles.forEach((t, i) => {
      const key = `${t.match} ${t.method ?? '*'} ${t.path}`;
      if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['pathThrottles', i], message: `duplicate throttle for ${key}` });
      seen.add(key);
    });
  });

const edgeSchema = z
  .object({
    /** SSL policy profile; both are pinned to TLS >= 1.2. */
    sslProfile: z.enum(['MODERN', 'RESTRICTED']).default('MODERN'),
    /** Minimum TLS version. */
    minTlsVersion: z.enum(['TLS_1_2', 'TLS_1_3']).default('TLS_1_2'),
    /** Fraction of requests logged by the backend service. */
    logSampleRate: z.number().min(0.01).max(1).default(1),
  })
  .strict();

const githubSchema = z
  .object({
    /** `owner/name`, informational (the condition pins the numeric ids). */
    repository: z.string().regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, 'must be owner/name'),
    repositoryId: numericId,
    ownerId: numericId,
    /** Branches whose pushes may deploy this stack. */
    deployBranches: z.array(z.string().regex(/^[A-Za-z0-9._/-]+$/)).default([]),
    /** GitHub environments (protected, with reviewers) whose jobs may deploy this stack. */
    deployEnvironments: z.array(z.string().regex(/^[A-Za-z0-9._-]+$/)).default([]),
    /** Project roles of the deployer account (the program manages these resource kinds). */
    deployerRoles: z
      .array(z.string().regex(/^roles\/[A-Za-z0-9.]+$/))
      .default([
        'roles/run.admin',
        'roles/compute.networkAdmin',
        'roles/compute.loadBalancerAdmin',
        'roles/compute.securityAdmin',
        'roles/cloudsql.admin',
        'roles/secretmanager.admin',
        'roles/artifactregistry.admin',
        'roles/storage.admin',
        'roles/iam.serviceAccountAdmin',
        'roles/iam.workloadIdentityPoolAdmin',
        'roles/resourcemanager.projectIamAdmin',
        'roles/servicenetworking.networksAdmin',
        'roles/serviceusage.serviceUsageAdmin',
        'roles/cloudscheduler.admin',
        'roles/monitoring.editor',
        'roles/logging.configWriter',
      ]),
    /** Project roles of the read-only preview account. */
    previewRoles: z
      .array(z.string().regex(/^roles\/[A-Za-z0-9.]+$/))
      .default(['roles/viewer', 'roles/iam.securityReviewer']),
  })
  .strict()
  .refine((g) => g.deployBranches.length + g.deployEnvironments.length > 0, {
    message: 'set deployBranches and/or deployEnvironments: nothing could deploy this stack',
    path: ['deployEnvironments'],
  })
  .refine((g) => !g.deployerRoles.some((r) => r === 'roles/owner' || r === 'roles/editor'), {
    message: 'basic roles (owner/editor) are not allowed',
    path: ['deployerRoles'],
  })
  .refine((g) => !g.previewRoles.some((r) => r === 'roles/owner' || r === 'roles/editor'), {
    message: 'the preview account is read-only: no owner/editor',
    path: ['previewRoles'],
  });

const auditArchiveSchema = z
  .object({
    /** Bucket name (globally unique); defaults to `<namePrefix>-audit-archive-<hash of the project id>`. */
    bucketName: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/)
      .optional(),
    /** Bucket location; defaults to the stack region. */
    location: z.string().optional(),
    storageClass: z.enum(['STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE']).default('COLDLINE'),
    /** Objects cannot be deleted or replaced for this many days. */
    retentionDays: z.number().int().min(1).max(3650).default(400),
    /** Lock the retention policy (irreversible). Required in prod. */
    lockRetention: z.boolean().default(false),
    /** The only object prefix the runtime account may write. */
    objectPrefix: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._/-]*\/$/, 'must end with a slash, e.g. security-audit/')
      .default('security-audit/'),
    /** Cron schedule (5 fields) of the archive job; default 03:17 on the 1st of every month. */
    schedule: z
      .string()
      .regex(/^(\S+\s+){4}\S+$/, 'must be a 5-field cron expression, e.g. "17 3 1 * *"')
      .default('17 3 1 * *'),
    /** Time zone of `schedule` (IANA name). */
    timeZone: z.string().regex(/^[A-Za-z_]+(\/[A-Za-z0-9_+-]+)*$/, 'must be an IANA time zone such as Etc/UTC').default('Etc/UTC'),
    /** How the job starts the CLI inside the image (it has no bin/ shim; `archive-security-audit --to <uri>` is appended). */
    command: z.array(z.string().min(1)).min(1).default(['node', 'dist/app/cli/main.js']),
    /** Upper bound of one archive run. */
    timeoutSeconds: z.number().int().min(60).max(86400).default(3600),
    /** Retries of a failed run within one execution. */
    maxRetries: z.number().int().min(0).max(10).default(1),
  })
  .strict();

const opsAccessSchema = z
  .object({
    /**
     * Source ranges allowed to reach /ops/* at the edge (operators' VPN / bastion egress, CI
     * runners with static egress). Empty and no IAP: /ops is open at the edge (app auth only) —
     * refused in prod.
     */
    allowedSourceRanges: z.array(sourceRange).max(100).default([]),
    /** Let Cloud Monitoring's uptime checkers reach GET /ops/release/admin-audit (only that path). */
    allowUptimeCheckers: z.boolean().default(true),
    /** Identity-Aware Proxy in front of /ops/* (Google-managed OAuth client). */
    iap: z
      .object({
        enabled: z.boolean().default(false),
        /** Principals allowed through IAP (`user:`, `group:`, `serviceAccount:`, `domain:`). */
        members: z.array(z.string().regex(/^(user|group|serviceAccount|domain):[^\s*]+$/, 'must be user:, group:, serviceAccount: or domain:')).default([]),
      })
      .strict()
      .default({}),
  })
  .strict()
  .refine((o) => !o.iap.enabled || o.iap.members.length > 0, {
    message: 'IAP without members lets nobody through; list the principals',
    path: ['iap', 'members'],
  });

/** An alert threshold: more than `count` events within `windowSeconds` fires. */
const thresholdSchema = (count: number, windowSeconds: number) =>
  z
    .object({
      count: z.number().int().min(0).max(10_000_000).default(count),
      windowSeconds: z.number().int().min(60).max(86_400).default(windowSeconds),
    })
    .strict()
    .default({});

/** Cloud Monitoring uptime check regions (at least three when set). */
export const UPTIME_REGIONS = ['USA', 'EUROPE', 'SOUTH_AMERICA', 'ASIA_PACIFIC', 'USA_OREGON', 'USA_IOWA', 'USA_VIRGINIA'] as const;

const monitoringSchema = z
  .object({
    /** Existing notification channels (Slack, PagerDuty, ...): `projects/<p>/notificationChannels/<id>`. */
    notificationChannels: z
      .array(z.string().regex(/^projects\/[a-z0-9-]+\/notificationChannels\/\d+$/, 'must be projects/<project>/notificationChannels/<id>'))
      .default([]),
    /** Email addresses that get an email notification channel each. */
    emails: z.array(z.string().email()).default([]),
    /** Seconds between uptime checks (60, 300, 600 or 900). */
    uptimePeriodSeconds: z.union([z.literal(60), z.literal(300), z.literal(600), z.literal(900)]).default(60),
    /** Checker regions (empty: all). */
    uptimeRegions: z.array(z.enum(UPTIME_REGIONS)).default([]),
    /** Uptime check of GET /ops/release/admin-audit with the ops token (needs the checkers to pass the /ops edge rule). */
    adminAuditUptimeCheck: z.boolean().default(true),
    /** Alert thresholds (more than `count` in `windowSeconds`). */
    alerts: z
      .object({
        authFailures: thresholdSchema(200, 300),
        lockouts: thresholdSchema(20, 300),
        rateLimited: thresholdSchema(500, 300),
        refreshTokenReuse: thresholdSchema(3, 300),
        drainFailures: thresholdSchema(0, 300),
        archiveFailures: thresholdSchema(0, 3600),
        armorDenies: thresholdSchema(1000, 300),
      })
      .strict()
      .default({}),
  })
  .strict()
  .refine((m) => m.uptimeRegions.length === 0 || m.uptimeRegions.length >= 3, {
    message: 'set at least three regions (or none for all)',
    path: ['uptimeRegions'],
  });

const rotationSchema = z
  .object({
    /** Generation of the secret the service is pinned to. Bump to rotate. */
    rotation: z.number().int().min(1).default(1),
    /** Highest generation the operator confirmed. Older generations are disabled. */
    confirmed: z.number().int().min(1).default(1),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.confirmed > r.rotation) {
      ctx.addIssue({ code: 'custom', path: ['confirmed'], message: `cannot confirm ${r.confirmed} > rotation ${r.rotation}` });
    }
    if (r.confirmed < r.rotation - 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['confirmed'],
        message: `confirm rotation ${r.rotation - 1} before starting rotation ${r.rotation} (confirmed is ${r.confirmed})`,
      });
    }
  });

const secretRotationSchema = z
  .object({
    jwtSecret: rotationSchema.default({}),
    opsApiToken: rotationSchema.default({}),
    dbPassword: rotationSchema.default({}),
    totpEncryptionKey: rotationSchema.default({}),
  })
  .strict()
  .default({});

/** Schema of the non-secret stack configuration. */
export const stackConfigSchema = z
  .object({
    project: z.string().regex(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, 'must be a GCP project id'),
    region: z.string().regex(/^[a-z]+-[a-z]+\d+$/, 'must be a GCP region such as europe-west1'),
    environment: z.enum(['staging', 'prod']),
    /** Prefix of every resource name; defaults to `karaxas-<environment>`. */
    namePrefix: z
      .string()
      .regex(/^[a-z][a-z0-9-]{2,18}[a-z0-9]$/, 'must be 4-20 lower-case letters, digits or hyphens')
      .optional(),
    /** Public host names served by the load balancer (managed certificate). */
    domains: z.array(hostname).min(1),
    /** Container image, pinned by digest. */
    image: z
      .string()
      .regex(/^[a-z0-9.-]+(:\d+)?\/[a-z0-9._/-]+@sha256:[a-f0-9]{64}$/, 'must be an image reference pinned by digest (…@sha256:<64 hex>)'),
    /** Enable the Google APIs the program needs. */
    enableApis: z.boolean().default(true),
    service: serviceSchema.default({}),
    network: networkSchema.default({}),
    database: databaseSchema,
    armor: armorSchema,
    edge: edgeSchema.default({}),
    github: githubSchema,
    auditArchive: auditArchiveSchema.default({}),
    secretRotation: secretRotationSchema,
    opsAccess: opsAccessSchema.default({}),
    monitoring: monitoringSchema.default({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.opsAccess.iap.enabled && c.monitoring.adminAuditUptimeCheck) {
      ctx.addIssue({
        code: 'custom',
        path: ['monitoring', 'adminAuditUptimeCheck'],
        message: 'uptime checks cannot sign in through IAP: set false when opsAccess.iap is enabled',
      });
    }
    if (c.environment !== 'prod') return;
    if (c.opsAccess.allowedSourceRanges.length === 0 && !c.opsAccess.iap.enabled) {
      ctx.addIssue({
        code: 'custom',
        path: ['opsAccess', 'allowedSourceRanges'],
        message: 'prod must restrict /ops at the edge: list the allowed source ranges or enable opsAccess.iap',
      });
    }
    if (c.monitoring.notificationChannels.length + c.monitoring.emails.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['monitoring', 'notificationChannels'],
        message: 'prod alerts must reach someone: set notificationChannels and/or emails',
      });
    }
    if (!c.database.deletionProtection) {
      ctx.addIssue({ code: 'custom', path: ['database', 'deletionProtection'], message: 'must stay true in prod' });
    }
    if (!c.auditArchive.lockRetention) {
      ctx.addIssue({ code: 'custom', path: ['auditArchive', 'lockRetention'], message: 'must be true in prod' });
    }
    if (c.service.deletionProtection === false) {
      ctx.addIssue({ code: 'custom', path: ['service', 'deletionProtection'], message: 'must stay true in prod' });
    }
  });

export type RotationState = z.infer<typeof rotationSchema>;

/** The validated stack configuration (everything but secret values). */
export type StackSettings = z.infer<typeof stackConfigSchema> & {
  /**
   * The app tunables set in this stack, as the env values the app parses back (canonical form).
   * Tunables not set keep the app's own default.
   */
  tunables: Partial<Record<TunableName, string>>;
};

/** The validated configuration plus the optional secret values from `pulumi config set --secret`. */
export interface StackConfig extends StackSettings {
  namePrefix: string;
  isProd: boolean;
  /** Secret values supplied through stack config; absent ones are generated. */
  secretValues: Partial<Record<SecretKey, pulumi.Output<string>>>;
}

/** Which config key holds each field: everything is in our namespace except project/region. */
const KEY_OF: Record<string, string> = {
  project: 'gcp:project',
  region: 'gcp:region',
};

function keyName(path: (string | number)[]): string {
  const [head, ...rest] = path;
  const base = KEY_OF[String(head)] ?? `${CONFIG_NAMESPACE}:${String(head)}`;
  return rest.length ? `${base}.${rest.join('.')}` : base;
}

/** Thrown for invalid stack configuration; the message names every offending key. */
export class StackConfigError extends pulumi.RunError {
  constructor(public readonly problems: string[]) {
    super(`Invalid stack configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'StackConfigError';
  }
}

const STRING_KEYS = new Set(['environment', 'namePrefix', 'image']);
const SECRET_CONFIG_KEYS = new Set<string>(SECRET_KEYS);

// ------------------------------------------------------------------ app tunables

/** Stack key of an app tunable: `AUTH_LOCKOUT_THRESHOLD` → `authLockoutThreshold`. */
export function tunableKey(name: TunableName): string {
  return name.toLowerCase().replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/**
 * Every operator tunable of the app (app/config/tunables.ts, contract §9) by its stack key, e.g.
 * `karaxas-backend:authLockoutThreshold` → `AUTH_LOCKOUT_THRESHOLD`. Validated with the app's own
 * schemas, so `pulumi up` refuses exactly what the service would refuse at boot.
 */
export const TUNABLE_KEYS: ReadonlyMap<string, TunableName> = new Map(
  (Object.keys(tunableSchemas) as TunableName[]).map((name) => [tunableKey(name), name]),
);

/** A raw stack value as the env string the app reads: a YAML list (CORS origins) becomes comma-separated. */
function asEnvString(raw: string): string {
  if (raw.trim().startsWith('[')) {
    try {
      const list: unknown = JSON.parse(raw);
      if (Array.isArray(list)) return list.map(String).join(',');
    } catch {
      // Not JSON: the app's schema reports it.
    }
  }
  return raw;
}

/** Validates the tunables among `raw` with the app's schemas; returns the env of the ones set. */
function parseTunables(raw: Record<string, string | undefined>, problems: string[]): Partial<Record<TunableName, string>> {
  const env: Partial<Record<TunableName, string>> = {};
  const values: Record<string, unknown> = {};
  const start = problems.length;
  for (const [key, name] of TUNABLE_KEYS) {
    const value = raw[key];
    const schema: z.ZodTypeAny = tunableSchemas[name];
    const result = schema.safeParse(value === undefined ? undefined : asEnvString(value));
    if (!result.success) {
      for (const issue of result.error.issues) problems.push(`${keyName([key, ...issue.path])}: ${issue.message} (${name})`);
      continue;
    }
    values[name] = result.data;
    if (value !== undefined) env[name] = Array.isArray(result.data) ? result.data.join(',') : String(result.data);
  }
  if (problems.length > start) return env;
  const keyOf = (text: string) =>
    text.replace(/\b[A-Z][A-Z0-9_]+\b/g, (m) => (TUNABLE_KEYS.has(tunableKey(m as TunableName)) ? keyName([tunableKey(m as TunableName)]) : m));
  for (const rule of tunableRefinements) {
    if (!rule.check(values as Parameters<typeof rule.check>[0])) {
      problems.push(`${keyName([tunableKey(rule.variable)])}: ${keyOf(rule.message)} (${rule.variable})`);
    }
  }
  // A deployed stack serves browsers over https only (the app itself also accepts http origins).
  const origins = (env.CORS_ALLOWED_ORIGINS ?? '').split(',').filter((o) => o !== '');
  origins.forEach((o, i) => {
    if (!o.startsWith('https://') && !/^http:\/\/localhost(:\d+)?$/.test(o)) {
      problems.push(`${keyName([tunableKey('CORS_ALLOWED_ORIGINS'), i])}: must be an https origin (http only for localhost)`);
    }
  });
  return env;
}

/**
 * Parses raw config (`key` without namespace → raw string as Pulumi stores it).
 * Exported for tests; `loadConfig` is the entry point for the program.
 */
export function parseStackSettings(raw: Record<string, string | undefined>): StackSettings {
  const problems: string[] = [];
  const tunables = parseTunables(raw, problems);
  const input: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined || TUNABLE_KEYS.has(key)) continue;
    if (key === 'project' || key === 'region' || STRING_KEYS.has(key)) {
      input[key] = value;
      continue;
    }
    try {
      input[key] = JSON.parse(value);
    } catch {
      // Plain scalars (e.g. `enableApis: true` is stored as the string "true").
      input[key] = value;
    }
  }
  const result = stackConfigSchema.safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const k of issue.keys) problems.push(`${keyName([...issue.path, k])}: unknown setting`);
      } else {
        problems.push(`${keyName(issue.path)}: ${issue.message}`);
      }
    }
  }
  if (!result.success || problems.length > 0) throw new StackConfigError(problems);
  return { ...result.data, tunables };
}

/** Reads and validates the stack configuration of the running program. */
export function loadConfig(): StackConfig {
  const gcpConfig = new pulumi.Config('gcp');
  const config = new pulumi.Config(CONFIG_NAMESPACE);
  const raw: Record<string, string | undefined> = {
    project: gcpConfig.get('project'),
    region: gcpConfig.get('region'),
  };
  // Every key in our namespace is read, so a typo is reported rather than ignored.
  const prefix = `${CONFIG_NAMESPACE}:`;
  for (const fullKey of Object.keys(pulumi.runtime.allConfig())) {
    if (!fullKey.startsWith(prefix)) continue;
    const key = fullKey.slice(prefix.length);
    if (SECRET_CONFIG_KEYS.has(key)) continue;
    raw[key] = config.get(key);
  }
  const settings = parseStackSettings(raw);
  const secretValues: Partial<Record<SecretKey, pulumi.Output<string>>> = {};
  for (const key of SECRET_KEYS) {
    // getSecret wraps the value as a Pulumi secret whether or not it was stored encrypted.
    const value = config.getSecret(key);
    if (value !== undefined) secretValues[key] = value;
  }
  return {
    ...settings,
    namePrefix: settings.namePrefix ?? `karaxas-${settings.environment}`,
    isProd: settings.environment === 'prod',
    secretValues,
  };
}

/** Unwraps defaults, optionals and refinements down to the schema that has the shape. */
function unwrapSchema(schema: z.ZodTypeAny): z.ZodTypeAny {
  let current = schema;
  for (;;) {
    if (current instanceof z.ZodEffects) current = current.innerType() as z.ZodTypeAny;
    else if (current instanceof z.ZodDefault) current = current.removeDefault() as z.ZodTypeAny;
    else if (current instanceof z.ZodOptional) current = current.unwrap() as z.ZodTypeAny;
    else return current;
  }
}

/**
 * Whether a key as an operator types it after `pulumi config set [--path]` names a setting of this
 * program: `karaxas-backend:authLockoutThreshold`, `armor.authRateLimit.count`,
 * `service.registryReaders[0]`, `secretRotation.jwtSecret.rotation`, `gcp:project`, `jwtSecret`.
 * Used by the runbook test so a documented command never names a key the program would refuse.
 */
export function isStackConfigKey(key: string): boolean {
  if (key === 'gcp:project' || key === 'gcp:region') return true;
  const local = key.startsWith(`${CONFIG_NAMESPACE}:`) ? key.slice(CONFIG_NAMESPACE.length + 1) : key;
  if (local.includes(':')) return false;
  const [head, ...rest] = local.replace(/\[(\d+)\]/g, '.$1').split('.');
  if (!head) return false;
  if (SECRET_CONFIG_KEYS.has(head)) return rest.length === 0;
  if (TUNABLE_KEYS.has(head)) return rest.length === 0 || (head === tunableKey('CORS_ALLOWED_ORIGINS') && rest.length === 1 && /^\d+$/.test(rest[0]!));
  if (head === 'project' || head === 'region') return false;
  let schema: z.ZodTypeAny | undefined = (unwrapSchema(stackConfigSchema) as z.AnyZodObject).shape[head] as z.ZodTypeAny | undefined;
  for (const part of rest) {
    if (schema === undefined) return false;
    const inner = unwrapSchema(schema);
    if (inner instanceof z.ZodObject) schema = (inner.shape as Record<string, z.ZodTypeAny>)[part];
    else if (inner instanceof z.ZodArray && /^\d+$/.test(part)) schema = inner.element as z.ZodTypeAny;
    else if (inner instanceof z.ZodRecord) schema = inner.valueSchema as z.ZodTypeAny;
    else return false;
  }
  return schema !== undefined;
}
