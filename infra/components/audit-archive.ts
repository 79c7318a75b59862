/**
 * AuditArchive: the Cloud Storage bucket that receives monthly security-audit
 * exports (`karaxas-ops archive-security-audit --to gs://…`).
 *
 * Uniform access, public access prevention enforced, a retention policy
 * (locked in prod, so nobody — including project owners — can shorten it or
 * delete archives early), and the runtime account may create and read objects
 * only under the archive prefix.
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, type BaseArgs } from './common.js';

export interface AuditArchiveArgs extends BaseArgs {
  bucketName: string;
  location: string;
  storageClass: 'STANDARD' | 'NEARLINE' | 'COLDLINE' | 'ARCHIVE';
  /** Objects can be neither deleted nor overwritten for this many days. */
  retentionDays: number;
  /** Lock the retention policy (irreversible). */
  lockRetention: boolean;
  /** The only prefix writers may create objects under, ending with `/`. */
  objectPrefix: string;
  /** IAM members (e.g. `serviceAccount:…`) allowed to write archives. */
  writers: Record<string, pulumi.Input<string>>;
}

/** IAM condition expression limiting access to objects under `prefix`. */
export function archivePathCondition(bucketName: string, prefix: string): string {
  return `resource.name.startsWith("projects/_/buckets/${bucketName}/objects/${prefix}")`;
}

export class AuditArchive extends pulumi.ComponentResource {
  public readonly bucket: gcp.storage.Bucket;
  /** `gs://bucket/prefix` to pass to the archive command. */
  public readonly archiveUri: pulumi.Output<string>;

  constructor(name: string, args: AuditArchiveArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:AuditArchive`, name, {}, opts);
    const p = args.prefix;
    if (!args.objectPrefix.endsWith('/')) throw new Error('auditArchive.objectPrefix must end with /');

    this.bucket = new gcp.storage.Bucket(
      `${p}-audit-archive`,
      {
        project: args.project,
        name: args.bucketName,
        location: args.location,
        storageClass: args.storageClass,
        uniformBucketLevelAccess: true,
        publicAccessPrevention: 'enforced',
        forceDestroy: false,
        retentionPolicy: {
          retentionPeriod: String(args.retentionDays * 86400),
          isLocked: args.lockRetention,
        },
        softDeletePolicy: { retentionDurationSeconds: 30 * 86400 },
        labels: { ...args.labels, purpose: 'security-audit-archive' },
      },
      { parent: this, protect: args.lockRetention },
    );

    const condition = {
      title: 'security-audit-archive-prefix',
      description: `Only objects under ${args.objectPrefix}`,
      expression: archivePathCondition(args.bucketName, args.objectPrefix),
    };
    for (const [label, member] of Object.entries(args.writers)) {
      // Create (not overwrite or delete: the retention policy forbids that too) …
      new gcp.storage.BucketIAMMember(
        `${p}-archive-${label}-create`,
        { bucket: this.bucket.name, role: 'roles/storage.objectCreator', member, condition },
        { parent: this },
      );
      // … and read back what was written, to verify the export before deleting rows.
      new gcp.storage.BucketIAMMember(
        `${p}-archive-${label}-read`,
        { bucket: this.bucket.name, role: 'roles/storage.objectViewer', member, condition },
        { parent: this },
      );
    }

    this.archiveUri = pulumi.interpolate`gs://${this.bucket.name}/${args.objectPrefix}`;
    this.registerOutputs({ bucket: this.bucket.name, archiveUri: this.archiveUri });
  }
}
