/**
 * Service: the Koa API on Cloud Run v2, reachable only through the external
 * load balancer (and so through Cloud Armor), with its own least-privilege
 * runtime identity and the Artifact Registry repository its images live in.
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, serviceAccountMember, type BaseArgs } from './common.js';

/** Env names that would carry a secret value in plain text (contract §9). Never set on the service. */
export const PLAIN_SECRET_ENV_NAMES = [
  'JWT_SECRET',
  'JWT_SECRET_PREVIOUS',
  'OPS_API_TOKEN',
  'DB_PASSWORD',
  'TOTP_ENCRYPTION_KEY',
  'TOTP_ENCRYPTION_KEY_PREVIOUS',
  'DATABASE_URL',
] as const;

/**
 * Env names that must never be set on the service: Cloud Run's own, and the switches that
 * would let the app read plain secrets or bypass Secret Manager.
 */
export const FORBIDDEN_ENV_NAMES = [
  'PORT',
  'K_SERVICE',
  'K_REVISION',
  'K_CONFIGURATION',
  'ALLOW_PLAIN_ENV_SECRETS',
  'FORCE_PLAIN_ENV_SECRETS_IN_PRODUCTION',
  'SECRET_MANAGER_EMULATOR_HOST',
] as const;

/** The container port of the app (contract §9: PORT 8080; Cloud Run sets PORT from it). */
export const CONTAINER_PORT = 8080;

/** A Secret Manager version reference exposed to the app as an env value. */
export interface SecretRefEnv {
  /** Version name, `projects/P/secrets/S/versions/N` — never `latest`. */
  versionName: pulumi.Input<string>;
}

/** A Secret Manager version mounted as a read-only file (e.g. a CA bundle the app reads by path). */
export interface SecretFile {
  /** Secret id or name. */
  secret: pulumi.Input<string>;
  /** Version number (never `latest`). */
  version: pulumi.Input<string>;
  /** Directory the volume is mounted at (one file per directory). */
  mountDir: string;
  /** File name inside `mountDir`. */
  fileName: string;
}

export interface ServiceArgs extends BaseArgs {
  region: string;
  /** Image reference pinned by digest. */
  image: string;
  /** Plain (non-secret) environment of the container. */
  env: Record<string, pulumi.Input<string>>;
  /** `*_SECRET_REF` env vars: name → pinned version. */
  secretRefs: Record<string, SecretRefEnv>;
  /** Secret versions mounted as files, by volume name. */
  secretFiles?: Record<string, SecretFile>;
  /** Secrets the runtime account may read, by logical key (each granted `secretAccessor` on its own). */
  readableSecrets: Record<string, gcp.secretmanager.Secret>;
  /** Network and subnet for Direct VPC egress. */
  networkId: pulumi.Input<string>;
  subnetId: pulumi.Input<string>;
  minInstances: number;
  maxInstances: number;
  concurrency: number;
  cpu: string;
  memory: string;
  /** Request timeout in seconds; also how long one websocket may stay open. */
  requestTimeoutSeconds: number;
  /** Keep CPU allocated between requests. */
  alwaysOnCpu: boolean;
  launchStage: 'GA' | 'BETA';
  deletionProtection: boolean;
  /** Members (e.g. another project's Cloud Run service agent) that may pull images from the repository. */
  registryReaders?: string[];
  /** Path of the readiness endpoint (startup + readiness probes). Default `/readyz`. */
  readinessPath?: string;
  /** Path of the liveness endpoint. Default `/healthz`. */
  livenessPath?: string;
}

/** Validates an env map against the container contract; throws naming the variable. */
export function checkServiceEnv(env: Record<string, unknown>, secretRefs: Record<string, unknown>): void {
  for (const name of [...Object.keys(env), ...Object.keys(secretRefs)]) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(name)) throw new Error(`env ${name}: not a valid variable name`);
    if ((PLAIN_SECRET_ENV_NAMES as readonly string[]).includes(name)) {
      throw new Error(`env ${name}: secrets are passed only as *_SECRET_REF version references`);
    }
    if ((FORBIDDEN_ENV_NAMES as readonly string[]).includes(name)) throw new Error(`env ${name}: must not be set on the service`);
  }
  for (const name of Object.keys(secretRefs)) {
    if (!name.endsWith('_SECRET_REF')) throw new Error(`env ${name}: secret references must be named *_SECRET_REF`);
    if (name in env) throw new Error(`env ${name}: set both as plain env and as secret reference`);
  }
  for (const name of Object.keys(env)) {
    if (name.endsWith('_SECRET_REF')) throw new Error(`env ${name}: pass secret references through secretRefs`);
  }
}

/** Asserts a resolved secret ref is pinned to a numeric version. */
export function assertPinnedRef(name: string, ref: string): string {
  if (!/^projects\/[^/]+\/secrets\/[^/]+\/versions\/\d+$/.test(ref)) {
    throw new Error(`${name}: must be projects/P/secrets/S/versions/N pinned to a number, got ${ref}`);
  }
  return ref;
}

/** Asserts a mounted secret version is a number. */
export function assertPinnedVersion(name: string, version: string): string {
  if (!/^\d+$/.test(version)) throw new Error(`${name}: secret volume version must be a number, got ${version}`);
  return version;
}

/** The container env: plain values, then the `*_SECRET_REF` names (each asserted pinned), sorted by name. */
export function containerEnvs(env: Record<string, pulumi.Input<string>>, secretRefs: Record<string, SecretRefEnv>) {
  return [
    ...Object.keys(env)
      .sort()
      .map((name) => ({ name, value: env[name] })),
    ...Object.keys(secretRefs)
      .sort()
      .map((name) => ({ name, value: pulumi.output(secretRefs[name]!.versionName).apply((ref) => assertPinnedRef(name, ref)) })),
  ];
}

/** Volumes and mounts of secret versions mounted as files (versions asserted pinned). */
export function secretFileVolumes(secretFiles: Record<string, SecretFile>) {
  const files = Object.entries(secretFiles);
  return {
    volumes: files.map(([volume, f]) => ({
      name: volume,
      secret: {
        secret: f.secret,
        defaultMode: 0o444,
        items: [{ path: f.fileName, version: pulumi.output(f.version).apply((v) => assertPinnedVersion(volume, v)) }],
      },
    })),
    volumeMounts: files.map(([volume, f]) => ({ name: volume, mountPath: f.mountDir })),
  };
}

export class Service extends pulumi.ComponentResource {
  public readonly serviceAccount: gcp.serviceaccount.Account;
  public readonly repository: gcp.artifactregistry.Repository;
  public readonly service: gcp.cloudrunv2.Service;
  /** `serviceAccount:<email>` of the runtime identity. */
  public readonly member: pulumi.Output<string>;

  constructor(name: string, args: ServiceArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:Service`, name, {}, opts);
    checkServiceEnv(args.env, args.secretRefs);
    if (!/@sha256:[a-f0-9]{64}$/.test(args.image)) throw new Error(`image ${args.image}: must be pinned by digest`);
    const p = args.prefix;

    this.serviceAccount = new gcp.serviceaccount.Account(
      `${p}-run`,
      {
        project: args.project,
        accountId: `${p}-run`,
        displayName: 'Karaxas API runtime (Cloud Run)',
        description: 'Runtime identity of the API: reads its own secrets, writes audit archives. No project roles.',
      },
      { parent: this },
    );
    this.member = serviceAccountMember(this.serviceAccount.email);

    this.repository = new gcp.artifactregistry.Repository(
      `${p}-images`,
      {
        project: args.project,
        location: args.region,
        repositoryId: `${p}-images`,
        format: 'DOCKER',
        description: 'Karaxas API container images (deployed by digest)',
        dockerConfig: { immutableTags: true },
        labels: args.labels,
      },
      { parent: this },
    );

    (args.registryReaders ?? []).forEach((member, i) => {
      if (!/^serviceAccount:/.test(member)) throw new Error(`registryReaders: ${member} is not a service account`);
      new gcp.artifactregistry.RepositoryIamMember(
        `${p}-images-reader-${i}`,
        {
          project: this.repository.project,
          location: this.repository.location,
          repository: this.repository.name,
          role: 'roles/artifactregistry.reader',
          member,
        },
        { parent: this },
      );
    });

    // One grant per secret, to this account only.
    const grants = Object.entries(args.readableSecrets).map(
      ([key, secret]) =>
        new gcp.secretmanager.SecretIamMember(
          `${p}-run-reads-${key}`,
          {
            project: args.project,
            secretId: secret.secretId,
            role: 'roles/secretmanager.secretAccessor',
            member: this.member,
          },
          { parent: this },
        ),
    );

    const { volumes, volumeMounts } = secretFileVolumes(args.secretFiles ?? {});

    const readinessPath = args.readinessPath ?? '/readyz';
    const livenessPath = args.livenessPath ?? '/healthz';

    this.service = new gcp.cloudrunv2.Service(
      `${p}-api`,
      {
        project: args.project,
        name: `${p}-api`,
        location: args.region,
        description: 'Karaxas backend API',
        // Only the internal/external load balancer may reach the service; its run.app URL is off.
        ingress: 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER',
        defaultUriDisabled: true,
        // Authentication is the app's job (bearer tokens); the LB cannot mint IAM identities.
        invokerIamDisabled: true,
        launchStage: args.launchStage,
        deletionProtection: args.deletionProtection,
        labels: args.labels,
        template: {
          serviceAccount: this.serviceAccount.email,
          executionEnvironment: 'EXECUTION_ENVIRONMENT_GEN2',
          timeout: `${args.requestTimeoutSeconds}s`,
          maxInstanceRequestConcurrency: args.concurrency,
          scaling: { minInstanceCount: args.minInstances, maxInstanceCount: args.maxInstances },
          vpcAccess: {
            networkInterfaces: [{ network: args.networkId, subnetwork: args.subnetId }],
            egress: 'PRIVATE_RANGES_ONLY',
          },
          labels: args.labels,
          volumes,
          containers: [
            {
              name: 'api',
              image: args.image,
              ports: { name: 'http1', containerPort: CONTAINER_PORT },
              envs: containerEnvs(args.env, args.secretRefs),
              volumeMounts,
              resources: {
                limits: { cpu: args.cpu, memory: args.memory },
                cpuIdle: !args.alwaysOnCpu,
                startupCpuBoost: true,
              },
              startupProbe: {
                httpGet: { path: readinessPath, port: CONTAINER_PORT },
                initialDelaySeconds: 0,
                periodSeconds: 2,
                timeoutSeconds: 2,
                failureThreshold: 30,
              },
              readinessProbe: {
                httpGet: { path: readinessPath, port: CONTAINER_PORT },
                periodSeconds: 10,
                timeoutSeconds: 3,
                successThreshold: 1,
                failureThreshold: 3,
              },
              livenessProbe: {
                httpGet: { path: livenessPath, port: CONTAINER_PORT },
                periodSeconds: 15,
                timeoutSeconds: 3,
                failureThreshold: 3,
              },
            },
          ],
        },
        traffics: [{ type: 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST', percent: 100 }],
      },
      // The revision must not start before it may read its secrets.
      { parent: this, dependsOn: grants },
    );

    this.registerOutputs({
      serviceName: this.service.name,
      serviceAccountEmail: this.serviceAccount.email,
      repository: this.repository.name,
    });
  }
}
