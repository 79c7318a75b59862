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

const origin = z.string().refine(
  (v) => {
    if (v.includes('*')) return false;
    try {
      const u = new URL(v);
      return u.origin === v && (u.protocol === 'https:' || u.hostname === 'localhost');
    } catch {
      return false;
    }
  },
  { message: 'must be an exact origin like https://play.example.com (no path, no trailing slash, no wildcard)' },
);

const cidr = z
  .string()
  .regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d|[12]\d|3[0-2])$/, 'must be an IPv4 CIDR range');

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
  })
  .strict();

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
  })
  .strict();

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
    /** CORS_ALLOWED_ORIGINS: exact origins. */
    corsAllowedOrigins: z.array(origin).default([]),
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
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.environment !== 'prod') return;
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

export type StackSettings = z.infer<typeof stackConfigSchema>;
export type RotationState = z.infer<typeof rotationSchema>;

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

/**
 * Parses raw config (`key` without namespace → raw string as Pulumi stores it).
 * Exported for tests; `loadConfig` is the entry point for the program.
 */
export function parseStackSettings(raw: Record<string, string | undefined>): StackSettings {
  const problems: string[] = [];
  const input: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) continue;
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
    throw new StackConfigError(problems);
  }
  return result.data;
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
