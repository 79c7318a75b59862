/**
 * The invariants of issue 7's "Done when" list, asserted on the resources the
 * whole program registers under mocks for one stack. Registered by
 * staging.test.ts and prod.test.ts (one process each: mocks and config are set
 * before the program is imported).
 */
import type { TestFn } from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { runOffline, type OfflineRunResult } from '../../infra/offline/run.js';
import { evaluatePolicies } from '../../infra/policy/evaluate.js';
import { policies } from '../../infra/policy/policies.js';
import { ALERT_EVENT_TYPES } from '../../infra/components/monitoring.js';
import { EDGE_NOT_FOUND_STATUS } from '../../infra/components/edge.js';
import { MOCK_UPTIME_CHECK_IPS } from '../../infra/offline/mocks.js';
import { ROOT, T, TEST_IMAGE, armorRules, cloudRunEnv, get, named, ofType, only, ruleKey, type ArmorRuleShape, type Res } from './helpers.js';

type StackFile = Record<string, unknown>;

export function readStackFile(stack: string): StackFile {
  const doc = YAML.parse(readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), 'utf8')) as { config: StackFile };
  return doc.config;
}

const cfg = (file: StackFile, key: string): unknown => {
  const [head, ...rest] = key.split('.');
  const value = file[`karaxas-backend:${head}`];
  return rest.length ? get(value, rest.join('.')) : value;
};

/** The alert policies every stack has (`alert` user label). */
const REQUIRED_ALERTS = [
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

const PINNED = /^projects\/[^/]+\/secrets\/[^/]+\/versions\/\d+$/;
const WAF_SETS = ['sqli', 'xss', 'lfi', 'rfi', 'rce', 'scannerdetection', 'protocolattack', 'sessionfixation', 'methodenforcement', 'nodejs'];

/** The public routes of the URL map (contract §2–§7); everything else is answered at the edge. */
export const PUBLIC_ROUTES = [
  ['/auth', '/auth/*'],
  ['/ws', '/ws/*'],
  ['/chat', '/chat/*'],
  ['/release', '/release/*'],
  ['/healthz', '/readyz', '/openapi.json'],
];

export function stackInvariants(test: TestFn, stack: 'staging' | 'prod'): void {
  const file = readStackFile(stack);
  const isProd = stack === 'prod';
  let run: OfflineRunResult;
  let rs: Res[];

  test.before(async () => {
    run = await runOffline({ stack, overrides: { 'karaxas-backend:image': TEST_IMAGE } });
    rs = run.resources;
  });

  test(`${stack}: the whole program registers the expected components and resources`, (t) => {
    const components = rs.filter((r) => r.type.startsWith('karaxas:infra:')).map((r) => r.type.split(':')[2]);
    for (const c of ['Network', 'Database', 'Secrets', 'Service', 'Edge', 'Armor', 'CiIdentity', 'AuditArchive', 'ArchiveJob', 'Monitoring']) {
      t.true(components.includes(c), `component ${c}`);
    }
    t.is(ofType(rs, T.cloudRun).length, 1);
    t.is(ofType(rs, T.sqlInstance).length, 1);
    t.true(rs.filter((r) => !r.type.startsWith('karaxas:')).length > 60);
    t.is(run.outputs.url, `https://${(cfg(file, 'domains') as string[])[0]}`);
  });

  test(`${stack}: Cloud SQL is PostgreSQL 17+, private IP only, SSL required, PITR, connection logging`, (t) => {
    const db = only(rs, T.sqlInstance).inputs;
    t.regex(String(db.databaseVersion), /^POSTGRES_(1[7-9]|[2-9]\d)$/);
    t.is(get(db, 'settings.ipConfiguration.ipv4Enabled'), false);
    t.truthy(get(db, 'settings.ipConfiguration.privateNetwork'));
    t.deepEqual(get(db, 'settings.ipConfiguration.authorizedNetworks') ?? [], []);
    t.is(get(db, 'settings.ipConfiguration.sslMode'), 'ENCRYPTED_ONLY');
    t.is(get(db, 'settings.backupConfiguration.enabled'), true);
    t.is(get(db, 'settings.backupConfiguration.pointInTimeRecoveryEnabled'), true);
    t.is(get(db, 'settings.tier'), cfg(file, 'database.tier'));
    const flags = Object.fromEntries(
      (get(db, 'settings.databaseFlags') as Array<{ name: string; value: string }>).map((f) => [f.name, f.value]),
    );
    t.is(flags.log_connections, 'on');
    t.is(flags.log_disconnections, 'on');
    // The private services connection exists for the private IP.
    t.is(ofType(rs, 'gcp:servicenetworking/connection:Connection').length, 1);
  });

  test(`${stack}: deletion protection of the database is ${isProd ? 'on (both flags)' : 'as configured'}`, (t) => {
    const db = only(rs, T.sqlInstance).inputs;
    const expected = isProd ? true : (cfg(file, 'database.deletionProtection') as boolean);
    t.is(db.deletionProtection, expected);
    t.is(get(db, 'settings.deletionProtectionEnabled'), expected);
    if (isProd) t.is(only(rs, T.cloudRun).inputs.deletionProtection, true);
  });

  test(`${stack}: the database user's password is a secret input, never plain`, (t) => {
    const user = only(rs, T.sqlUser);
    t.true(user.secretPaths.includes('password'));
    t.is(user.inputs.name, String(cfg(file, 'database.userName') ?? 'karaxas_app'));
  });

  test(`${stack}: Cloud Run is reachable only through the load balancer, without a run.app URL`, (t) => {
    const svc = only(rs, T.cloudRun).inputs;
    t.is(svc.ingress, 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER');
    t.is(svc.defaultUriDisabled, true);
    t.is(get(svc, 'template.containers.0.image'), TEST_IMAGE);
    t.regex(String(get(svc, 'template.containers.0.image')), /@sha256:[a-f0-9]{64}$/);
    t.is(get(svc, 'template.containers.0.ports.containerPort'), 8080);
    t.is(get(svc, 'template.timeout'), `${String(cfg(file, 'service.requestTimeoutSeconds'))}s`);
    t.is(get(svc, 'template.scaling.minInstanceCount'), cfg(file, 'service.minInstances'));
    t.is(get(svc, 'template.scaling.maxInstanceCount'), cfg(file, 'service.maxInstances'));
    t.is(get(svc, 'template.vpcAccess.egress'), 'PRIVATE_RANGES_ONLY');
    t.is(get(svc, 'template.containers.0.startupProbe.httpGet.path'), '/readyz');
    t.is(get(svc, 'template.containers.0.readinessProbe.httpGet.path'), '/readyz');
    t.is(get(svc, 'template.containers.0.livenessProbe.httpGet.path'), '/healthz');
  });

  test(`${stack}: the container env follows contract §9 with secrets only as pinned references`, (t) => {
    const env = cloudRunEnv(rs);
    t.is(env.NODE_ENV, 'production');
    t.true(['require', 'verify-ca', 'verify-full'].includes(env.DB_SSLMODE ?? ''));
    t.is(env.TRUST_PROXY, 'true');
    t.is(env.TRUSTED_PROXY_HOPS, String(cfg(file, 'service.trustedProxyHops')));
    t.is(env.DB_HOST, String(only(rs, T.sqlInstance).outputs.privateIpAddress));
    t.is(env.DB_PORT, '5432');
    t.is(env.DB_NAME, 'karaxas');
    t.is(env.DB_USER, 'karaxas_app');
    t.is(env.CORS_ALLOWED_ORIGINS, (cfg(file, 'corsAllowedOrigins') as string[]).join(','));
    t.deepEqual(run.outputs.tunables, { CORS_ALLOWED_ORIGINS: env.CORS_ALLOWED_ORIGINS }, 'no other tunable is set in the stack file');
    for (const name of ['JWT_SECRET', 'JWT_SECRET_PREVIOUS', 'OPS_API_TOKEN', 'DB_PASSWORD', 'TOTP_ENCRYPTION_KEY', 'DATABASE_URL', 'ALLOW_PLAIN_ENV_SECRETS', 'PORT']) {
      t.false(name in env, `${name} must not be set`);
    }
    const refs = ['JWT_SECRET_SECRET_REF', 'OPS_API_TOKEN_SECRET_REF', 'DB_PASSWORD_SECRET_REF', 'TOTP_ENCRYPTION_KEY_SECRET_REF'];
    const enabledVersions = new Set(ofType(rs, T.secretVersion).filter((v) => v.inputs.enabled === true).map((v) => v.outputs.name));
    for (const ref of refs) {
      t.regex(env[ref] ?? '', PINNED, ref);
      t.false((env[ref] ?? '').endsWith('latest'));
      t.true(enabledVersions.has(env[ref]), `${ref} points to an enabled version of this stack`);
    }
    // Settled rotation: no previous-generation references.
    t.false('JWT_SECRET_PREVIOUS_SECRET_REF' in env);
    t.deepEqual(
      Object.keys(env).filter((k) => k.endsWith('_SECRET_REF')).sort(),
      [...refs].sort(),
    );
  });

  test(`${stack}: secret values exist only as secret version data and the DB user password`, (t) => {
    const secretValues = [
      ...ofType(rs, T.randomPassword).map((r) => String(r.outputs.result)),
      ...ofType(rs, T.randomBytes).map((r) => String(r.outputs.base64)),
    ];
    t.is(secretValues.length, 4);
    /** The only inputs allowed to hold secret values, and they must be marked secret. */
    const allowed: Record<string, string> = { [T.secretVersion]: 'secretData', [T.sqlUser]: 'password', [T.uptimeCheck]: 'httpCheck' };
    for (const r of rs) {
      // The admin-audit uptime check carries the ops token in its Authorization header.
      const field = r.type === T.uptimeCheck && !get(r.inputs, 'httpCheck.headers') ? undefined : allowed[r.type];
      if (field) t.true(r.secretPaths.includes(field), `${r.name}.${field} is marked secret`);
      const visible = { ...r.inputs };
      if (field) delete visible[field];
      const text = JSON.stringify(visible);
      for (const s of secretValues) t.false(text.includes(s), `${r.type} ${r.name} exposes a secret value`);
    }
    t.deepEqual(only(rs, T.cloudRun).secretPaths, [], 'the Cloud Run service has no secret-valued input at all');
  });

  test(`${stack}: secretAccessor is granted per secret, to the runtime account (and the DB password to the archive job)`, (t) => {
    const runtime = only(rs, T.cloudRun).inputs;
    const runtimeMember = `serviceAccount:${String(get(runtime, 'template.serviceAccount'))}`;
    const jobMember = `serviceAccount:${String(get(only(rs, T.job).inputs, 'template.template.serviceAccount'))}`;
    const grants = rs.filter((r) => r.inputs.role === 'roles/secretmanager.secretAccessor');
    for (const g of grants) t.is(g.type, T.secretIam);
    const runtimeGrants = grants.filter((g) => g.inputs.member === runtimeMember);
    t.is(runtimeGrants.length, ofType(rs, T.secret).length);
    const grantedSecrets = new Set(runtimeGrants.map((g) => g.inputs.secretId));
    for (const s of ofType(rs, T.secret)) t.true(grantedSecrets.has(s.inputs.secretId), String(s.inputs.secretId));
    t.deepEqual(
      grants.filter((g) => g.inputs.member !== runtimeMember).map((g) => [g.inputs.member, g.inputs.secretId]),
      [[jobMember, `karaxas-${stack}-db-password`]],
      'the archive job reads the DB password and nothing else',
    );
    // The runtime account has no project-level roles.
    t.deepEqual(ofType(rs, T.projectIam).filter((r) => r.inputs.member === runtimeMember), []);
  });

  test(`${stack}: Cloud Armor has the OWASP CRS rules, per-IP limits, JSON parsing and Adaptive Protection`, (t) => {
    const armor = named(rs, `karaxas-${stack}-armor`).inputs;
    t.is(armor.name, cfg(file, 'armor.policyName'));
    t.is(get(armor, 'advancedOptionsConfig.jsonParsing'), 'STANDARD');
    t.is(get(armor, 'advancedOptionsConfig.logLevel'), cfg(file, 'armor.verboseLogging') ? 'VERBOSE' : 'NORMAL');
    t.is(get(armor, 'adaptiveProtectionConfig.layer7DdosDefenseConfig.enable'), true);
    const rules = armor.rules as ArmorRuleShape[];
    const sensitivity = cfg(file, 'armor.wafSensitivity');
    for (const set of WAF_SETS) {
      const rule = rules.find((r) => r.match?.expr?.expression?.includes(`'${set}-v33-stable'`));
      t.truthy(rule, `rule for ${set}`);
      t.is(rule?.action, 'deny(403)');
      t.true(rule?.match?.expr?.expression?.includes(`{'sensitivity': ${String(sensitivity)}}`), set);
    }
    const ban = rules.find((r) => r.action === 'rate_based_ban');
    t.is(ban?.match?.expr?.expression, "request.path.startsWith('/auth/')");
    t.is(ban?.rateLimitOptions?.enforceOnKey, 'IP');
    t.is(ban?.rateLimitOptions?.exceedAction, 'deny(429)');
    t.is(ban?.rateLimitOptions?.rateLimitThreshold?.count, cfg(file, 'armor.authRateLimit.count') as number);
    t.is(ban?.rateLimitOptions?.rateLimitThreshold?.intervalSec, cfg(file, 'armor.authRateLimit.intervalSec') as number);
    t.is(ban?.rateLimitOptions?.banDurationSec, cfg(file, 'armor.authRateLimit.banDurationSec') as number);
    t.falsy(ban?.preview);
    const throttle = rules.find((r) => r.action === 'throttle');
    t.regex(throttle?.match?.expr?.expression ?? '', /request\.method == 'POST'.*\/chat\/channels/);
    t.is(throttle?.rateLimitOptions?.enforceOnKey, 'IP');
    t.is(throttle?.rateLimitOptions?.rateLimitThreshold?.count, cfg(file, 'armor.chatWriteThrottle.count') as number);
    // WAF rules come before the rate limits, whose "allow" would end evaluation.
    const maxWaf = Math.max(...rules.filter((r) => r.action === 'deny(403)').map((r) => r.priority));
    t.true(maxWaf < (ban?.priority ?? 0));
    const fallback = rules.find((r) => r.priority === 2147483647);
    t.is(fallback?.action, 'allow');
    t.deepEqual(fallback?.match?.config?.srcIpRanges, ['*']);
    t.falsy(fallback?.preview);
    t.is(new Set(rules.map((r) => r.priority)).size, rules.length);
  });

  test(`${stack}: the preview switch puts only new rules in preview ${isProd ? '(on)' : '(off)'}`, (t) => {
    const rules = armorRules(rs, `karaxas-${stack}-armor`);
    const previewed = rules.filter((r) => r.preview).map(ruleKey);
    if (cfg(file, 'armor.previewNewRules')) t.deepEqual(previewed.sort(), ['chat-write-throttle', 'waf-nodejs']);
    else t.deepEqual(previewed, []);
    t.deepEqual(run.outputs.armorPreviewRules, previewed.length ? ['waf-nodejs', 'chat-write-throttle'] : []);
  });

  test(`${stack}: an Armor policy is attached to every backend service, with logging`, (t) => {
    const policyOf: Record<string, string> = {
      [`karaxas-${stack}-backend`]: `karaxas-${stack}-armor`,
      [`karaxas-${stack}-ops-backend`]: `karaxas-${stack}-ops-armor`,
    };
    const backends = ofType(rs, T.backend);
    t.deepEqual(backends.map((b) => b.name).sort(), Object.keys(policyOf).sort());
    for (const be of backends) {
      t.is(be.inputs.securityPolicy, named(rs, policyOf[be.name]!).outputs.selfLink);
      t.is(be.inputs.loadBalancingScheme, 'EXTERNAL_MANAGED');
      t.is(get(be.inputs, 'logConfig.enable'), true);
      // Each backend is a serverless NEG of the Cloud Run service.
      const neg = ofType(rs, T.neg).find((n) => n.id === get(be.inputs, 'backends.0.group'));
      t.is(neg?.inputs.networkEndpointType, 'SERVERLESS');
      t.is(get(neg?.inputs, 'cloudRun.service'), only(rs, T.cloudRun).inputs.name);
    }
  });

  test(`${stack}: HTTPS uses a managed certificate and an SSL policy with TLS >= 1.2`, (t) => {
    const ssl = only(rs, T.sslPolicy);
    t.true(['MODERN', 'RESTRICTED'].includes(String(ssl.inputs.profile)));
    t.true(['TLS_1_2', 'TLS_1_3'].includes(String(ssl.inputs.minTlsVersion)));
    const proxy = only(rs, T.httpsProxy);
    t.is(proxy.inputs.sslPolicy, ssl.id);
    const cert = only(rs, T.cert);
    t.deepEqual(get(cert.inputs, 'managed.domains'), cfg(file, 'domains'));
    t.deepEqual(proxy.inputs.sslCertificates, [cert.id]);
    t.is(proxy.inputs.urlMap, named(rs, `karaxas-${stack}-urlmap`).id);
  });

  test(`${stack}: the URL map routes only the app's public prefixes, /ops to its own backend, and answers the rest at the edge`, (t) => {
    const map = named(rs, `karaxas-${stack}-urlmap`).inputs;
    const api = named(rs, `karaxas-${stack}-backend`).id;
    const ops = named(rs, `karaxas-${stack}-ops-backend`).id;
    const notFound = {
      weightedBackendServices: [{ backendService: api, weight: 100 }],
      faultInjectionPolicy: { abort: { httpStatus: EDGE_NOT_FOUND_STATUS, percentage: 100 } },
    };
    t.falsy(map.defaultService, 'no catch-all backend');
    t.deepEqual(map.defaultRouteAction, notFound, 'other hosts: 404 at the edge');
    t.deepEqual(map.hostRules, [{ hosts: cfg(file, 'domains'), pathMatcher: 'app' }]);
    const [matcher, ...others] = map.pathMatchers as Array<{ name: string; defaultService?: string; defaultRouteAction: unknown; pathRules: Array<{ paths: string[]; service: string }> }>;
    t.deepEqual(others, []);
    t.falsy(matcher?.defaultService);
    t.deepEqual(matcher?.defaultRouteAction, notFound, 'unlisted paths: 404 at the edge');
    t.deepEqual(matcher?.pathRules, [...PUBLIC_ROUTES.map((paths) => ({ paths, service: api })), { paths: ['/ops', '/ops/*'], service: ops }]);
  });

  test(`${stack}: port 80 only redirects to HTTPS, on the same address as 443`, (t) => {
    const rules = ofType(rs, T.forwardingRule);
    t.is(rules.length, 2);
    const https = rules.find((r) => r.inputs.portRange === '443');
    const http = rules.find((r) => r.inputs.portRange === '80');
    t.truthy(https && http);
    t.is(https!.inputs.ipAddress, http!.inputs.ipAddress);
    const external = ofType(rs, T.address).find((a) => a.inputs.addressType === 'EXTERNAL');
    t.is(https!.inputs.ipAddress, external?.id);
    t.is(https!.inputs.target, only(rs, T.httpsProxy).id);
    const httpProxy = only(rs, T.httpProxy);
    t.is(http!.inputs.target, httpProxy.id);
    const redirectMap = ofType(rs, T.urlMap).find((m) => m.id === httpProxy.inputs.urlMap);
    t.truthy(redirectMap);
    t.deepEqual(redirectMap!.inputs.defaultUrlRedirect, {
      httpsRedirect: true,
      redirectResponseCode: 'MOVED_PERMANENTLY_DEFAULT',
      stripQuery: false,
    });
    t.falsy(redirectMap!.inputs.defaultService);
    t.falsy(redirectMap!.inputs.pathMatchers);
    for (const r of rules) t.is(r.inputs.loadBalancingScheme, 'EXTERNAL_MANAGED');
  });

  test(`${stack}: the WIF provider pins the repository by numeric id; bindings are narrow principal sets`, (t) => {
    const provider = only(rs, T.wifProvider).inputs;
    const repoId = String(cfg(file, 'github.repositoryId'));
    const ownerId = String(cfg(file, 'github.ownerId'));
    t.regex(repoId, /^\d+$/);
    t.is(provider.attributeCondition, `assertion.repository_id == '${repoId}' && assertion.repository_owner_id == '${ownerId}'`);
    t.is(get(provider, 'oidc.issuerUri'), 'https://token.actions.githubusercontent.com');
    const bindings = ofType(rs, T.serviceAccountIam).filter((b) => b.inputs.role === 'roles/iam.workloadIdentityUser');
    t.true(bindings.length >= 2);
    for (const b of bindings) {
      const member = String(b.inputs.member);
      t.true(member.startsWith('principalSet://iam.googleapis.com/projects/'), member);
      t.false(member.endsWith('/*'), member);
      t.regex(member, /\/attribute\.(deploy_gate|event_name|ref)\/[^*]+$/);
    }
    const deployer = named(rs, `karaxas-${stack}-deploy`).outputs.name;
    const deployGates = bindings.filter((b) => b.inputs.serviceAccountId === deployer).map((b) => String(b.inputs.member).split('/').pop());
    const expected = [
      ...(cfg(file, 'github.deployEnvironments') as string[]).map((e) => `environment-${e}`),
      ...(cfg(file, 'github.deployBranches') as string[]).map((b) => `branch-${b}`),
    ];
    t.deepEqual(deployGates.sort(), expected.sort());
    // Pull requests reach only the read-only preview account.
    const preview = named(rs, `karaxas-${stack}-preview`).outputs.name;
    const prBindings = bindings.filter((b) => String(b.inputs.member).endsWith('/attribute.event_name/pull_request'));
    t.is(prBindings.length, 1);
    t.is(prBindings[0]!.inputs.serviceAccountId, preview);
    const previewRoles = ofType(rs, T.projectIam).filter((r) => String(r.inputs.member).includes(`karaxas-${stack}-preview@`)).map((r) => r.inputs.role);
    t.deepEqual(previewRoles.sort(), ['roles/iam.securityReviewer', 'roles/viewer']);
    for (const r of ofType(rs, T.projectIam)) t.false(['roles/owner', 'roles/editor'].includes(String(r.inputs.role)));
    const gate = (provider.attributeMapping as Record<string, string>)['attribute.deploy_gate'] ?? '';
    // Prod deploys only from the protected environment, never straight from a branch.
    if (isProd) t.false(gate.includes('refs/heads'));
    else t.true(gate.includes("assertion.ref == 'refs/heads/main'"));
  });

  test(`${stack}: no service-account key exists anywhere`, (t) => {
    t.deepEqual(ofType(rs, T.serviceAccountKey), []);
    t.deepEqual(rs.filter((r) => /key:Key$/i.test(r.type)), []);
  });

  test(`${stack}: the audit archive bucket is private, uniform, retained (locked in prod), written only by the archive job under its prefix`, (t) => {
    const bucket = only(rs, T.bucket);
    t.is(bucket.inputs.publicAccessPrevention, 'enforced');
    t.is(bucket.inputs.uniformBucketLevelAccess, true);
    t.is(get(bucket.inputs, 'retentionPolicy.retentionPeriod'), String(Number(cfg(file, 'auditArchive.retentionDays')) * 86400));
    t.is(get(bucket.inputs, 'retentionPolicy.isLocked'), isProd);
    t.is(bucket.inputs.forceDestroy, false);
    const jobMember = `serviceAccount:${String(get(only(rs, T.job).inputs, 'template.template.serviceAccount'))}`;
    const grants = ofType(rs, T.bucketIam);
    t.deepEqual(grants.map((g) => g.inputs.role).sort(), ['roles/storage.objectCreator', 'roles/storage.objectViewer']);
    for (const g of grants) {
      t.is(g.inputs.member, jobMember);
      t.is(
        get(g.inputs, 'condition.expression'),
        `resource.name.startsWith("projects/_/buckets/${String(bucket.inputs.name)}/objects/security-audit/")`,
      );
    }
  });

  test(`${stack}: every IAM member is narrow (no allUsers, no pool wildcard, no basic roles)`, (t) => {
    const members = rs.filter((r) => typeof r.inputs.member === 'string' && typeof r.inputs.role === 'string');
    t.true(members.length > 10);
    for (const m of members) {
      const member = String(m.inputs.member);
      t.false(['allUsers', 'allAuthenticatedUsers'].includes(member), m.name);
      t.false(member.endsWith('/*'), m.name);
      t.false(['roles/owner', 'roles/editor'].includes(String(m.inputs.role)), m.name);
    }
  });

  test(`${stack}: /ops has its own Armor policy: ${isProd ? 'allowed ranges and uptime checkers only, default deny' : 'not source-restricted (CI reaches it), default allow'}`, (t) => {
    const rules = armorRules(rs, `karaxas-${stack}-ops-armor`);
    t.is(named(rs, `karaxas-${stack}-ops-armor`).inputs.name, `${String(cfg(file, 'armor.policyName'))}-ops`);
    const fallback = rules.find((r) => r.priority === 2147483647);
    const allowed = (cfg(file, 'opsAccess.allowedSourceRanges') as string[] | undefined) ?? [];
    const allows = rules.filter((r) => r.action === 'allow' && r.priority !== 2147483647);
    // The WAF rules still come first: nothing is allowed before they ran.
    const firstAllow = Math.min(...allows.map((r) => r.priority), 2147483647);
    t.true(rules.filter((r) => r.action === 'deny(403)' && r.priority !== 2147483647).every((r) => r.priority < firstAllow));
    if (!isProd) {
      t.deepEqual(allowed, []);
      t.is(fallback?.action, 'allow');
      t.deepEqual(allows, []);
      return;
    }
    t.true(allowed.length > 0);
    t.is(fallback?.action, 'deny(403)');
    t.deepEqual(
      allows.filter((r) => ruleKey(r).startsWith('ops-allow-')).map((r) => [r.priority, r.match?.config?.srcIpRanges]),
      [[5000, allowed]],
    );
    // Uptime checkers (from the provider's lookup) reach only GET /ops/release/admin-audit.
    const uptime = allows.filter((r) => ruleKey(r).startsWith('ops-uptime-'));
    t.deepEqual(uptime.map((r) => r.priority), [5500, 5501]);
    const expressions = uptime.map((r) => r.match?.expr?.expression ?? '');
    for (const e of expressions) t.true(e.startsWith("request.path == '/ops/release/admin-audit' && ("), e);
    for (const ip of MOCK_UPTIME_CHECK_IPS) {
      const range = ip.ipAddress.includes(':') ? `${ip.ipAddress}/128` : `${ip.ipAddress}/32`;
      t.is(expressions.filter((e) => e.includes(`inIpRange(origin.ip, '${range}')`)).length, 1, range);
    }
  });

  test(`${stack}: the monthly archive: a Cloud Run job with its own identity, started by Cloud Scheduler with its own`, (t) => {
    const job = only(rs, T.job).inputs;
    const task = get(job, 'template.template') as Record<string, unknown>;
    const bucket = String(only(rs, T.bucket).inputs.name);
    t.is(get(task, 'containers.0.image'), TEST_IMAGE, 'the image of the release (the CLI ships in it)');
    // The image has no bin/ shim: the compiled CLI entry runs itself (app/cli/main.ts → dist/app/cli/main.js).
    t.deepEqual(
      [...(get(task, 'containers.0.commands') as string[]), ...(get(task, 'containers.0.args') as string[])],
      ['node', 'dist/app/cli/main.js', 'archive-security-audit', '--to', `gs://${bucket}/security-audit/`],
    );
    t.regex(readFileSync(path.join(ROOT, 'app/cli/main.ts'), 'utf8'), /name: 'archive-security-audit'/);
    const env = Object.fromEntries((get(task, 'containers.0.envs') as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]));
    const svcEnv = cloudRunEnv(rs);
    for (const name of ['DB_HOST', 'DB_PORT', 'DB_NAME', 'DB_USER', 'DB_SSLMODE', 'DB_PASSWORD_SECRET_REF', 'NODE_ENV']) t.is(env[name], svcEnv[name], name);
    t.deepEqual(Object.keys(env).filter((k) => k.endsWith('_SECRET_REF')), ['DB_PASSWORD_SECRET_REF'], 'no other secret');
    t.is(get(task, 'vpcAccess.egress'), 'PRIVATE_RANGES_ONLY');
    const jobAccount = named(rs, `karaxas-${stack}-archive`);
    t.is(get(task, 'serviceAccount'), jobAccount.outputs.email);
    t.is(job.deletionProtection, isProd);

    // The trigger: monthly, as its own account, which may only execute this job.
    const trigger = only(rs, T.scheduler).inputs;
    const triggerAccount = named(rs, `karaxas-${stack}-archive-trigger`);
    t.regex(String(trigger.schedule), /^\S+ \S+ \d+ \* \*$/, 'once a month');
    t.is(get(trigger, 'httpTarget.httpMethod'), 'POST');
    t.is(get(trigger, 'httpTarget.uri'), `https://run.googleapis.com/v2/projects/karaxas-${stack}/locations/europe-west1/jobs/karaxas-${stack}-archive:run`);
    t.is(get(trigger, 'httpTarget.oauthToken.serviceAccountEmail'), triggerAccount.outputs.email);

    // Least privilege: the trigger's account has exactly one grant (run this job); the job's
    // account reads one secret and writes under the archive prefix; neither has project roles.
    const members = (email: unknown) => rs.filter((r) => r.inputs.member === `serviceAccount:${String(email)}`);
    t.deepEqual(
      members(triggerAccount.outputs.email).map((r) => [r.type, r.inputs.role, r.inputs.name]),
      [[T.jobIam, 'roles/run.jobsExecutor', `karaxas-${stack}-archive`]],
    );
    t.deepEqual(
      members(jobAccount.outputs.email).map((r) => `${r.type} ${String(r.inputs.role)}`).sort(),
      [`${T.secretIam} roles/secretmanager.secretAccessor`, `${T.bucketIam} roles/storage.objectCreator`, `${T.bucketIam} roles/storage.objectViewer`],
    );
  });

  test(`${stack}: every alert policy and uptime check exists, thresholds from stack config, routed to its channels`, (t) => {
    const alerts = cfg(file, 'monitoring.alerts') as Record<string, { count: number; windowSeconds: number }>;
    const emails = cfg(file, 'monitoring.emails') as string[];
    const channels = ofType(rs, T.notificationChannel);
    t.deepEqual(channels.map((c) => get(c.inputs, 'labels.email_address')), emails);
    const policies = Object.fromEntries(ofType(rs, T.alertPolicy).map((a) => [String(get(a.inputs, 'userLabels.alert')), a.inputs]));
    t.deepEqual(Object.keys(policies).sort(), [...REQUIRED_ALERTS].sort());
    for (const [key, a] of Object.entries(policies)) {
      t.is(a.enabled, true, key);
      t.deepEqual(a.notificationChannels, channels.map((c) => c.outputs.name), key);
    }
    const threshold = (key: string) => (get(policies[key], 'conditions.0.conditionThreshold') ?? {}) as Record<string, unknown>;
    const byConfig: Record<string, string> = {
      'auth-failures': 'authFailures',
      lockouts: 'lockouts',
      'rate-limit-pressure': 'rateLimited',
      'refresh-token-reuse': 'refreshTokenReuse',
      'drain-failures': 'drainFailures',
      'archive-failures': 'archiveFailures',
      'armor-denies': 'armorDenies',
    };
    for (const [key, setting] of Object.entries(byConfig)) {
      t.is(threshold(key).thresholdValue, alerts[setting]!.count, `${key} threshold`);
      t.is(get(threshold(key), 'aggregations.0.alignmentPeriod'), `${alerts[setting]!.windowSeconds}s`, `${key} window`);
      t.is(threshold(key).comparison, 'COMPARISON_GT');
    }
    // Event alerts count the app's security-event log lines by event_type.
    const metric = named(rs, `karaxas-${stack}-security-events`).inputs;
    t.is(metric.filter, `resource.type="cloud_run_revision" AND resource.labels.service_name="karaxas-${stack}-api" AND jsonPayload.securityEvent:*`);
    t.deepEqual(metric.labelExtractors, { event_type: 'EXTRACT(jsonPayload.securityEvent)' });
    for (const [key, types] of Object.entries(ALERT_EVENT_TYPES)) {
      t.is(
        threshold(key).filter,
        `resource.type="cloud_run_revision" AND metric.type="logging.googleapis.com/user/karaxas-${stack}-security-events" AND metric.label.event_type=one_of(${types.map((e) => `"${e}"`).join(', ')})`,
      );
    }
    t.regex(String(named(rs, `karaxas-${stack}-drain-failures`).inputs.filter), /jsonPayload\.message=~"\^\(publish drain failed\|/);
    t.regex(String(threshold('archive-failures').filter), new RegExp(`job_name="karaxas-${stack}-archive".*result="failed"`));
    t.regex(String(get(policies['archive-failures'], 'conditions.1.conditionThreshold.filter')), /archive-trigger-failures/);
    t.regex(String(threshold('armor-denies').filter), new RegExp(`blocked="true".*policy_name=one_of\\("karaxas-backend-policy", "karaxas-backend-policy-ops"\\)`));

    // Uptime checks: /readyz and the admin-audit endpoint with the ops token (secret, masked).
    const checks = Object.fromEntries(ofType(rs, T.uptimeCheck).map((c) => [String(get(c.inputs, 'httpCheck.path')), c]));
    t.deepEqual(Object.keys(checks).sort(), ['/ops/release/admin-audit', '/readyz']);
    for (const c of Object.values(checks)) {
      t.deepEqual(get(c.inputs, 'monitoredResource.labels'), { project_id: `karaxas-${stack}`, host: (cfg(file, 'domains') as string[])[0] });
      t.is(get(c.inputs, 'httpCheck.useSsl'), true);
      t.is(c.inputs.period, `${String(cfg(file, 'monitoring.uptimePeriodSeconds'))}s`);
    }
    const audit = checks['/ops/release/admin-audit']!;
    const opsToken = ofType(rs, T.secretVersion).find((v) => v.name === `karaxas-${stack}-ops-api-token-g1`)?.inputs.secretData;
    t.is(get(audit.inputs, 'httpCheck.headers.Authorization'), `Bearer ${String(opsToken)}`);
    t.is(get(audit.inputs, 'httpCheck.maskHeaders'), true);
    t.true(audit.secretPaths.includes('httpCheck'), 'the token is a secret input');
    t.regex(String(threshold('uptime-admin-audit').filter), new RegExp(`check_id="${String(audit.outputs.uptimeCheckId)}"`));
    t.regex(String(threshold('uptime-readyz').filter), new RegExp(`check_id="${String(checks['/readyz']!.outputs.uptimeCheckId)}"`));
  });

  test(`${stack}: the policy pack passes on the whole stack`, async (t) => {
    const inputs = rs
      .filter((r) => !r.type.startsWith('karaxas:'))
      .map((r) => ({ type: r.type, name: r.name, props: { ...r.outputs, ...r.inputs, id: r.id } }));
    t.deepEqual(await evaluatePolicies(policies, inputs, stack), []);
  });

  test(`${stack}: stack outputs give CI what docs/ci.md copies into repository variables`, (t) => {
    const o = run.outputs;
    t.regex(String(o.workloadIdentityProvider), /^projects\/\d+\/locations\/global\/workloadIdentityPools\/[^/]+\/providers\/github-actions$/);
    t.regex(String(o.deployServiceAccountEmail), new RegExp(`^karaxas-${stack}-deploy@`));
    t.regex(String(o.previewServiceAccountEmail), new RegExp(`^karaxas-${stack}-preview@`));
    t.regex(String(o.artifactRegistryRepoUrl), /^[a-z0-9-]+-docker\.pkg\.dev\/[a-z0-9-]+\/[a-z0-9-]+$/);
  });
}
