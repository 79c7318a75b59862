/**
 * The CrossGuard policies enforcing the perimeter's invariants on any
 * `pulumi preview/up --policy-pack infra/policy`. Exported one by one so tests
 * (and `npm run infra:plan`) can call them without constructing a PolicyPack,
 * which needs the Pulumi CLI.
 */
import * as gcp from '@pulumi/gcp';
import {
  validateResourceOfType,
  type ReportViolation,
  type ResourceValidationArgs,
  type ResourceValidationPolicy,
  type StackValidationPolicy,
} from '@pulumi/policy';

type Policy = ResourceValidationPolicy | StackValidationPolicy;

/** Stacks treated as production unless the pack's config says otherwise. */
export const DEFAULT_PRODUCTION_STACKS = ['prod', 'production'];

const productionConfigSchema = {
  properties: {
    productionStacks: {
      type: 'array' as const,
      items: { type: 'string' as const },
      default: DEFAULT_PRODUCTION_STACKS,
    },
  },
};

/** Stack name of a resource URN (`urn:pulumi:<stack>::<project>::…`). */
export function stackOfUrn(urn: string): string {
  return urn.split('::')[0]?.split(':')[2] ?? '';
}

function isProduction(args: { urn: string; getConfig<T extends object>(): T }): boolean {
  const configured = args.getConfig<{ productionStacks?: string[] }>().productionStacks;
  return (configured ?? DEFAULT_PRODUCTION_STACKS).includes(stackOfUrn(args.urn));
}

type Env = { name?: string; value?: string; valueSource?: { secretKeyRef?: { secret?: string; version?: string } } };

/** Env names that would carry a plain secret. */
export const PLAIN_SECRET_ENV = [
  'JWT_SECRET',
  'JWT_SECRET_PREVIOUS',
  'OPS_API_TOKEN',
  'DB_PASSWORD',
  'TOTP_ENCRYPTION_KEY',
  'TOTP_ENCRYPTION_KEY_PREVIOUS',
  'DATABASE_URL',
];
/** Env names that switch secret handling off. */
export const FORBIDDEN_ENV = ['ALLOW_PLAIN_ENV_SECRETS', 'FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION', 'SECRET_MANAGER_EMULATOR_HOST'];
/** The references the app needs (contract §9). */
export const REQUIRED_SECRET_REFS = [
  'JWT_SECRET_SECRET_REF',
  'OPS_API_TOKEN_SECRET_REF',
  'DB_PASSWORD_SECRET_REF',
  'TOTP_ENCRYPTION_KEY_SECRET_REF',
];
const PINNED_REF = /^projects\/[^/]+\/secrets\/[^/]+\/versions\/\d+$/;

function containerEnvs(svc: { template?: { containers?: Array<{ envs?: Env[] }> } }): Env[] {
  return (svc.template?.containers ?? []).flatMap((c) => c.envs ?? []);
}

/** Reports plain secrets, forbidden switches and unpinned references in a container env. */
function checkSecretEnv(envs: Env[], report: (message: string) => void): void {
  for (const e of envs) {
    const name = e.name ?? '';
    if (PLAIN_SECRET_ENV.includes(name)) report(`env ${name} carries a secret in plain text; use ${name}_SECRET_REF`);
    if (FORBIDDEN_ENV.includes(name)) report(`env ${name} must not be set`);
    if (name.endsWith('_SECRET_REF') && !PINNED_REF.test(e.value ?? '')) {
      report(`env ${name}=${e.value ?? '(unset)'} must be projects/P/secrets/S/versions/N (a number, never latest)`);
    }
    const keyRef = e.valueSource?.secretKeyRef;
    if (keyRef && !/^\d+$/.test(keyRef.version ?? '')) {
      report(`env ${name} reads secret ${keyRef.secret ?? '?'} at version ${keyRef.version ?? 'latest'}; pin a number`);
    }
  }
}

// ---------------------------------------------------------------- Cloud Run

export const cloudRunBehindLoadBalancer: ResourceValidationPolicy = {
  name: 'cloud-run-behind-load-balancer',
  description: 'Cloud Run accepts traffic only from the load balancer (and so Cloud Armor) and has no run.app URL.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.cloudrunv2.Service, (svc, _args, report) => {
    if (svc.ingress !== 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER') {
      report(`ingress is ${svc.ingress ?? 'unset (INGRESS_TRAFFIC_ALL)'}; must be INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER`);
    }
    if (svc.defaultUriDisabled !== true) report('defaultUriDisabled must be true (the run.app URL bypasses Cloud Armor)');
  }),
};

export const cloudRunSecretsByPinnedReference: ResourceValidationPolicy = {
  name: 'cloud-run-secrets-by-pinned-reference',
  description:
    'Secrets reach the app only as *_SECRET_REF Secret Manager versions pinned to a number; no plain secret env, no ALLOW_PLAIN_ENV_SECRETS.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.cloudrunv2.Service, (svc, _args, report) => {
    const envs = containerEnvs(svc);
    const names = new Set(envs.map((e) => e.name ?? ''));
    checkSecretEnv(envs, report);
    for (const ref of REQUIRED_SECRET_REFS) if (!names.has(ref)) report(`env ${ref} is missing`);
  }),
};

export const cloudRunContainerContract: ResourceValidationPolicy = {
  name: 'cloud-run-container-contract',
  description:
    'Production settings of the container: NODE_ENV=production, DB_SSLMODE require or stricter, TRUST_PROXY=true, port 8080, probes on /readyz and /healthz.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.cloudrunv2.Service, (svc, _args, report) => {
    const envs = containerEnvs(svc);
    const value = (name: string) => envs.find((e) => e.name === name)?.value;
    if (value('NODE_ENV') !== 'production') report('NODE_ENV must be production');
    if (!['require', 'verify-ca', 'verify-full'].includes(value('DB_SSLMODE') ?? '')) {
      report(`DB_SSLMODE=${value('DB_SSLMODE') ?? '(unset)'}; must be require, verify-ca or verify-full`);
    }
    if (value('TRUST_PROXY') !== 'true') report('TRUST_PROXY must be true behind the load balancer');
    for (const c of svc.template?.containers ?? []) {
      if (c.ports?.containerPort !== undefined && c.ports.containerPort !== 8080) report('the container listens on 8080');
      if (c.startupProbe?.httpGet?.path !== '/readyz') report('startup probe must be GET /readyz');
      if (c.livenessProbe?.httpGet?.path !== '/healthz') report('liveness probe must be GET /healthz');
    }
  }),
};

export const cloudRunImageByDigest: ResourceValidationPolicy = {
  name: 'cloud-run-image-by-digest',
  description: 'Cloud Run deploys images pinned by digest, never by a mutable tag.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.cloudrunv2.Service, (svc, _args, report) => {
    for (const c of svc.template?.containers ?? []) {
      if (!/@sha256:[a-f0-9]{64}$/.test(c.image ?? '')) report(`image ${c.image ?? '(unset)'} is not pinned by digest`);
    }
  }),
};

export const cloudRunJobHardened: ResourceValidationPolicy = {
  name: 'cloud-run-job-hardened',
  description:
    'Cloud Run jobs (the audit archive) run an image by digest, get secrets only as pinned *_SECRET_REF, use DB_SSLMODE require or stricter, and have a dedicated service account.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.cloudrunv2.Job, (job, _args, report) => {
    const task = job.template?.template;
    const envs = (task?.containers ?? []).flatMap((c) => c.envs ?? []);
    checkSecretEnv(envs, report);
    for (const c of task?.containers ?? []) {
      if (!/@sha256:[a-f0-9]{64}$/.test(c.image ?? '')) report(`image ${c.image ?? '(unset)'} is not pinned by digest`);
    }
    const sslmode = envs.find((e) => e.name === 'DB_SSLMODE')?.value;
    if (sslmode !== undefined && !['require', 'verify-ca', 'verify-full'].includes(sslmode)) report(`DB_SSLMODE=${sslmode}; must be require or stricter`);
    if (!task?.serviceAccount) report('the job must run as a dedicated service account, not the default compute account');
  }),
};

// ---------------------------------------------------------------- Cloud SQL

export const cloudSqlPrivateEncrypted: ResourceValidationPolicy = {
  name: 'cloud-sql-private-and-encrypted',
  description: 'Cloud SQL has no public IP, no authorized networks, and refuses unencrypted connections.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.sql.DatabaseInstance, (db, _args, report) => {
    const ip = db.settings?.ipConfiguration;
    if (ip?.ipv4Enabled !== false) report('ipConfiguration.ipv4Enabled must be false (private IP only)');
    if (!ip?.privateNetwork) report('ipConfiguration.privateNetwork must be set');
    if ((ip?.authorizedNetworks ?? []).length > 0) report('authorizedNetworks must be empty');
    if (!['ENCRYPTED_ONLY', 'TRUSTED_CLIENT_CERTIFICATE_REQUIRED'].includes(ip?.sslMode ?? '')) {
      report(`sslMode is ${ip?.sslMode ?? 'unset'}; must be ENCRYPTED_ONLY or TRUSTED_CLIENT_CERTIFICATE_REQUIRED`);
    }
  }),
};

export const cloudSqlRecoverableAndAudited: ResourceValidationPolicy = {
  name: 'cloud-sql-recoverable-and-audited',
  description: 'PostgreSQL 17+, automated backups with point-in-time recovery, connection and disconnection logging.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.sql.DatabaseInstance, (db, _args, report) => {
    const version = /^POSTGRES_(\d+)$/.exec(db.databaseVersion ?? '');
    if (!version || Number(version[1]) < 17) report(`databaseVersion ${db.databaseVersion}: must be POSTGRES_17 or newer`);
    const backup = db.settings?.backupConfiguration;
    if (backup?.enabled !== true) report('automated backups must be enabled');
    if (backup?.pointInTimeRecoveryEnabled !== true) report('point-in-time recovery must be enabled');
    const flags = new Map((db.settings?.databaseFlags ?? []).map((f) => [f.name, f.value]));
    for (const flag of ['log_connections', 'log_disconnections']) {
      if (flags.get(flag) !== 'on') report(`database flag ${flag} must be on`);
    }
  }),
};

export const cloudSqlDeletionProtectionInProduction: ResourceValidationPolicy = {
  name: 'cloud-sql-deletion-protection-in-production',
  description: 'In production stacks both deletion protections (Pulumi/Terraform and Cloud SQL API) are on.',
  enforcementLevel: 'mandatory',
  configSchema: productionConfigSchema,
  validateResource: validateResourceOfType(gcp.sql.DatabaseInstance, (db, args, report) => {
    if (!isProduction(args)) return;
    if (db.deletionProtection !== true) report('deletionProtection must be true in production');
    if (db.settings?.deletionProtectionEnabled !== true) report('settings.deletionProtectionEnabled must be true in production');
  }),
};

// ---------------------------------------------------------------- Cloud Armor and the load balancer

/** OWASP CRS rule sets the Armor policy must evaluate. */
export const REQUIRED_WAF_RULE_SETS = [
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
];
/** Rule sets that may never run in preview (log-only). */
export const ENFORCED_WAF_RULE_SETS = ['sqli', 'xss', 'lfi', 'rfi', 'rce'];

type ArmorRule = {
  action?: string;
  priority?: number;
  preview?: boolean;
  match?: { expr?: { expression?: string }; versionedExpr?: string; config?: { srcIpRanges?: string[] } };
  rateLimitOptions?: { enforceOnKey?: string; rateLimitThreshold?: { count?: number; intervalSec?: number } };
};

export const armorBaseline: ResourceValidationPolicy = {
  name: 'cloud-armor-baseline',
  description:
    'Cloud Armor: OWASP CRS rule sets, JSON parsing, Adaptive Protection, a per-IP rate-based ban on /auth/*, and the default rule.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.compute.SecurityPolicy, (policy, _args, report) => {
    const rules = (policy.rules ?? []) as ArmorRule[];
    const expr = (r: ArmorRule) => r.match?.expr?.expression ?? '';
    if (!['STANDARD', 'STANDARD_WITH_GRAPHQL'].includes(policy.advancedOptionsConfig?.jsonParsing ?? '')) {
      report('advancedOptionsConfig.jsonParsing must be STANDARD (JSON bodies are otherwise not inspected)');
    }
    if (policy.adaptiveProtectionConfig?.layer7DdosDefenseConfig?.enable !== true) {
      report('Adaptive Protection (layer7DdosDefenseConfig.enable) must be on');
    }
    for (const set of REQUIRED_WAF_RULE_SETS) {
      const rule = rules.find((r) => new RegExp(`evaluatePreconfigured(Waf|Expr)\\('${set}-v\\d+-`).test(expr(r)));
      if (!rule) report(`no rule evaluates the ${set} OWASP CRS rule set`);
      else if (!(rule.action ?? '').startsWith('deny')) report(`the ${set} rule must deny, not ${rule.action}`);
      else if (rule.preview && ENFORCED_WAF_RULE_SETS.includes(set)) report(`the ${set} rule must not be in preview`);
    }
    const ban = rules.find((r) => r.action === 'rate_based_ban' && expr(r).includes("'/auth/'"));
    if (!ban) report('no rate_based_ban rule on /auth/*');
    else {
      if (ban.rateLimitOptions?.enforceOnKey !== 'IP') report('the /auth/* ban must be enforced per IP (enforceOnKey: IP)');
      if (ban.preview) report('the /auth/* ban must not be in preview');
    }
    const fallback = rules.find((r) => r.priority === 2147483647);
    if (!fallback) report('the default rule (priority 2147483647) is missing');
    else if (fallback.preview) report('the default rule cannot be in preview');
  }),
};

export const backendServiceArmorAndLogging: ResourceValidationPolicy = {
  name: 'backend-service-armor-and-logging',
  description: 'Every external backend service has a Cloud Armor policy attached and request logging on.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.compute.BackendService, (be, _args, report) => {
    if (!be.securityPolicy) report('no Cloud Armor policy attached (securityPolicy)');
    if (be.logConfig?.enable !== true) report('logConfig.enable must be true');
    if (be.loadBalancingScheme !== 'EXTERNAL_MANAGED') report('loadBalancingScheme must be EXTERNAL_MANAGED');
  }),
};

export const tlsPolicyModern: ResourceValidationPolicy = {
  name: 'ssl-policy-tls12-modern',
  description: 'SSL policies use the MODERN or RESTRICTED profile with TLS 1.2 or newer.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.compute.SSLPolicy, (p, _args, report) => {
    if (!['MODERN', 'RESTRICTED'].includes(p.profile ?? 'COMPATIBLE')) report(`profile ${p.profile ?? 'COMPATIBLE'}: use MODERN or RESTRICTED`);
    if (!['TLS_1_2', 'TLS_1_3'].includes(p.minTlsVersion ?? 'TLS_1_0')) report(`minTlsVersion ${p.minTlsVersion ?? 'TLS_1_0'}: use TLS_1_2 or newer`);
  }),
};

export const httpsProxyHasSslPolicy: ResourceValidationPolicy = {
  name: 'https-proxy-has-ssl-policy',
  description: 'HTTPS proxies carry an explicit SSL policy (the implicit default allows TLS 1.0).',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.compute.TargetHttpsProxy, (p, _args, report) => {
    if (!p.sslPolicy) report('sslPolicy is not set');
    if ((p.sslCertificates ?? []).length === 0 && !p.certificateMap) report('no certificate attached');
  }),
};

/** A resource as stack policies see it. */
interface StackResource {
  type: string;
  props: Record<string, unknown>;
  name: string;
  urn: string;
}

function refersTo(ref: unknown, r: StackResource): boolean {
  if (typeof ref !== 'string' || ref === '') return false;
  const ids = [r.props.id, r.props.selfLink].filter((v): v is string => typeof v === 'string' && v !== '');
  if (ids.some((id) => id === ref || id.endsWith(`/${ref}`) || ref.endsWith(`/${id}`))) return true;
  const name = r.props.name;
  return typeof name === 'string' && (ref === name || ref.endsWith(`/${name}`));
}

export const httpOnlyRedirects: StackValidationPolicy = {
  name: 'http-only-redirects-to-https',
  description: 'Port 80 answers only with a redirect to HTTPS: every HTTP proxy uses a redirect-only URL map.',
  enforcementLevel: 'mandatory',
  validateStack: (args, report) => {
    const maps = args.resources.filter((r) => r.type === 'gcp:compute/uRLMap:URLMap');
    for (const proxy of args.resources.filter((r) => r.type === 'gcp:compute/targetHttpProxy:TargetHttpProxy')) {
      const map = maps.find((m) => refersTo(proxy.props.urlMap, m));
      if (!map) {
        report(`HTTP proxy ${proxy.name}: URL map ${String(proxy.props.urlMap)} not found in the stack`, proxy.urn);
        continue;
      }
      const redirect = map.props.defaultUrlRedirect as { httpsRedirect?: boolean } | undefined;
      if (redirect?.httpsRedirect !== true) report(`HTTP proxy ${proxy.name} serves content; its URL map must redirect to https`, proxy.urn);
      if (map.props.defaultService || (map.props.pathMatchers as unknown[] | undefined)?.length) {
        report(`URL map ${map.name} behind port 80 routes to backends; it must only redirect`, map.urn);
      }
    }
  },
};

export const armorOnEveryBackend: StackValidationPolicy = {
  name: 'cloud-armor-on-every-backend',
  description: 'Every backend service of the stack is protected by a Cloud Armor policy defined in the stack.',
  enforcementLevel: 'mandatory',
  validateStack: (args, report) => {
    const policies = args.resources.filter((r) => r.type === 'gcp:compute/securityPolicy:SecurityPolicy');
    for (const be of args.resources.filter((r) => r.type === 'gcp:compute/backendService:BackendService')) {
      if (!policies.some((p) => refersTo(be.props.securityPolicy, p))) {
        report(`backend service ${be.name} has no Cloud Armor policy of this stack attached`, be.urn);
      }
    }
  },
};

// ---------------------------------------------------------------- identity

export const wifProviderPinned: ResourceValidationPolicy = {
  name: 'wif-provider-pins-repository',
  description: 'GitHub OIDC providers accept only tokens of the configured repository, pinned by numeric id.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.iam.WorkloadIdentityPoolProvider, (p, _args, report) => {
    const condition = p.attributeCondition ?? '';
    if (!/assertion\.repository_id\s*==\s*'\d+'/.test(condition)) {
      report(`attributeCondition "${condition}" must pin assertion.repository_id to a numeric id`);
    }
    if (/\|\|/.test(condition)) report('attributeCondition must not contain alternatives (||)');
    if (p.oidc?.issuerUri !== 'https://token.actions.githubusercontent.com') report('issuer must be GitHub Actions');
  }),
};

export const noServiceAccountKeys: ResourceValidationPolicy = {
  name: 'no-service-account-keys',
  description: 'No long-lived service-account keys: CI uses Workload Identity Federation.',
  enforcementLevel: 'mandatory',
  validateResource: (args, report) => {
    if (/^gcp:serviceaccount\/key:Key$|^gcp:serviceAccount\/key:Key$/i.test(args.type)) {
      report('service-account key resources are forbidden; use Workload Identity Federation');
    }
  },
};

const IAM_MEMBER_TYPES = /^gcp:[a-z0-9]+\/[A-Za-z]*(IamMember|IAMMember|iAMMember|IamBinding|IAMBinding|iAMBinding)(:|$)/;

/** Members that would open access to anyone, or to a whole pool / federation. */
export function unsafeMember(member: string): string | undefined {
  if (member === 'allUsers' || member === 'allAuthenticatedUsers') return `${member} is public`;
  if (/\/\*$/.test(member)) return `${member} grants a whole pool (/*)`;
  if (member.startsWith('principalSet://') && !/\/attribute\.[a-z0-9_]+\/[^/*]+|\/group\/[^/*]+/.test(member)) {
    return `${member} is not narrowed to an attribute value`;
  }
  return undefined;
}

export const iamNoPublicOrWildcard: ResourceValidationPolicy = {
  name: 'iam-no-public-or-wildcard-members',
  description: 'No IAM grant to allUsers/allAuthenticatedUsers or a whole identity pool, and no basic owner/editor roles.',
  enforcementLevel: 'mandatory',
  validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
    if (!IAM_MEMBER_TYPES.test(args.type)) return;
    const members: string[] = [
      ...(typeof args.props.member === 'string' ? [args.props.member] : []),
      ...(Array.isArray(args.props.members) ? (args.props.members as string[]) : []),
    ];
    for (const m of members) {
      const problem = unsafeMember(m);
      if (problem) report(problem);
    }
    if (args.props.role === 'roles/owner' || args.props.role === 'roles/editor') report(`basic role ${args.props.role} is not allowed`);
  },
};

export const secretAccessorRuntimeOnly: StackValidationPolicy = {
  name: 'secret-accessor-runtime-only',
  description: 'secretAccessor is granted per secret, only to service accounts Cloud Run services or jobs run as.',
  enforcementLevel: 'mandatory',
  validateStack: (args, report) => {
    const runtimeAccounts = new Set(
      args.resources
        .map((r) =>
          r.type === 'gcp:cloudrunv2/service:Service'
            ? (r.props.template as { serviceAccount?: string } | undefined)?.serviceAccount
            : r.type === 'gcp:cloudrunv2/job:Job'
              ? (r.props.template as { template?: { serviceAccount?: string } } | undefined)?.template?.serviceAccount
              : undefined,
        )
        .filter((e): e is string => typeof e === 'string')
        .map((e) => `serviceAccount:${e}`),
    );
    for (const r of args.resources) {
      if (r.props.role !== 'roles/secretmanager.secretAccessor') continue;
      if (r.type !== 'gcp:secretmanager/secretIamMember:SecretIamMember') {
        report(`${r.name}: grant secretAccessor on one secret (SecretIamMember), not on ${r.type}`, r.urn);
        continue;
      }
      if (!runtimeAccounts.has(String(r.props.member))) {
        report(`${r.name}: secretAccessor granted to ${String(r.props.member)}, which no Cloud Run service or job runs as`, r.urn);
      }
    }
  },
};

// ---------------------------------------------------------------- storage

export const bucketNotPublic: ResourceValidationPolicy = {
  name: 'bucket-not-public',
  description: 'Buckets enforce public access prevention and uniform bucket-level access.',
  enforcementLevel: 'mandatory',
  validateResource: validateResourceOfType(gcp.storage.Bucket, (b, _args, report) => {
    if (b.publicAccessPrevention !== 'enforced') report('publicAccessPrevention must be enforced');
    if (b.uniformBucketLevelAccess !== true) report('uniformBucketLevelAccess must be true');
  }),
};

export const auditArchiveRetention: ResourceValidationPolicy = {
  name: 'audit-archive-retention',
  description: 'The security-audit archive bucket has a retention policy, locked in production.',
  enforcementLevel: 'mandatory',
  configSchema: productionConfigSchema,
  validateResource: validateResourceOfType(gcp.storage.Bucket, (b, args, report) => {
    const labels = (b.labels ?? {}) as Record<string, string>;
    if (labels.purpose !== 'security-audit-archive') return;
    if (!b.retentionPolicy || Number(b.retentionPolicy.retentionPeriod) <= 0) report('a retention policy is required');
    else if (isProduction(args) && b.retentionPolicy.isLocked !== true) report('the retention policy must be locked in production');
    if (b.forceDestroy === true) report('forceDestroy must be off');
  }),
};

// ---------------------------------------------------------------- operations (issue 12)

/** Alert policies (by their `alert` user label) a production stack must have. */
export const REQUIRED_ALERT_POLICIES = [
  'auth-failures',
  'lockouts',
  'rate-limit-pressure',
  'refresh-token-reuse',
  'drain-failures',
  'archive-failures',
  'armor-denies',
  'uptime-readyz',
  'uptime-admin-audit',
];
/** The ops API's prefix. */
export const OPS_PATH_PREFIX = '/ops';

const opsConfigSchema = {
  properties: {
    ...productionConfigSchema.properties,
    requiredAlerts: { type: 'array' as const, items: { type: 'string' as const }, default: REQUIRED_ALERT_POLICIES },
  },
};

type RouteAction = { faultInjectionPolicy?: { abort?: { httpStatus?: number; percentage?: number } } };
type PathMatcher = { name?: string; defaultService?: string; defaultRouteAction?: RouteAction; pathRules?: Array<{ paths?: string[]; service?: string }> };

/** A route action answered by the load balancer itself (fault injection aborts every request). */
const answersAtEdge = (a: RouteAction | undefined): boolean =>
  (a?.faultInjectionPolicy?.abort?.percentage ?? 0) >= 100 && (a?.faultInjectionPolicy?.abort?.httpStatus ?? 0) >= 400;

const routesOps = (paths: string[] | undefined): boolean =>
  (paths ?? []).some((p) => p === OPS_PATH_PREFIX || p.startsWith(`${OPS_PATH_PREFIX}/`));

export const opsRestrictedAndAlertsInProduction: StackValidationPolicy = {
  name: 'ops-restricted-and-alerts-in-production',
  description:
    'Production stacks route /ops to a backend of its own that is restricted at the edge (IAP, or a Cloud Armor policy whose default rule denies), answer unrouted paths at the edge, and have every guardrail alert policy enabled with a notification channel.',
  enforcementLevel: 'mandatory',
  configSchema: opsConfigSchema,
  validateStack: (args, report) => {
    const first = args.resources[0];
    if (!first) return;
    const config = args.getConfig<{ productionStacks?: string[]; requiredAlerts?: string[] }>();
    if (!(config.productionStacks ?? DEFAULT_PRODUCTION_STACKS).includes(stackOfUrn(first.urn))) return;

    // /ops restricted at the edge.
    const backends = args.resources.filter((r) => r.type === 'gcp:compute/backendService:BackendService');
    const policies = args.resources.filter((r) => r.type === 'gcp:compute/securityPolicy:SecurityPolicy');
    const restricted = (be: StackResource): boolean => {
      if ((be.props.iap as { enabled?: boolean } | undefined)?.enabled === true) return true;
      const policy = policies.find((p) => refersTo(be.props.securityPolicy, p));
      const fallback = ((policy?.props.rules ?? []) as ArmorRule[]).find((r) => r.priority === 2147483647);
      return (fallback?.action ?? '').startsWith('deny') && fallback?.preview !== true;
    };
    const maps = args.resources.filter((r) => r.type === 'gcp:compute/uRLMap:URLMap' && !r.props.defaultUrlRedirect);
    if (maps.length === 0) report('no load balancer URL map serves the app: /ops cannot be restricted at the edge');
    let iap = false;
    for (const map of maps) {
      const matchers = (map.props.pathMatchers ?? []) as PathMatcher[];
      if (map.props.defaultService || !answersAtEdge(map.props.defaultRouteAction as RouteAction | undefined)) {
        report(`URL map ${map.name}: requests for other hosts reach a backend; answer them at the edge (fault-injected 404)`, map.urn);
      }
      for (const m of matchers) {
        if (m.defaultService || !answersAtEdge(m.defaultRouteAction)) {
          report(`URL map ${map.name}, path matcher ${m.name ?? '?'}: unlisted paths (including /ops) reach a backend; answer them at the edge`, map.urn);
        }
      }
      const opsRules = matchers.flatMap((m) => m.pathRules ?? []).filter((r) => routesOps(r.paths));
      if (opsRules.length === 0) report(`URL map ${map.name} has no /ops route of its own`, map.urn);
      for (const rule of opsRules) {
        if (typeof rule.service !== 'string') continue; // unknown during a first preview
        const be = backends.find((b) => refersTo(rule.service, b));
        if (!be) {
          report(`URL map ${map.name}: /ops routes to ${rule.service}, which is not a backend service of this stack`, map.urn);
          continue;
        }
        if (!restricted(be)) {
          report(`/ops reaches backend service ${be.name} without an edge restriction (neither IAP nor a default-deny Armor policy)`, be.urn);
        }
        if ((be.props.iap as { enabled?: boolean } | undefined)?.enabled === true) iap = true;
        const sharesPublic = matchers.some((m) => (m.pathRules ?? []).some((r) => !routesOps(r.paths) && refersTo(r.service, be)));
        if (sharesPublic) report(`backend service ${be.name} serves /ops and public paths; give /ops a backend of its own`, be.urn);
      }
    }

    // The guardrail alerts, enabled and routed to someone.
    const alerts = args.resources.filter((r) => r.type === 'gcp:monitoring/alertPolicy:AlertPolicy');
    const required = (config.requiredAlerts ?? REQUIRED_ALERT_POLICIES).filter((k) => !(iap && k === 'uptime-admin-audit'));
    for (const key of required) {
      const alert = alerts.find((a) => (a.props.userLabels as Record<string, string> | undefined)?.alert === key);
      if (!alert) {
        report(`no alert policy "${key}" (user label alert=${key}) in a production stack`);
        continue;
      }
      if (alert.props.enabled === false) report(`alert policy "${key}" is disabled`, alert.urn);
      if (((alert.props.notificationChannels as unknown[] | undefined) ?? []).length === 0) {
        report(`alert policy "${key}" notifies nobody (no notification channel)`, alert.urn);
      }
    }
  },
};

/** Every policy of the pack, in a stable order. */
export const policies: Policy[] = [
  cloudRunBehindLoadBalancer,
  cloudRunSecretsByPinnedReference,
  cloudRunContainerContract,
  cloudRunImageByDigest,
  cloudRunJobHardened,
  cloudSqlPrivateEncrypted,
  cloudSqlRecoverableAndAudited,
  cloudSqlDeletionProtectionInProduction,
  armorBaseline,
  backendServiceArmorAndLogging,
  tlsPolicyModern,
  httpsProxyHasSslPolicy,
  httpOnlyRedirects,
  armorOnEveryBackend,
  wifProviderPinned,
  noServiceAccountKeys,
  iamNoPublicOrWildcard,
  secretAccessorRuntimeOnly,
  bucketNotPublic,
  auditArchiveRetention,
  opsRestrictedAndAlertsInProduction,
];
