/**
 * Each policy of the pack, called directly (no PolicyPack, no CLI) with a
 * compliant and a violating resource.
 */
import test, { type ExecutionContext } from 'ava';
import type { ResourceValidationPolicy, StackValidationPolicy } from '@pulumi/policy';
import { NotApplicable, resourceArgs, stackArgs, type PolicyInput } from '../../infra/policy/evaluate.js';
import * as P from '../../infra/policy/policies.js';

const clone = <V>(v: V): V => structuredClone(v);

/** Runs a resource policy on one resource; returns the violations (or 'n/a'). */
async function check(policy: ResourceValidationPolicy, type: string, props: Record<string, unknown>, stack = 'staging'): Promise<string[] | 'n/a'> {
  const violations: string[] = [];
  const validate = policy.validateResource;
  const fns = Array.isArray(validate) ? validate : [validate];
  try {
    for (const fn of fns) if (fn) await fn(resourceArgs({ type, name: 'r', props }, stack), (m) => violations.push(m));
  } catch (err) {
    if (err instanceof NotApplicable) return 'n/a';
    throw err;
  }
  return violations;
}

async function checkStack(policy: StackValidationPolicy, resources: PolicyInput[], stack = 'staging', config: object = {}): Promise<string[]> {
  const violations: string[] = [];
  await policy.validateStack(stackArgs(resources, stack, config), (m) => violations.push(m));
  return violations;
}

async function compliantAndViolating(
  t: ExecutionContext,
  policy: ResourceValidationPolicy,
  type: string,
  good: Record<string, unknown>,
  bad: Array<[string, (p: Record<string, unknown>) => void, RegExp]>,
  stack = 'staging',
): Promise<void> {
  t.deepEqual(await check(policy, type, good, stack), [], `${policy.name}: compliant resource passes`);
  for (const [label, mutate, expected] of bad) {
    const props = clone(good);
    mutate(props);
    const v = await check(policy, type, props, stack);
    t.true(Array.isArray(v) && v.some((m) => expected.test(m)), `${policy.name} / ${label}: got ${JSON.stringify(v)}`);
  }
}

const PINNED = (s: string, n = 3) => `projects/karaxas-prod/secrets/${s}/versions/${n}`;
const cloudRun = () => ({
  ingress: 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER',
  defaultUriDisabled: true,
  template: {
    serviceAccount: 'run@p.iam.gserviceaccount.com',
    containers: [
      {
        image: `europe-west1-docker.pkg.dev/p/r/karaxas-api@sha256:${'c'.repeat(64)}`,
        ports: { containerPort: 8080 },
        startupProbe: { httpGet: { path: '/readyz' } },
        livenessProbe: { httpGet: { path: '/healthz' } },
        envs: [
          { name: 'NODE_ENV', value: 'production' },
          { name: 'DB_SSLMODE', value: 'require' },
          { name: 'TRUST_PROXY', value: 'true' },
          { name: 'JWT_SECRET_SECRET_REF', value: PINNED('jwt') },
          { name: 'OPS_API_TOKEN_SECRET_REF', value: PINNED('ops') },
          { name: 'DB_PASSWORD_SECRET_REF', value: PINNED('db') },
          { name: 'TOTP_ENCRYPTION_KEY_SECRET_REF', value: PINNED('totp') },
        ],
      },
    ],
  },
});
type Envs = Array<{ name: string; value?: string; valueSource?: unknown }>;
const envs = (p: Record<string, unknown>) => (p as ReturnType<typeof cloudRun>).template.containers[0]!.envs as Envs;
const container = (p: Record<string, unknown>) => (p as ReturnType<typeof cloudRun>).template.containers[0]! as Record<string, unknown>;
const CR = 'gcp:cloudrunv2/service:Service';

test('cloud-run-behind-load-balancer', async (t) => {
  await compliantAndViolating(t, P.cloudRunBehindLoadBalancer, CR, cloudRun(), [
    ['ingress all', (p) => (p.ingress = 'INGRESS_TRAFFIC_ALL'), /must be INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER/],
    ['ingress unset', (p) => delete p.ingress, /unset/],
    ['run.app URL on', (p) => (p.defaultUriDisabled = false), /defaultUriDisabled must be true/],
  ]);
  t.is(await check(P.cloudRunBehindLoadBalancer, 'gcp:storage/bucket:Bucket', {}), 'n/a', 'other types are not applicable');
});

test('cloud-run-secrets-by-pinned-reference', async (t) => {
  await compliantAndViolating(t, P.cloudRunSecretsByPinnedReference, CR, cloudRun(), [
    ['plain JWT_SECRET', (p) => envs(p).push({ name: 'JWT_SECRET', value: 'x' }), /JWT_SECRET carries a secret/],
    ['DATABASE_URL', (p) => envs(p).push({ name: 'DATABASE_URL', value: 'postgres://u:pw@h/db' }), /DATABASE_URL carries a secret/],
    ['ALLOW_PLAIN_ENV_SECRETS', (p) => envs(p).push({ name: 'ALLOW_PLAIN_ENV_SECRETS', value: 'true' }), /ALLOW_PLAIN_ENV_SECRETS must not be set/],
    ['latest', (p) => (envs(p)[3]!.value = 'projects/p/secrets/jwt/versions/latest'), /JWT_SECRET_SECRET_REF=.*never latest/],
    ['missing ref', (p) => envs(p).splice(4, 1), /env OPS_API_TOKEN_SECRET_REF is missing/],
    [
      'native secret at latest',
      (p) => envs(p).push({ name: 'X', valueSource: { secretKeyRef: { secret: 's', version: 'latest' } } }),
      /at version latest; pin a number/,
    ],
  ]);
});

test('cloud-run-container-contract', async (t) => {
  await compliantAndViolating(t, P.cloudRunContainerContract, CR, cloudRun(), [
    ['NODE_ENV development', (p) => (envs(p)[0]!.value = 'development'), /NODE_ENV must be production/],
    ['DB_SSLMODE disable', (p) => (envs(p)[1]!.value = 'disable'), /DB_SSLMODE=disable/],
    ['no TRUST_PROXY', (p) => envs(p).splice(2, 1), /TRUST_PROXY must be true/],
    ['port 3000', (p) => (container(p).ports = { containerPort: 3000 }), /listens on 8080/],
    ['no startup probe', (p) => delete container(p).startupProbe, /startup probe must be GET \/readyz/],
    ['liveness elsewhere', (p) => (container(p).livenessProbe = { httpGet: { path: '/' } }), /liveness probe must be GET \/healthz/],
  ]);
});

test('cloud-run-image-by-digest', async (t) => {
  await compliantAndViolating(t, P.cloudRunImageByDigest, CR, cloudRun(), [
    ['tag', (p) => (container(p).image = 'europe-west1-docker.pkg.dev/p/r/karaxas-api:latest'), /not pinned by digest/],
  ]);
});

const SQL = 'gcp:sql/databaseInstance:DatabaseInstance';
const sql = () => ({
  databaseVersion: 'POSTGRES_17',
  deletionProtection: true,
  settings: {
    deletionProtectionEnabled: true,
    ipConfiguration: { ipv4Enabled: false, privateNetwork: 'projects/p/global/networks/vpc', sslMode: 'ENCRYPTED_ONLY', authorizedNetworks: [] },
    backupConfiguration: { enabled: true, pointInTimeRecoveryEnabled: true },
    databaseFlags: [
      { name: 'log_connections', value: 'on' },
      { name: 'log_disconnections', value: 'on' },
    ],
  },
});
type Sql = ReturnType<typeof sql>;

test('cloud-sql-private-and-encrypted', async (t) => {
  await compliantAndViolating(t, P.cloudSqlPrivateEncrypted, SQL, sql(), [
    ['public IP', (p) => ((p as Sql).settings.ipConfiguration.ipv4Enabled = true), /ipv4Enabled must be false/],
    ['no private network', (p) => ((p as Sql).settings.ipConfiguration.privateNetwork = ''), /privateNetwork must be set/],
    [
      'authorized network',
      (p) => ((p as Sql).settings.ipConfiguration.authorizedNetworks = [{ value: '0.0.0.0/0' }] as never),
      /authorizedNetworks must be empty/,
    ],
    ['unencrypted allowed', (p) => ((p as Sql).settings.ipConfiguration.sslMode = 'ALLOW_UNENCRYPTED_AND_ENCRYPTED'), /sslMode is ALLOW_UNENCRYPTED/],
  ]);
  const certs = sql();
  certs.settings.ipConfiguration.sslMode = 'TRUSTED_CLIENT_CERTIFICATE_REQUIRED';
  t.deepEqual(await check(P.cloudSqlPrivateEncrypted, SQL, certs), []);
});

test('cloud-sql-recoverable-and-audited', async (t) => {
  await compliantAndViolating(t, P.cloudSqlRecoverableAndAudited, SQL, sql(), [
    ['PG 16', (p) => (p.databaseVersion = 'POSTGRES_16'), /POSTGRES_17 or newer/],
    ['no backups', (p) => ((p as Sql).settings.backupConfiguration.enabled = false), /backups must be enabled/],
    ['no PITR', (p) => ((p as Sql).settings.backupConfiguration.pointInTimeRecoveryEnabled = false), /point-in-time recovery/],
    ['no connection logs', (p) => ((p as Sql).settings.databaseFlags = []), /log_connections must be on/],
  ]);
});

test('cloud-sql-deletion-protection-in-production (prod only)', async (t) => {
  await compliantAndViolating(
    t,
    P.cloudSqlDeletionProtectionInProduction,
    SQL,
    sql(),
    [
      ['terraform-level off', (p) => (p.deletionProtection = false), /deletionProtection must be true/],
      ['API-level off', (p) => ((p as Sql).settings.deletionProtectionEnabled = false), /deletionProtectionEnabled must be true/],
    ],
    'prod',
  );
  const off = sql();
  off.deletionProtection = false;
  off.settings.deletionProtectionEnabled = false;
  t.deepEqual(await check(P.cloudSqlDeletionProtectionInProduction, SQL, off, 'staging'), [], 'staging may turn it off');
});

const ARMOR = 'gcp:compute/securityPolicy:SecurityPolicy';
const armor = () => ({
  type: 'CLOUD_ARMOR',
  advancedOptionsConfig: { jsonParsing: 'STANDARD' },
  adaptiveProtectionConfig: { layer7DdosDefenseConfig: { enable: true } },
  rules: [
    ...P.REQUIRED_WAF_RULE_SETS.map((set, i) => ({
      action: 'deny(403)',
      priority: 1000 + i,
      preview: set === 'nodejs',
      match: { expr: { expression: `evaluatePreconfiguredWaf('${set}-v33-stable', {'sensitivity': 1})` } },
    })),
    {
      action: 'rate_based_ban',
      priority: 3000,
      match: { expr: { expression: "request.path.startsWith('/auth/')" } },
      rateLimitOptions: { enforceOnKey: 'IP', rateLimitThreshold: { count: 100, intervalSec: 60 } },
    },
    { action: 'allow', priority: 2147483647, match: { versionedExpr: 'SRC_IPS_V1', config: { srcIpRanges: ['*'] } } },
  ],
});
type ArmorRule = {
  action: string;
  priority: number;
  preview?: boolean;
  rateLimitOptions?: { enforceOnKey?: string };
};
type Armor = { advancedOptionsConfig: { jsonParsing: string }; adaptiveProtectionConfig: { layer7DdosDefenseConfig: { enable: boolean } }; rules: ArmorRule[] };
const rule = (p: Record<string, unknown>, pred: (r: ArmorRule) => boolean) => (p as unknown as Armor).rules.find(pred)!;

test('cloud-armor-baseline', async (t) => {
  await compliantAndViolating(t, P.armorBaseline, ARMOR, armor(), [
    ['JSON parsing off', (p) => ((p as unknown as Armor).advancedOptionsConfig.jsonParsing = 'DISABLED'), /jsonParsing must be STANDARD/],
    ['no adaptive protection', (p) => ((p as unknown as Armor).adaptiveProtectionConfig.layer7DdosDefenseConfig.enable = false), /Adaptive Protection/],
    ['missing sqli', (p) => ((p as unknown as Armor).rules = (p as unknown as Armor).rules.filter((r) => !JSON.stringify(r).includes('sqli'))), /sqli OWASP CRS/],
    ['xss only logged', (p) => (rule(p, (r) => JSON.stringify(r).includes("'xss-")).preview = true), /xss rule must not be in preview/],
    ['rce allowed', (p) => (rule(p, (r) => JSON.stringify(r).includes("'rce-")).action = 'allow'), /rce rule must deny/],
    ['no auth ban', (p) => ((p as unknown as Armor).rules = (p as unknown as Armor).rules.filter((r) => r.action !== 'rate_based_ban')), /no rate_based_ban rule on \/auth/],
    ['ban per everyone', (p) => (rule(p, (r) => r.action === 'rate_based_ban').rateLimitOptions!.enforceOnKey = 'ALL'), /enforced per IP/],
    ['no default rule', (p) => ((p as unknown as Armor).rules = (p as unknown as Armor).rules.filter((r) => r.priority !== 2147483647)), /default rule/],
  ]);
});

const BE = 'gcp:compute/backendService:BackendService';
test('backend-service-armor-and-logging', async (t) => {
  await compliantAndViolating(
    t,
    P.backendServiceArmorAndLogging,
    BE,
    { loadBalancingScheme: 'EXTERNAL_MANAGED', securityPolicy: 'projects/p/global/securityPolicies/karaxas-backend-policy', logConfig: { enable: true } },
    [
      ['no armor', (p) => delete p.securityPolicy, /no Cloud Armor policy/],
      ['no logging', (p) => (p.logConfig = { enable: false }), /logConfig.enable/],
      ['classic LB', (p) => (p.loadBalancingScheme = 'EXTERNAL'), /EXTERNAL_MANAGED/],
    ],
  );
});

test('ssl-policy-tls12-modern', async (t) => {
  await compliantAndViolating(t, P.tlsPolicyModern, 'gcp:compute/sSLPolicy:SSLPolicy', { profile: 'MODERN', minTlsVersion: 'TLS_1_2' }, [
    ['compatible', (p) => (p.profile = 'COMPATIBLE'), /use MODERN or RESTRICTED/],
    ['TLS 1.0', (p) => (p.minTlsVersion = 'TLS_1_0'), /TLS_1_2 or newer/],
    [
      'defaults',
      (p) => {
        delete p.profile;
        delete p.minTlsVersion;
      },
      /TLS_1_0/,
    ],
  ]);
});

test('https-proxy-has-ssl-policy', async (t) => {
  await compliantAndViolating(
    t,
    P.httpsProxyHasSslPolicy,
    'gcp:compute/targetHttpsProxy:TargetHttpsProxy',
    { urlMap: 'm', sslPolicy: 'projects/p/global/sslPolicies/s', sslCertificates: ['c'] },
    [
      ['no SSL policy', (p) => delete p.sslPolicy, /sslPolicy is not set/],
      ['no certificate', (p) => (p.sslCertificates = []), /no certificate/],
    ],
  );
});

const map = (name: string, props: Record<string, unknown>): PolicyInput => ({
  type: 'gcp:compute/uRLMap:URLMap',
  name,
  props: { name, id: `projects/p/global/urlMaps/${name}`, ...props },
});
const httpProxy = (urlMap: string): PolicyInput => ({ type: 'gcp:compute/targetHttpProxy:TargetHttpProxy', name: 'http-proxy', props: { urlMap } });

test('http-only-redirects-to-https (stack policy)', async (t) => {
  const redirect = map('redirect', { defaultUrlRedirect: { httpsRedirect: true, stripQuery: false } });
  const serving = map('main', { defaultService: 'projects/p/global/backendServices/be' });
  t.deepEqual(await checkStack(P.httpOnlyRedirects, [redirect, serving, httpProxy('projects/p/global/urlMaps/redirect')]), []);
  const bad = await checkStack(P.httpOnlyRedirects, [redirect, serving, httpProxy('projects/p/global/urlMaps/main')]);
  t.true(bad.some((m) => /serves content/.test(m)), JSON.stringify(bad));
  const missing = await checkStack(P.httpOnlyRedirects, [serving, httpProxy('projects/p/global/urlMaps/elsewhere')]);
  t.true(missing.some((m) => /not found in the stack/.test(m)));
});

test('cloud-armor-on-every-backend (stack policy)', async (t) => {
  const policy: PolicyInput = {
    type: 'gcp:compute/securityPolicy:SecurityPolicy',
    name: 'armor',
    props: { name: 'karaxas-backend-policy', selfLink: 'https://www.googleapis.com/compute/v1/projects/p/global/securityPolicies/karaxas-backend-policy' },
  };
  const be = (securityPolicy?: string): PolicyInput => ({ type: BE, name: 'be', props: { securityPolicy } });
  t.deepEqual(await checkStack(P.armorOnEveryBackend, [policy, be(String(policy.props.selfLink))]), []);
  t.true((await checkStack(P.armorOnEveryBackend, [policy, be(undefined)])).length === 1);
  t.true((await checkStack(P.armorOnEveryBackend, [policy, be('projects/p/global/securityPolicies/someone-elses')])).length === 1);
});

const WIF = 'gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider';
test('wif-provider-pins-repository', async (t) => {
  await compliantAndViolating(
    t,
    P.wifProviderPinned,
    WIF,
    {
      attributeCondition: "assertion.repository_id == '812345678' && assertion.repository_owner_id == '198765432'",
      oidc: { issuerUri: 'https://token.actions.githubusercontent.com' },
    },
    [
      ['no condition', (p) => delete p.attributeCondition, /must pin assertion.repository_id/],
      ['by name', (p) => (p.attributeCondition = "assertion.repository == 'karaxas-games/karaxas-backend'"), /numeric id/],
      ['alternative', (p) => (p.attributeCondition = "assertion.repository_id == '1' || true"), /alternatives/],
      ['other issuer', (p) => (p.oidc = { issuerUri: 'https://gitlab.com' }), /issuer must be GitHub Actions/],
    ],
  );
});

test('no-service-account-keys', async (t) => {
  t.deepEqual(await check(P.noServiceAccountKeys, 'gcp:serviceaccount/account:Account', { accountId: 'x' }), []);
  t.deepEqual(await check(P.noServiceAccountKeys, 'gcp:serviceaccount/key:Key', { serviceAccountId: 'x' }), [
    'service-account key resources are forbidden; use Workload Identity Federation',
  ]);
});

test('iam-no-public-or-wildcard-members', async (t) => {
  const pool = 'principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p';
  const cases: Array<[string, Record<string, unknown>, RegExp | null]> = [
    ['gcp:projects/iAMMember:IAMMember', { role: 'roles/viewer', member: 'serviceAccount:a@p.iam.gserviceaccount.com' }, null],
    ['gcp:serviceaccount/iAMMember:IAMMember', { role: 'roles/iam.workloadIdentityUser', member: `${pool}/attribute.deploy_gate/environment-production` }, null],
    ['gcp:serviceaccount/iAMMember:IAMMember', { role: 'roles/iam.workloadIdentityUser', member: `${pool}/*` }, /whole pool/],
    ['gcp:serviceaccount/iAMMember:IAMMember', { role: 'roles/iam.workloadIdentityUser', member: pool }, /not narrowed/],
    ['gcp:storage/bucketIAMMember:BucketIAMMember', { role: 'roles/storage.objectViewer', member: 'allUsers' }, /allUsers is public/],
    ['gcp:cloudrunv2/serviceIamMember:ServiceIamMember', { role: 'roles/run.invoker', member: 'allAuthenticatedUsers' }, /public/],
    ['gcp:projects/iAMMember:IAMMember', { role: 'roles/owner', member: 'serviceAccount:a@p.iam.gserviceaccount.com' }, /basic role roles\/owner/],
    ['gcp:projects/iAMBinding:IAMBinding', { role: 'roles/viewer', members: ['user:a@example.com', 'allUsers'] }, /allUsers/],
  ];
  for (const [type, props, expected] of cases) {
    const v = await check(P.iamNoPublicOrWildcard, type, props);
    if (expected === null) t.deepEqual(v, [], `${type} ${JSON.stringify(props)}`);
    else t.true(Array.isArray(v) && v.some((m) => expected.test(m)), `${type}: ${JSON.stringify(v)}`);
  }
});

test('secret-accessor-runtime-only (stack policy)', async (t) => {
  const run: PolicyInput = { type: CR, name: 'api', props: { template: { serviceAccount: 'run@p.iam.gserviceaccount.com' } } };
  const grant = (member: string, type = 'gcp:secretmanager/secretIamMember:SecretIamMember'): PolicyInput => ({
    type,
    name: 'grant',
    props: { role: 'roles/secretmanager.secretAccessor', member, secretId: 's' },
  });
  t.deepEqual(await checkStack(P.secretAccessorRuntimeOnly, [run, grant('serviceAccount:run@p.iam.gserviceaccount.com')]), []);
  const other = await checkStack(P.secretAccessorRuntimeOnly, [run, grant('serviceAccount:deploy@p.iam.gserviceaccount.com')]);
  t.regex(other[0] ?? '', /which no Cloud Run service or job runs as/);
  // A Cloud Run job's own account (the archive job) may read its secret too.
  const job: PolicyInput = { type: JOB, name: 'archive', props: { template: { template: { serviceAccount: 'archive@p.iam.gserviceaccount.com' } } } };
  t.deepEqual(await checkStack(P.secretAccessorRuntimeOnly, [run, job, grant('serviceAccount:archive@p.iam.gserviceaccount.com')]), []);
  const projectWide = await checkStack(P.secretAccessorRuntimeOnly, [run, grant('serviceAccount:run@p.iam.gserviceaccount.com', 'gcp:projects/iAMMember:IAMMember')]);
  t.regex(projectWide[0] ?? '', /grant secretAccessor on one secret/);
});

const JOB = 'gcp:cloudrunv2/job:Job';
const archiveJob = () => ({
  template: {
    template: {
      serviceAccount: 'archive@p.iam.gserviceaccount.com',
      containers: [
        {
          image: `europe-west1-docker.pkg.dev/p/r/karaxas-api@sha256:${'d'.repeat(64)}`,
          envs: [
            { name: 'DB_SSLMODE', value: 'require' },
            { name: 'DB_PASSWORD_SECRET_REF', value: PINNED('db') },
          ],
        },
      ],
    },
  },
});
type JobShape = ReturnType<typeof archiveJob>;
const jobContainer = (p: Record<string, unknown>) => (p as JobShape).template.template.containers[0]! as { image: string; envs: Envs };

test('cloud-run-job-hardened', async (t) => {
  await compliantAndViolating(t, P.cloudRunJobHardened, JOB, archiveJob(), [
    ['image by tag', (p) => (jobContainer(p).image = 'europe-west1-docker.pkg.dev/p/r/karaxas-api:latest'), /not pinned by digest/],
    ['plain password', (p) => jobContainer(p).envs.push({ name: 'DB_PASSWORD', value: 'x' }), /DB_PASSWORD carries a secret in plain text/],
    ['latest ref', (p) => (jobContainer(p).envs[1]!.value = 'projects/p/secrets/db/versions/latest'), /must be projects\/P\/secrets\/S\/versions\/N/],
    ['no TLS', (p) => (jobContainer(p).envs[0]!.value = 'disable'), /DB_SSLMODE=disable/],
    ['plain-secret switch', (p) => jobContainer(p).envs.push({ name: 'ALLOW_PLAIN_ENV_SECRETS', value: 'true' }), /must not be set/],
    ['default account', (p) => delete (p as { template: { template: { serviceAccount?: string } } }).template.template.serviceAccount, /dedicated service account/],
  ]);
});

/** A production stack's load balancer and alerts as the program builds them (compliant). */
function opsStack(): PolicyInput[] {
  const policy = (name: string, fallback: string): PolicyInput => ({
    type: 'gcp:compute/securityPolicy:SecurityPolicy',
    name,
    props: { name, selfLink: `https://www.googleapis.com/compute/v1/projects/p/global/securityPolicies/${name}`, rules: [{ priority: 2147483647, action: fallback }] },
  });
  const backend = (name: string, policyName: string): PolicyInput => ({
    type: 'gcp:compute/backendService:BackendService',
    name,
    props: { id: `projects/p/global/backendServices/${name}`, securityPolicy: `https://www.googleapis.com/compute/v1/projects/p/global/securityPolicies/${policyName}` },
  });
  const notFound = (svc: string) => ({ weightedBackendServices: [{ backendService: svc, weight: 100 }], faultInjectionPolicy: { abort: { httpStatus: 404, percentage: 100 } } });
  const api = 'projects/p/global/backendServices/api';
  const ops = 'projects/p/global/backendServices/ops';
  return [
    policy('edge', 'allow'),
    policy('edge-ops', 'deny(403)'),
    backend('api', 'edge'),
    backend('ops', 'edge-ops'),
    {
      type: 'gcp:compute/uRLMap:URLMap',
      name: 'urlmap',
      props: {
        defaultRouteAction: notFound(api),
        hostRules: [{ hosts: ['api.example.com'], pathMatcher: 'app' }],
        pathMatchers: [
          {
            name: 'app',
            defaultRouteAction: notFound(api),
            pathRules: [
              { paths: ['/auth', '/auth/*'], service: api },
              { paths: ['/ops', '/ops/*'], service: ops },
            ],
          },
        ],
      },
    },
    { type: 'gcp:compute/uRLMap:URLMap', name: 'redirect', props: { defaultUrlRedirect: { httpsRedirect: true } } },
    ...P.REQUIRED_ALERT_POLICIES.map(
      (key): PolicyInput => ({
        type: 'gcp:monitoring/alertPolicy:AlertPolicy',
        name: `alert-${key}`,
        props: { enabled: true, notificationChannels: ['projects/p/notificationChannels/1'], userLabels: { alert: key } },
      }),
    ),
  ];
}
const edit = (stack: PolicyInput[], name: string, mutate: (props: Record<string, unknown>) => void): PolicyInput[] =>
  stack.map((r) => (r.name === name ? { ...r, props: (() => { const p = clone(r.props); mutate(p); return p; })() } : r));

test('ops-restricted-and-alerts-in-production (stack policy)', async (t) => {
  const policy = P.opsRestrictedAndAlertsInProduction;
  t.deepEqual(await checkStack(policy, opsStack(), 'prod'), [], 'the compliant production stack passes');

  // /ops open at the edge: the ops backend's policy allows by default.
  const open = await checkStack(policy, edit(opsStack(), 'edge-ops', (p) => ((p.rules as Array<{ action: string }>)[0]!.action = 'allow')), 'prod');
  t.true(open.some((m) => /\/ops reaches backend service ops without an edge restriction/.test(m)), JSON.stringify(open));
  // ... unless IAP guards it.
  const iap = edit(edit(opsStack(), 'edge-ops', (p) => ((p.rules as Array<{ action: string }>)[0]!.action = 'allow')), 'ops', (p) => (p.iap = { enabled: true }));
  const iapViolations = await checkStack(policy, iap.filter((r) => r.name !== 'alert-uptime-admin-audit'), 'prod');
  t.deepEqual(iapViolations, [], 'IAP is a restriction, and then no admin-audit uptime check is required');

  // Without an /ops route of its own the restriction is gone, even if /ops would fall to the 404 default.
  const noRoute = edit(opsStack(), 'urlmap', (p) => {
    const pm = (p.pathMatchers as Array<{ pathRules: unknown[] }>)[0]!;
    pm.pathRules = pm.pathRules.slice(0, 1);
  });
  t.true((await checkStack(policy, noRoute, 'prod')).some((m) => /has no \/ops route of its own/.test(m)));
  // Unlisted paths reaching a backend (a defaultService) are flagged.
  const catchAll = edit(opsStack(), 'urlmap', (p) => {
    const pm = (p.pathMatchers as Array<Record<string, unknown>>)[0]!;
    delete pm.defaultRouteAction;
    pm.defaultService = 'projects/p/global/backendServices/api';
  });
  t.true((await checkStack(policy, catchAll, 'prod')).some((m) => /unlisted paths \(including \/ops\) reach a backend/.test(m)));
  // /ops sharing the public backend.
  const shared = edit(opsStack(), 'urlmap', (p) => {
    const rules = (p.pathMatchers as Array<{ pathRules: Array<{ service: string }> }>)[0]!.pathRules;
    rules[0]!.service = 'projects/p/global/backendServices/ops';
  });
  t.true((await checkStack(policy, shared, 'prod')).some((m) => /serves \/ops and public paths/.test(m)));

  // Alerts: missing, disabled, notifying nobody.
  const missing = await checkStack(policy, opsStack().filter((r) => r.name !== 'alert-refresh-token-reuse'), 'prod');
  t.deepEqual(missing, ['no alert policy "refresh-token-reuse" (user label alert=refresh-token-reuse) in a production stack']);
  const disabled = await checkStack(policy, edit(opsStack(), 'alert-lockouts', (p) => (p.enabled = false)), 'prod');
  t.deepEqual(disabled, ['alert policy "lockouts" is disabled']);
  const silent = await checkStack(policy, edit(opsStack(), 'alert-drain-failures', (p) => (p.notificationChannels = [])), 'prod');
  t.deepEqual(silent, ['alert policy "drain-failures" notifies nobody (no notification channel)']);

  // Staging is out of scope (its /ops is open for CI); the pack's config decides what production is.
  const bare = opsStack().filter((r) => !r.type.includes('alertPolicy'));
  t.deepEqual(await checkStack(policy, bare, 'staging'), []);
  t.true((await checkStack(policy, bare, 'staging', { productionStacks: ['staging'] })).length > 0);
});

const BUCKET = 'gcp:storage/bucket:Bucket';
const bucket = () => ({
  publicAccessPrevention: 'enforced',
  uniformBucketLevelAccess: true,
  forceDestroy: false,
  labels: { purpose: 'security-audit-archive' },
  retentionPolicy: { retentionPeriod: String(400 * 86400), isLocked: true },
});

test('bucket-not-public', async (t) => {
  await compliantAndViolating(t, P.bucketNotPublic, BUCKET, bucket(), [
    ['inherited PAP', (p) => (p.publicAccessPrevention = 'inherited'), /publicAccessPrevention must be enforced/],
    ['ACLs', (p) => (p.uniformBucketLevelAccess = false), /uniformBucketLevelAccess/],
  ]);
});

test('audit-archive-retention', async (t) => {
  await compliantAndViolating(
    t,
    P.auditArchiveRetention,
    BUCKET,
    bucket(),
    [
      ['no retention', (p) => delete p.retentionPolicy, /retention policy is required/],
      ['unlocked in prod', (p) => ((p.retentionPolicy as { isLocked: boolean }).isLocked = false), /locked in production/],
      ['force destroy', (p) => (p.forceDestroy = true), /forceDestroy/],
    ],
    'prod',
  );
  const unlocked = bucket();
  unlocked.retentionPolicy.isLocked = false;
  t.deepEqual(await check(P.auditArchiveRetention, BUCKET, unlocked, 'staging'), [], 'staging may keep it unlocked');
  t.deepEqual(await check(P.auditArchiveRetention, BUCKET, { ...bucket(), labels: {}, retentionPolicy: undefined }), [], 'other buckets are out of scope');
});

test('every policy of the pack has a unit test here, is mandatory and uniquely named', (t) => {
  const tested = new Set([
    'cloud-run-behind-load-balancer',
    'cloud-run-secrets-by-pinned-reference',
    'cloud-run-container-contract',
    'cloud-run-image-by-digest',
    'cloud-run-job-hardened',
    'cloud-sql-private-and-encrypted',
    'cloud-sql-recoverable-and-audited',
    'cloud-sql-deletion-protection-in-production',
    'cloud-armor-baseline',
    'backend-service-armor-and-logging',
    'ssl-policy-tls12-modern',
    'https-proxy-has-ssl-policy',
    'http-only-redirects-to-https',
    'cloud-armor-on-every-backend',
    'wif-provider-pins-repository',
    'no-service-account-keys',
    'iam-no-public-or-wildcard-members',
    'secret-accessor-runtime-only',
    'bucket-not-public',
    'audit-archive-retention',
    'ops-restricted-and-alerts-in-production',
  ]);
  const names = P.policies.map((p) => p.name);
  t.deepEqual(new Set(names), tested);
  t.is(new Set(names).size, names.length);
  for (const p of P.policies) t.is(p.enforcementLevel, 'mandatory', p.name);
});

test('stackOfUrn reads the stack from a URN', (t) => {
  t.is(P.stackOfUrn('urn:pulumi:prod::karaxas-backend::gcp:sql/databaseInstance:DatabaseInstance::db'), 'prod');
});
