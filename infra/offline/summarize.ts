/**
 * Security-relevant settings of each recorded resource, as short lines for the
 * plan table. Secret values are never printed.
 */
import type { RecordedResource } from './mocks.js';

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (v === undefined || v === null || v === '' ? '-' : String(v));

/** `gcp:cloudrunv2/service:Service` → `cloudrunv2.Service`. */
export function shortType(type: string): string {
  const m = /^([a-z0-9]+):([A-Za-z0-9]+)\/[A-Za-z0-9]+:([A-Za-z0-9]+)$/.exec(type);
  if (!m) return type;
  return m[1] === 'gcp' ? `${m[2]}.${m[3]}` : `${m[1]}.${m[3]}`;
}

function shortImage(image: string): string {
  const at = image.indexOf('@sha256:');
  return at < 0 ? `${image} (NOT PINNED)` : `${image.slice(0, at)}@sha256:${image.slice(at + 8, at + 20)}…`;
}

function lastSegment(ref: unknown): string {
  const s = str(ref);
  return s.includes('/') ? s.slice(s.lastIndexOf('/') + 1) : s;
}

/** The lines shown for one resource. */
export function summarize(r: RecordedResource): string[] {
  const i = r.inputs;
  switch (r.type) {
    case 'gcp:cloudrunv2/service:Service': {
      const t = obj(i.template);
      const c = obj(arr(t.containers)[0]);
      const envs = arr(c.envs).map(obj);
      const refs = envs.filter((e) => String(e.name).endsWith('_SECRET_REF'));
      const plain = envs.filter((e) => !String(e.name).endsWith('_SECRET_REF'));
      const scaling = obj(t.scaling);
      const vpc = obj(t.vpcAccess);
      return [
        `ingress=${str(i.ingress)} defaultUriDisabled=${str(i.defaultUriDisabled)} invokerIamDisabled=${str(i.invokerIamDisabled)}`,
        `image=${shortImage(str(c.image))}`,
        `runs as ${str(t.serviceAccount)}; egress=${str(vpc.egress)} (Direct VPC)`,
        `scaling=${str(scaling.minInstanceCount)}..${str(scaling.maxInstanceCount)} concurrency=${str(t.maxInstanceRequestConcurrency)} timeout=${str(t.timeout)}`,
        `probes: startup ${str(obj(obj(c.startupProbe).httpGet).path)}, readiness ${str(obj(obj(c.readinessProbe).httpGet).path)}, liveness ${str(obj(obj(c.livenessProbe).httpGet).path)}`,
        `env: ${plain.map((e) => `${str(e.name)}=${String(e.name) === 'DB_SSL_ROOT_CERT' ? str(e.value) : str(e.value).slice(0, 60)}`).join(' ')}`,
        ...refs.map((e) => `secret ref ${str(e.name)} → ${str(e.value)}`),
        ...arr(t.volumes).map((v) => `mounted secret ${str(obj(obj(v).secret).secret)} v${str(obj(arr(obj(obj(v).secret).items)[0]).version)}`),
        `deletionProtection=${str(i.deletionProtection)} launchStage=${str(i.launchStage)}`,
      ];
    }
    case 'gcp:sql/databaseInstance:DatabaseInstance': {
      const s = obj(i.settings);
      const ip = obj(s.ipConfiguration);
      const b = obj(s.backupConfiguration);
      const flags = arr(s.databaseFlags).map(obj).map((f) => `${str(f.name)}=${str(f.value)}`);
      return [
        `${str(i.databaseVersion)} tier=${str(s.tier)} edition=${str(s.edition)} availability=${str(s.availabilityType)}`,
        `ipv4Enabled=${str(ip.ipv4Enabled)} privateNetwork=${ip.privateNetwork ? 'set' : '-'} sslMode=${str(ip.sslMode)} authorizedNetworks=${arr(ip.authorizedNetworks).length}`,
        `backups=${str(b.enabled)} PITR=${str(b.pointInTimeRecoveryEnabled)} retained=${str(obj(b.backupRetentionSettings).retainedBackups)} logDays=${str(b.transactionLogRetentionDays)}`,
        `deletionProtection=${str(i.deletionProtection)} deletionProtectionEnabled=${str(s.deletionProtectionEnabled)}`,
        `flags: ${flags.join(' ')}`,
      ];
    }
    case 'gcp:sql/user:User':
      return [`user ${str(i.name)} (${str(i.type)}) password=${r.secretPaths.includes('password') ? '[secret]' : 'NOT A SECRET'}`];
    case 'gcp:sql/database:Database':
      return [`database ${str(i.name)}`];
    case 'gcp:secretmanager/secret:Secret':
      return [`secret ${str(i.secretId)} replication=${Object.keys(obj(i.replication)).join(',')} deletionProtection=${str(i.deletionProtection)}`];
    case 'gcp:secretmanager/secretVersion:SecretVersion':
      return [`${str(r.outputs.name)} enabled=${str(i.enabled)} data=[secret] onDelete=${str(i.deletionPolicy)}`];
    case 'gcp:secretmanager/secretIamMember:SecretIamMember':
      return [`${str(i.role)} on ${lastSegment(i.secretId)} → ${str(i.member)}`];
    case 'random:index/randomPassword:RandomPassword':
    case 'random:index/randomBytes:RandomBytes':
      return [`generated, length ${str(i.length)} (value never printed)`];
    case 'gcp:compute/securityPolicy:SecurityPolicy': {
      const adv = obj(i.advancedOptionsConfig);
      const ddos = obj(obj(i.adaptiveProtectionConfig).layer7DdosDefenseConfig);
      return [
        `name=${str(i.name)} type=${str(i.type)} jsonParsing=${str(adv.jsonParsing)} logLevel=${str(adv.logLevel)} adaptiveProtection=${str(ddos.enable)}`,
        ...arr(i.rules).map(obj).map((rule) => {
          const rl = obj(rule.rateLimitOptions);
          const th = obj(rl.rateLimitThreshold);
          const limit = rl.enforceOnKey
            ? ` [${str(th.count)}/${str(th.intervalSec)}s per ${str(rl.enforceOnKey)}${rl.banDurationSec ? `, ban ${str(rl.banDurationSec)}s` : ''}]`
            : '';
          const key = /^\[([^\]]+)\]/.exec(str(rule.description))?.[1] ?? '';
          const match = obj(rule.match);
          const ranges = arr(obj(match.config).srcIpRanges).map(String);
          const sources = key !== 'default' && ranges.length ? ` [${ranges.join(', ')}]` : '';
          const expr = /^(deny-list|ops-|path-throttle)/.test(key) && !ranges.length ? ` if ${str(obj(match.expr).expression)}` : '';
          return `rule ${String(rule.priority).padStart(10)} ${str(rule.action).padEnd(14)} ${rule.preview ? 'PREVIEW ' : ''}${key}${limit}${sources}${expr}`;
        }),
      ];
    }
    case 'gcp:compute/backendService:BackendService':
      return [
        `scheme=${str(i.loadBalancingScheme)} protocol=${str(i.protocol)} armor=${lastSegment(i.securityPolicy)} logging=${str(obj(i.logConfig).enable)}@${str(obj(i.logConfig).sampleRate)}${obj(i.iap).enabled ? ' IAP=on' : ''}`,
      ];
    case 'gcp:cloudrunv2/job:Job': {
      const t = obj(obj(i.template).template);
      const c = obj(arr(t.containers)[0]);
      const envs = arr(c.envs).map(obj);
      return [
        `runs as ${str(t.serviceAccount)}; egress=${str(obj(t.vpcAccess).egress)} timeout=${str(t.timeout)} retries=${str(t.maxRetries)}`,
        `image=${shortImage(str(c.image))}`,
        `command: ${[...arr(c.commands), ...arr(c.args)].map(String).join(' ')}`,
        `env: ${envs.map((e) => `${str(e.name)}=${str(e.value).slice(0, 70)}`).join(' ')}`,
        `deletionProtection=${str(i.deletionProtection)}`,
      ];
    }
    case 'gcp:cloudscheduler/job:Job': {
      const h = obj(i.httpTarget);
      return [`schedule "${str(i.schedule)}" ${str(i.timeZone)}: ${str(h.httpMethod)} ${str(h.uri)}`, `as ${str(obj(h.oauthToken).serviceAccountEmail)}`];
    }
    case 'gcp:cloudrunv2/jobIamMember:JobIamMember':
    case 'gcp:iap/webBackendServiceIamMember:WebBackendServiceIamMember':
      return [`${str(i.role)} on ${lastSegment(i.name ?? i.webBackendService)} → ${str(i.member)}`];
    case 'gcp:logging/metric:Metric':
      return [`counter from logs: ${str(i.filter)}`];
    case 'gcp:monitoring/notificationChannel:NotificationChannel':
      return [`${str(i.type)} → ${str(obj(i.labels).email_address)}`];
    case 'gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig': {
      const h = obj(i.httpCheck);
      const headers = Object.keys(obj(h.headers));
      return [
        `${str(h.requestMethod)} https://${str(obj(obj(i.monitoredResource).labels).host)}${str(h.path)} every ${str(i.period)}${headers.length ? ` with ${headers.join(', ')} (secret, masked=${str(h.maskHeaders)})` : ''}`,
      ];
    }
    case 'gcp:monitoring/alertPolicy:AlertPolicy': {
      const conditions = arr(i.conditions).map(obj);
      return [
        `alert=${str(obj(i.userLabels).alert)} severity=${str(i.severity)} enabled=${str(i.enabled)} channels=${arr(i.notificationChannels).length}`,
        ...conditions.map((c) => {
          const th = obj(c.conditionThreshold);
          return `${str(c.displayName)} (> ${str(th.thresholdValue)} per ${str(obj(arr(th.aggregations)[0]).alignmentPeriod)})`;
        }),
      ];
    }
    case 'gcp:compute/sSLPolicy:SSLPolicy':
      return [`profile=${str(i.profile)} minTlsVersion=${str(i.minTlsVersion)}`];
    case 'gcp:compute/targetHttpsProxy:TargetHttpsProxy':
      return [`urlMap=${lastSegment(i.urlMap)} sslPolicy=${lastSegment(i.sslPolicy)} certs=${arr(i.sslCertificates).map(lastSegment).join(',')}`];
    case 'gcp:compute/targetHttpProxy:TargetHttpProxy':
      return [`urlMap=${lastSegment(i.urlMap)}`];
    case 'gcp:compute/uRLMap:URLMap': {
      const redirect = obj(i.defaultUrlRedirect);
      if (i.defaultUrlRedirect) return [`redirect only: httpsRedirect=${str(redirect.httpsRedirect)} code=${str(redirect.redirectResponseCode)}`];
      const edgeStatus = (action: unknown) => obj(obj(obj(action).faultInjectionPolicy).abort).httpStatus;
      const hosts = arr(i.hostRules).flatMap((h) => arr(obj(h).hosts)).map(String);
      return [
        i.defaultService ? `defaultService=${lastSegment(i.defaultService)}` : `other hosts: ${str(edgeStatus(i.defaultRouteAction))} at the edge`,
        `hosts: ${hosts.join(', ') || '-'}`,
        ...arr(i.pathMatchers).flatMap((pm) => [
          ...arr(obj(pm).pathRules).map((r) => `route ${arr(obj(r).paths).join(' ')} → ${lastSegment(obj(r).service)}`),
          `anything else: ${obj(pm).defaultService ? lastSegment(obj(pm).defaultService) : `${str(edgeStatus(obj(pm).defaultRouteAction))} at the edge`}`,
        ]),
      ];
    }
    case 'gcp:compute/globalForwardingRule:GlobalForwardingRule':
      return [`:${str(i.portRange)} ${str(i.loadBalancingScheme)} ip=${lastSegment(i.ipAddress)} → ${lastSegment(i.target)}`];
    case 'gcp:compute/managedSslCertificate:ManagedSslCertificate':
      return [`managed certificate for ${arr(obj(i.managed).domains).join(', ')}`];
    case 'gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup':
      return [`${str(i.networkEndpointType)} NEG → Cloud Run ${str(obj(i.cloudRun).service)}`];
    case 'gcp:compute/globalAddress:GlobalAddress':
      return [`${str(i.addressType ?? 'EXTERNAL')} ${str(i.purpose ?? '')} ${str(r.outputs.address)}${i.prefixLength ? `/${str(i.prefixLength)}` : ''}`];
    case 'gcp:compute/network:Network':
      return [`autoCreateSubnetworks=${str(i.autoCreateSubnetworks)} routing=${str(i.routingMode)}`];
    case 'gcp:compute/subnetwork:Subnetwork':
      return [`${str(i.ipCidrRange)} privateGoogleAccess=${str(i.privateIpGoogleAccess)} flowLogs=${i.logConfig ? 'on' : 'off'}`];
    case 'gcp:servicenetworking/connection:Connection':
      return [`private services access (${str(i.service)})`];
    case 'gcp:iam/workloadIdentityPool:WorkloadIdentityPool':
      return [`pool ${str(i.workloadIdentityPoolId)}`];
    case 'gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider':
      return [
        `issuer=${str(obj(i.oidc).issuerUri)}`,
        `condition: ${str(i.attributeCondition)}`,
        `deploy_gate: ${str(obj(i.attributeMapping)['attribute.deploy_gate'])}`,
      ];
    case 'gcp:serviceaccount/account:Account':
      return [`${str(r.outputs.email)} (no keys)`];
    case 'gcp:serviceaccount/iAMMember:IAMMember':
    case 'gcp:projects/iAMMember:IAMMember':
    case 'gcp:artifactregistry/repositoryIamMember:RepositoryIamMember':
      return [`${str(i.role)} → ${str(i.member)}`];
    case 'gcp:storage/bucketIAMMember:BucketIAMMember':
      return [`${str(i.role)} → ${str(i.member)} if ${str(obj(i.condition).expression)}`];
    case 'gcp:storage/bucket:Bucket': {
      const rp = obj(i.retentionPolicy);
      return [
        `publicAccessPrevention=${str(i.publicAccessPrevention)} uniformAccess=${str(i.uniformBucketLevelAccess)} class=${str(i.storageClass)}`,
        `retention=${Math.round(Number(rp.retentionPeriod) / 86400)}d locked=${str(rp.isLocked)} forceDestroy=${str(i.forceDestroy)}`,
      ];
    }
    case 'gcp:artifactregistry/repository:Repository':
      return [`${str(i.format)} ${str(i.repositoryId)} immutableTags=${str(obj(i.dockerConfig).immutableTags)}`];
    case 'gcp:projects/service:Service':
      return [`enable ${str(i.service)}`];
    default:
      return [];
  }
}

/** Renders resources as a fixed-width table. */
export function renderTable(resources: RecordedResource[]): string {
  const rows = resources
    .filter((r) => !r.type.startsWith('karaxas:'))
    .map((r) => ({ type: shortType(r.type), name: r.name, lines: summarize(r) }));
  rows.sort((a, b) => a.type.localeCompare(b.type) || a.name.localeCompare(b.name));
  const tw = Math.max(4, ...rows.map((r) => r.type.length));
  const nw = Math.max(4, ...rows.map((r) => r.name.length));
  const out = [`${'TYPE'.padEnd(tw)}  ${'NAME'.padEnd(nw)}  SECURITY-RELEVANT SETTINGS`, `${'-'.repeat(tw)}  ${'-'.repeat(nw)}  ${'-'.repeat(40)}`];
  for (const r of rows) {
    const [first = '', ...rest] = r.lines;
    out.push(`${r.type.padEnd(tw)}  ${r.name.padEnd(nw)}  ${first}`);
    for (const line of rest) out.push(`${''.padEnd(tw)}  ${''.padEnd(nw)}    ${line}`);
  }
  return out.join('\n');
}
