/**
 * The Karaxas backend perimeter on Google Cloud — the program `pulumi up` runs.
 *
 * Composition only: every setting comes from the validated stack config
 * (./config.ts) and every resource lives in a component under ./components.
 */
import * as pulumi from '@pulumi/pulumi';
import { loadConfig, type SecretKey } from './config.js';
import { shortHash, standardLabels } from './components/common.js';
import { ProjectServices } from './components/project-services.js';
import { Network } from './components/network.js';
import { Secrets, type SecretGenerator } from './components/secrets.js';
import { Database } from './components/database.js';
import { Service, type SecretFile } from './components/service.js';
import * as gcp from '@pulumi/gcp';
import { Armor } from './components/armor.js';
import { baselineArmorRules, denyListRules, opsAllowRules, opsUptimeRules, pathThrottleRules } from './components/armor-rules.js';
import { Edge } from './components/edge.js';
import { CiIdentity } from './components/ci-identity.js';
import { AuditArchive } from './components/audit-archive.js';
import { ArchiveJob } from './components/archive-job.js';
import { Monitoring } from './components/monitoring.js';
import { REQUIRED_APIS } from './components/project-services.js';

const cfg = loadConfig();
const prefix = cfg.namePrefix;
const labels = standardLabels(cfg.environment);
const base = { prefix, project: cfg.project, labels };

const iap = cfg.opsAccess.iap.enabled;
const apis = cfg.enableApis
  ? new ProjectServices('apis', { ...base, apis: [...REQUIRED_APIS, ...(iap ? ['iap.googleapis.com'] : [])] })
  : undefined;
const afterApis: pulumi.ComponentResourceOptions = { dependsOn: apis?.services ?? [] };

const network = new Network(
  'network',
  {
    ...base,
    region: cfg.region,
    subnetCidr: cfg.network.subnetCidr,
    privateServicesPrefixLength: cfg.network.privateServicesPrefixLength,
    flowLogs: cfg.network.flowLogs,
  },
  afterApis,
);

/** Secret ids and how each value is generated when not supplied via `pulumi config set --secret`. */
const SECRET_LAYOUT: Record<SecretKey, { id: string; generate: SecretGenerator }> = {
  jwtSecret: { id: 'jwt-secret', generate: { kind: 'password', length: 64 } },
  opsApiToken: { id: 'ops-api-token', generate: { kind: 'password', length: 48 } },
  dbPassword: { id: 'db-password', generate: { kind: 'password', length: 40 } },
  totpEncryptionKey: { id: 'totp-encryption-key', generate: { kind: 'bytes', length: 32 } },
};

const secrets = new Secrets(
  'secrets',
  {
    ...base,
    secrets: (Object.keys(SECRET_LAYOUT) as SecretKey[]).map((key) => ({
      key,
      secretId: `${prefix}-${SECRET_LAYOUT[key].id}`,
      generate: SECRET_LAYOUT[key].generate,
      value: cfg.secretValues[key],
      rotation: cfg.secretRotation[key],
    })),
    deletionProtection: cfg.isProd,
  },
  afterApis,
);
const secret = (key: SecretKey) => secrets.secrets[key]!;

const database = new Database(
  'database',
  {
    ...base,
    region: cfg.region,
    networkId: network.network.id,
    allocatedIpRange: network.privateServicesRange.name,
    dependsOn: [network.privateServicesConnection],
    databaseVersion: cfg.database.version,
    tier: cfg.database.tier,
    edition: cfg.database.edition,
    availabilityType: cfg.database.availabilityType,
    diskSizeGb: cfg.database.diskSizeGb,
    requireClientCertificates: cfg.database.requireClientCertificates,
    backupStartTime: cfg.database.backupStartTime,
    retainedBackups: cfg.database.retainedBackups,
    transactionLogRetentionDays: cfg.database.transactionLogRetentionDays,
    deletionProtection: cfg.database.deletionProtection,
    maintenanceDay: cfg.database.maintenanceDay,
    maintenanceHour: cfg.database.maintenanceHour,
    databaseName: cfg.database.databaseName,
    userName: cfg.database.userName,
    userPassword: secret('dbPassword').value,
    publishServerCa: cfg.database.clientSslMode === 'verify-ca',
  },
  afterApis,
);

/** Where the server CA bundle is mounted for DB_SSLMODE=verify-ca (DB_SSL_ROOT_CERT is a path). */
const DB_CA_DIR = '/var/run/karaxas/db-ca';
const DB_CA_FILE = 'server-ca.pem';
const verifyCa = database.serverCaSecret && database.serverCaSecretVersion;

/** How the app (service and archive job alike) reaches the database (contract §9). */
const dbEnv: Record<string, pulumi.Input<string>> = {
  DB_HOST: database.privateIp,
  DB_PORT: '5432',
  DB_NAME: cfg.database.databaseName,
  DB_USER: cfg.database.userName,
  DB_SSLMODE: cfg.database.clientSslMode,
  ...(verifyCa ? { DB_SSL_ROOT_CERT: `${DB_CA_DIR}/${DB_CA_FILE}` } : {}),
};
const processEnv: Record<string, pulumi.Input<string>> = {
  NODE_ENV: 'production',
  LOG_LEVEL: cfg.service.logLevel,
  GOOGLE_CLOUD_PROJECT: cfg.project,
};

/**
 * Container environment (contract §9). Secrets only ever travel as pinned version references.
 * The operator tunables set in the stack (`karaxas-backend:authLockoutThreshold`, …) are validated
 * by ./config.ts with the app's own schemas; any change rolls out as a new revision.
 */
const env: Record<string, pulumi.Input<string>> = {
  ...processEnv,
  TRUST_PROXY: 'true',
  TRUSTED_PROXY_HOPS: String(cfg.service.trustedProxyHops),
  CORS_ALLOWED_ORIGINS: '',
  ...cfg.tunables,
  ...dbEnv,
};

/** `*_SECRET_REF` env var of each secret, and of its previous generation while a rotation is unconfirmed. */
const SECRET_ENV: Record<SecretKey, { current: string; previous?: string }> = {
  jwtSecret: { current: 'JWT_SECRET_SECRET_REF', previous: 'JWT_SECRET_PREVIOUS_SECRET_REF' },
  opsApiToken: { current: 'OPS_API_TOKEN_SECRET_REF' },
  dbPassword: { current: 'DB_PASSWORD_SECRET_REF' },
  totpEncryptionKey: { current: 'TOTP_ENCRYPTION_KEY_SECRET_REF', previous: 'TOTP_ENCRYPTION_KEY_PREVIOUS_SECRET_REF' },
};
const secretRefs: Record<string, { versionName: pulumi.Output<string> }> = {};
for (const key of Object.keys(SECRET_ENV) as SecretKey[]) {
  const names = SECRET_ENV[key];
  secretRefs[names.current] = { versionName: secret(key).currentRef };
  const previous = secret(key).previousRef;
  if (names.previous && previous) secretRefs[names.previous] = { versionName: previous };
}

const dbCaFile: Record<string, SecretFile> = verifyCa
  ? {
      'db-ca': {
        secret: database.serverCaSecret!.secretId,
        version: database.serverCaSecretVersion!.version,
        mountDir: DB_CA_DIR,
        fileName: DB_CA_FILE,
      },
    }
  : {};

const service = new Service(
  'service',
  {
    ...base,
    region: cfg.region,
    image: cfg.image,
    env,
    secretRefs,
    readableSecrets: {
      ...Object.fromEntries(Object.values(secrets.secrets).map((s) => [s.key, s.secret])),
      ...(verifyCa ? { dbServerCa: database.serverCaSecret! } : {}),
    },
    secretFiles: dbCaFile,
    registryReaders: cfg.service.registryReaders,
    networkId: network.network.id,
    subnetId: network.subnet.id,
    minInstances: cfg.service.minInstances,
    maxInstances: cfg.service.maxInstances,
    concurrency: cfg.service.concurrency,
    cpu: cfg.service.cpu,
    memory: cfg.service.memory,
    requestTimeoutSeconds: cfg.service.requestTimeoutSeconds,
    alwaysOnCpu: cfg.service.alwaysOnCpu,
    launchStage: cfg.service.launchStage,
    deletionProtection: cfg.service.deletionProtection ?? cfg.isProd,
  },
  afterApis,
);

// Cloud Armor: the edge policy of the public routes, and the ops policy of /ops/* (an allow list
// with a default deny when the stack lists source ranges). Both share the deny list and the baseline.
const denyList = denyListRules(cfg.armor.denySourceRanges);
const baseline = baselineArmorRules(cfg.armor);
const armorCommon = {
  ...base,
  previewNewRules: cfg.armor.previewNewRules,
  jsonParsing: cfg.armor.jsonParsing,
  verboseLogging: cfg.armor.verboseLogging,
};
const armor = new Armor(
  'armor',
  {
    ...armorCommon,
    policyName: cfg.armor.policyName,
    rules: [...denyList, ...baseline, ...pathThrottleRules(cfg.armor.pathThrottles)],
    previewRules: cfg.armor.previewRules,
  },
  afterApis,
);

const opsRestricted = cfg.opsAccess.allowedSourceRanges.length > 0;
const opsRules = [...denyList, ...baseline, ...opsAllowRules(cfg.opsAccess.allowedSourceRanges)];
const uptimeCheckersAllowed = opsRestricted && cfg.opsAccess.allowUptimeCheckers && cfg.monitoring.adminAuditUptimeCheck;
const opsArmor = new Armor(
  'ops-armor',
  {
    ...armorCommon,
    resourceSuffix: 'ops-armor',
    policyName: `${cfg.armor.policyName}-ops`,
    description: opsRestricted
      ? 'Karaxas ops API (/ops/*): allowed source ranges only (default deny), plus the edge baseline'
      : 'Karaxas ops API (/ops/*): edge baseline; not restricted by source (app authentication only)',
    rules: opsRules,
    previewRules: cfg.armor.previewRules.filter((key) => opsRules.some((r) => r.key === key)),
    // Cloud Monitoring's uptime checkers (looked up at deploy time) may GET the admin-audit endpoint.
    dynamicRules: uptimeCheckersAllowed
      ? gcp.monitoring.getUptimeCheckIPsOutput().apply((r) => opsUptimeRules(r.uptimeCheckIps.map((ip) => ip.ipAddress)))
      : [],
    defaultAction: opsRestricted ? 'deny(403)' : 'allow',
  },
  afterApis,
);

const edge = new Edge(
  'edge',
  {
    ...base,
    region: cfg.region,
    cloudRunServiceName: service.service.name,
    domains: cfg.domains,
    securityPolicy: armor.policy.selfLink,
    opsSecurityPolicy: opsArmor.policy.selfLink,
    ...(iap ? { opsIap: { members: cfg.opsAccess.iap.members } } : {}),
    sslProfile: cfg.edge.sslProfile,
    minTlsVersion: cfg.edge.minTlsVersion,
    logSampleRate: cfg.edge.logSampleRate,
  },
  afterApis,
);

const archiveBucketName = cfg.auditArchive.bucketName ?? `${prefix}-audit-archive-${shortHash(cfg.project)}`;

const archiveJob = new ArchiveJob(
  'archive-job',
  {
    ...base,
    region: cfg.region,
    image: cfg.image,
    command: cfg.auditArchive.command,
    destination: `gs://${archiveBucketName}/${cfg.auditArchive.objectPrefix}`,
    env: { ...processEnv, ...dbEnv },
    secretRefs: { DB_PASSWORD_SECRET_REF: secretRefs.DB_PASSWORD_SECRET_REF! },
    readableSecrets: {
      dbPassword: secret('dbPassword').secret,
      ...(verifyCa ? { dbServerCa: database.serverCaSecret! } : {}),
    },
    secretFiles: dbCaFile,
    networkId: network.network.id,
    subnetId: network.subnet.id,
    schedule: cfg.auditArchive.schedule,
    timeZone: cfg.auditArchive.timeZone,
    timeoutSeconds: cfg.auditArchive.timeoutSeconds,
    maxRetries: cfg.auditArchive.maxRetries,
    deletionProtection: cfg.isProd,
  },
  afterApis,
);

const archive = new AuditArchive(
  'audit-archive',
  {
    ...base,
    bucketName: archiveBucketName,
    location: cfg.auditArchive.location ?? cfg.region,
    storageClass: cfg.auditArchive.storageClass,
    retentionDays: cfg.auditArchive.retentionDays,
    lockRetention: cfg.auditArchive.lockRetention,
    objectPrefix: cfg.auditArchive.objectPrefix,
    // The archive job is the only writer (the API itself never writes archives).
    writers: { 'archive-job': archiveJob.member },
  },
  afterApis,
);

const ci = new CiIdentity(
  'ci',
  {
    ...base,
    repository: cfg.github.repository,
    repositoryId: cfg.github.repositoryId,
    ownerId: cfg.github.ownerId,
    deployBranches: cfg.github.deployBranches,
    deployEnvironments: cfg.github.deployEnvironments,
    deployerRoles: [...cfg.github.deployerRoles, ...(iap && !cfg.github.deployerRoles.includes('roles/iap.admin') ? ['roles/iap.admin'] : [])],
    previewRoles: cfg.github.previewRoles,
    actAsServiceAccounts: [service.serviceAccount.name, archiveJob.serviceAccount.name, archiveJob.schedulerAccount.name],
    artifactRepository: {
      project: service.repository.project,
      location: service.repository.location,
      name: service.repository.name,
    },
  },
  afterApis,
);

const monitoring = new Monitoring(
  'monitoring',
  {
    ...base,
    serviceName: service.service.name,
    archiveJobName: archiveJob.job.name,
    archiveTriggerName: archiveJob.trigger.name,
    armorPolicyNames: [armor.policy.name, opsArmor.policy.name],
    host: cfg.domains[0]!,
    opsToken: secret('opsApiToken').value,
    adminAuditCheck: cfg.monitoring.adminAuditUptimeCheck,
    uptimePeriodSeconds: cfg.monitoring.uptimePeriodSeconds,
    uptimeRegions: cfg.monitoring.uptimeRegions,
    thresholds: cfg.monitoring.alerts,
    notificationChannels: cfg.monitoring.notificationChannels,
    emails: cfg.monitoring.emails,
  },
  afterApis,
);

// Stack outputs. The CI bootstrap (docs/ci.md) copies workloadIdentityProvider,
// deployServiceAccountEmail, previewServiceAccountEmail and artifactRegistryRepoUrl
// into repository / environment variables.
export const url = `https://${cfg.domains[0]}`;
export const loadBalancerIp = edge.address.address;
export const cloudRunService = service.service.name;
/** The deployed image (pass it back with `--config image=…` on a manual `pulumi up`). */
export const image = cfg.image;
export const runtimeServiceAccountEmail = service.serviceAccount.email;
export const artifactRegistryRepoUrl = pulumi.interpolate`${cfg.region}-docker.pkg.dev/${cfg.project}/${service.repository.repositoryId}`;
export const armorPolicy = armor.policy.name;
export const armorPreviewRules = armor.previewedRules;
export const databaseInstance = database.instance.connectionName;
export const secretRefsInUse = Object.fromEntries(Object.entries(secretRefs).map(([name, ref]) => [name, ref.versionName]));
export const opsApiTokenSecret = secret('opsApiToken').secret.id;
export const workloadIdentityProvider = ci.providerName;
export const deployServiceAccountEmail = ci.deployer.email;
export const previewServiceAccountEmail = ci.previewer.email;
export const auditArchiveUri = archive.archiveUri;
export const opsArmorPolicy = opsArmor.policy.name;
/** The monthly archive: `gcloud run jobs execute <archiveJob>` runs it by hand. */
export const archiveJobName = archiveJob.job.name;
export const archiveSchedule = archiveJob.trigger.name;
export const alertPolicies = Object.keys(monitoring.alertPolicies);
/** App tunables set by this stack (env name → value). */
export const tunables = cfg.tunables;
