/**
 * ArchiveJob: the monthly security-audit archive (seed runbook: "keep minimum 180 days hot,
 * archive older rows to cold storage monthly").
 *
 *   Cloud Scheduler (cron, its own account: may only run this job)
 *     → POST run.googleapis.com/v2/…/jobs/<job>:run
 *     → Cloud Run job `karaxas-ops archive-security-audit --to gs://<bucket>/<prefix>`
 *        (its own account: reads the DB password secret, writes under the archive prefix;
 *         nothing else), on the VPC to reach Cloud SQL's private IP, TLS as the service.
 *
 * The CLI records every archive in `admin_action_audit`; a failed execution or a failed
 * trigger alerts (Monitoring component).
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, serviceAccountMember, type BaseArgs } from './common.js';
import { checkServiceEnv, containerEnvs, secretFileVolumes, type SecretFile, type SecretRefEnv } from './service.js';

/** The CLI subcommand the job runs. */
export const ARCHIVE_SUBCOMMAND = 'archive-security-audit';

export interface ArchiveJobArgs extends BaseArgs {
  region: string;
  /** The API image (by digest): the CLI ships in it. */
  image: string;
  /** How the image starts the CLI, e.g. `['node', 'dist/app/cli/main.js']`. */
  command: string[];
  /** `gs://bucket/prefix/` the archive goes to. */
  destination: pulumi.Input<string>;
  /** Plain env: the database settings the app uses (DB_HOST, DB_NAME, DB_USER, DB_SSLMODE, …). */
  env: Record<string, pulumi.Input<string>>;
  /** `*_SECRET_REF` env: only the DB password. */
  secretRefs: Record<string, SecretRefEnv>;
  /** Secrets the job may read (one grant each): the DB password, and the server CA with verify-ca. */
  readableSecrets: Record<string, gcp.secretmanager.Secret>;
  /** Secret versions mounted as files (the server CA bundle with verify-ca). */
  secretFiles?: Record<string, SecretFile>;
  networkId: pulumi.Input<string>;
  subnetId: pulumi.Input<string>;
  /** Cron expression (5 fields) and its time zone. */
  schedule: string;
  timeZone: string;
  timeoutSeconds: number;
  maxRetries: number;
  deletionProtection: boolean;
}

export class ArchiveJob extends pulumi.ComponentResource {
  /** Runtime identity of the job. */
  public readonly serviceAccount: gcp.serviceaccount.Account;
  /** `serviceAccount:<email>` of the job's runtime identity (the archive bucket's writer). */
  public readonly member: pulumi.Output<string>;
  /** The identity Cloud Scheduler uses to start the job. */
  public readonly schedulerAccount: gcp.serviceaccount.Account;
  public readonly job: gcp.cloudrunv2.Job;
  public readonly trigger: gcp.cloudscheduler.Job;

  constructor(name: string, args: ArchiveJobArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:ArchiveJob`, name, {}, opts);
    checkServiceEnv(args.env, args.secretRefs);
    if (!/@sha256:[a-f0-9]{64}$/.test(args.image)) throw new Error(`image ${args.image}: must be pinned by digest`);
    const p = args.prefix;

    this.serviceAccount = new gcp.serviceaccount.Account(
      `${p}-archive`,
      {
        project: args.project,
        accountId: `${p}-archive`,
        displayName: 'Karaxas security-audit archive job',
        description: 'Runs archive-security-audit: reads the DB password secret, writes under the archive prefix. No project roles.',
      },
      { parent: this },
    );
    this.member = serviceAccountMember(this.serviceAccount.email);

    const grants = Object.entries(args.readableSecrets).map(
      ([key, secret]) =>
        new gcp.secretmanager.SecretIamMember(
          `${p}-archive-reads-${key}`,
          { project: args.project, secretId: secret.secretId, role: 'roles/secretmanager.secretAccessor', member: this.member },
          { parent: this },
        ),
    );

    const { volumes, volumeMounts } = secretFileVolumes(args.secretFiles ?? {});

    this.job = new gcp.cloudrunv2.Job(
      `${p}-archive`,
      {
        project: args.project,
        name: `${p}-archive`,
        location: args.region,
        deletionProtection: args.deletionProtection,
        labels: args.labels,
        template: {
          taskCount: 1,
          parallelism: 1,
          labels: args.labels,
          template: {
            serviceAccount: this.serviceAccount.email,
            timeout: `${args.timeoutSeconds}s`,
            maxRetries: args.maxRetries,
            executionEnvironment: 'EXECUTION_ENVIRONMENT_GEN2',
            vpcAccess: {
              networkInterfaces: [{ network: args.networkId, subnetwork: args.subnetId }],
              egress: 'PRIVATE_RANGES_ONLY',
            },
            volumes,
            containers: [
              {
                name: 'archive',
                image: args.image,
                commands: [args.command[0]!],
                args: [...args.command.slice(1), ARCHIVE_SUBCOMMAND, '--to', args.destination],
                envs: containerEnvs(args.env, args.secretRefs),
                volumeMounts,
                resources: { limits: { cpu: '1', memory: '512Mi' } },
              },
            ],
          },
        },
      },
      // The job must not start before it may read its secrets.
      { parent: this, dependsOn: grants },
    );

    this.schedulerAccount = new gcp.serviceaccount.Account(
      `${p}-archive-trigger`,
      {
        project: args.project,
        accountId: `${p}-archive-trigger`,
        displayName: 'Karaxas archive schedule (Cloud Scheduler)',
        description: 'May only start the security-audit archive job. No project roles.',
      },
      { parent: this },
    );
    // Run (and cancel) this one job, nothing else: no override of its command or env.
    const runGrant = new gcp.cloudrunv2.JobIamMember(
      `${p}-archive-trigger-runs-job`,
      {
        project: args.project,
        location: args.region,
        name: this.job.name,
        role: 'roles/run.jobsExecutor',
        member: serviceAccountMember(this.schedulerAccount.email),
      },
      { parent: this },
    );

    this.trigger = new gcp.cloudscheduler.Job(
      `${p}-archive-monthly`,
      {
        project: args.project,
        region: args.region,
        name: `${p}-archive-monthly`,
        description: 'Monthly security-audit archive (karaxas-ops archive-security-audit)',
        schedule: args.schedule,
        timeZone: args.timeZone,
        attemptDeadline: '180s',
        retryConfig: { retryCount: 3, minBackoffDuration: '60s', maxBackoffDuration: '600s' },
        httpTarget: {
          httpMethod: 'POST',
          uri: pulumi.interpolate`https://run.googleapis.com/v2/projects/${this.job.project}/locations/${this.job.location}/jobs/${this.job.name}:run`,
          oauthToken: {
            serviceAccountEmail: this.schedulerAccount.email,
            scope: 'https://www.googleapis.com/auth/cloud-platform',
          },
        },
      },
      { parent: this, dependsOn: [runGrant] },
    );

    this.registerOutputs({
      job: this.job.name,
      trigger: this.trigger.name,
      serviceAccountEmail: this.serviceAccount.email,
      schedulerAccountEmail: this.schedulerAccount.email,
    });
  }
}
