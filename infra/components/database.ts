/**
 * Database: Cloud SQL for PostgreSQL reachable on a private IP only, with
 * encrypted connections required, backups + point-in-time recovery, connection
 * logging, the application database and its user.
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, type BaseArgs } from './common.js';

/** Flags that make connection activity auditable and keep statement text out of logs. */
export const SECURITY_DATABASE_FLAGS: ReadonlyArray<{ name: string; value: string }> = [
  { name: 'log_connections', value: 'on' },
  { name: 'log_disconnections', value: 'on' },
  { name: 'log_lock_waits', value: 'on' },
  { name: 'log_min_error_statement', value: 'error' },
  { name: 'log_temp_files', value: '0' },
  { name: 'log_min_duration_statement', value: '-1' },
];

export interface DatabaseArgs extends BaseArgs {
  region: string;
  /** VPC self link/id the private IP lives in. */
  networkId: pulumi.Input<string>;
  /** Name of the reserved private services range. */
  allocatedIpRange: pulumi.Input<string>;
  /** Resources the instance must wait for (the private services connection). */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
  /** `POSTGRES_17` or newer. */
  databaseVersion: string;
  tier: string;
  edition: 'ENTERPRISE' | 'ENTERPRISE_PLUS';
  availabilityType: 'ZONAL' | 'REGIONAL';
  diskSizeGb: number;
  /**
   * Require client certificates (`TRUSTED_CLIENT_CERTIFICATE_REQUIRED`).
   * Default false: `ENCRYPTED_ONLY` (TLS required, certificates optional).
   */
  requireClientCertificates?: boolean;
  backupStartTime: string;
  retainedBackups: number;
  transactionLogRetentionDays: number;
  /** Turns on both deletion protections (Pulumi/Terraform-level and Cloud SQL API-level). Default true. */
  deletionProtection?: boolean;
  maintenanceDay: number;
  maintenanceHour: number;
  databaseName: string;
  userName: string;
  /** Password of the application user (a secret output of the Secrets component). */
  userPassword: pulumi.Input<string>;
  /**
   * Publish the server CA bundle as a Secret Manager secret, so the service can mount it as
   * a file for DB_SSLMODE=verify-ca (DB_SSL_ROOT_CERT is a path). Default false.
   */
  publishServerCa?: boolean;
}

export class Database extends pulumi.ComponentResource {
  public readonly instance: gcp.sql.DatabaseInstance;
  public readonly database: gcp.sql.Database;
  public readonly user: gcp.sql.User;
  /** Private IP address the app connects to (DB_HOST). */
  public readonly privateIp: pulumi.Output<string>;
  /** PEM bundle of the server CA certificates (all of them, so a CA rotation keeps working). */
  public readonly serverCaCert: pulumi.Output<string>;
  /** The published CA bundle (when `publishServerCa`). */
  public readonly serverCaSecret?: gcp.secretmanager.Secret;
  public readonly serverCaSecretVersion?: gcp.secretmanager.SecretVersion;

  constructor(name: string, args: DatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:Database`, name, {}, opts);
    const p = args.prefix;
    const protect = args.deletionProtection ?? true;

    this.instance = new gcp.sql.DatabaseInstance(
      `${p}-pg`,
      {
        project: args.project,
        name: `${p}-pg`,
        region: args.region,
        databaseVersion: args.databaseVersion,
        deletionProtection: protect,
        settings: {
          tier: args.tier,
          edition: args.edition,
          availabilityType: args.availabilityType,
          diskType: 'PD_SSD',
          diskSize: args.diskSizeGb,
          diskAutoresize: true,
          deletionProtectionEnabled: protect,
          retainBackupsOnDelete: true,
          userLabels: args.labels,
          ipConfiguration: {
            ipv4Enabled: false,
            privateNetwork: args.networkId,
            allocatedIpRange: args.allocatedIpRange,
            enablePrivatePathForGoogleCloudServices: false,
            sslMode: args.requireClientCertificates ? 'TRUSTED_CLIENT_CERTIFICATE_REQUIRED' : 'ENCRYPTED_ONLY',
            authorizedNetworks: [],
          },
          backupConfiguration: {
            enabled: true,
            pointInTimeRecoveryEnabled: true,
            startTime: args.backupStartTime,
            transactionLogRetentionDays: args.transactionLogRetentionDays,
            backupRetentionSettings: { retainedBackups: args.retainedBackups, retentionUnit: 'COUNT' },
          },
          databaseFlags: [...SECURITY_DATABASE_FLAGS],
          insightsConfig: { queryInsightsEnabled: true, recordClientAddress: false, recordApplicationTags: false },
          maintenanceWindow: { day: args.maintenanceDay, hour: args.maintenanceHour, updateTrack: 'stable' },
        },
      },
      { parent: this, dependsOn: args.dependsOn, protect },
    );

    this.database = new gcp.sql.Database(
      `${p}-db`,
      { project: args.project, instance: this.instance.name, name: args.databaseName },
      { parent: this, protect },
    );

    this.user = new gcp.sql.User(
      `${p}-db-user`,
      {
        project: args.project,
        instance: this.instance.name,
        name: args.userName,
        type: 'BUILT_IN',
        password: pulumi.secret(args.userPassword),
        // Postgres refuses to drop a role that owns objects; keep it on destroy.
        deletionPolicy: 'ABANDON',
      },
      { parent: this },
    );

    this.privateIp = this.instance.privateIpAddress;
    this.serverCaCert = this.instance.serverCaCerts.apply((certs) =>
      (certs ?? []).map((c) => c.cert ?? '').filter((c) => c.length > 0).join('\n'),
    );

    if (args.publishServerCa) {
      this.serverCaSecret = new gcp.secretmanager.Secret(
        `${p}-db-server-ca`,
        {
          project: args.project,
          secretId: `${p}-db-server-ca`,
          replication: { auto: {} },
          labels: { ...args.labels, 'secret-key': 'dbserverca' },
        },
        { parent: this },
      );
      this.serverCaSecretVersion = new gcp.secretmanager.SecretVersion(
        `${p}-db-server-ca-bundle`,
        { secret: this.serverCaSecret.id, secretData: this.serverCaCert, deletionPolicy: 'DISABLE' },
        { parent: this },
      );
    }

    this.registerOutputs({
      instanceName: this.instance.name,
      connectionName: this.instance.connectionName,
      privateIp: this.privateIp,
      databaseName: this.database.name,
      userName: this.user.name,
    });
  }
}
