/**
 * Secrets: the Secret Manager secrets of the runtime (JWT secret, ops API
 * token, DB password, TOTP encryption key) and their versions, with rotation
 * driven by stack config.
 *
 * Each secret has numbered *generations*. `rotation` is the generation the
 * service is pinned to; `confirmed` is the highest generation the operator has
 * confirmed. The runbook's four steps map onto two config changes:
 *
 *  1. create new secret version        — bump `rotation` (N → N+1): a new version is created,
 *  2. deploy with the updated ref      —   and the same `pulumi up` rolls Cloud Run to a revision
 *                                          pinned to it; the previous version stays enabled (and,
 *                                          for the JWT secret, referenced as verify-only),
 *  3. validate auth + ops + DB         — operator checks (docs/infra.md),
 *  4. disable the old version          — set `confirmed` = N+1: the previous version is disabled
 *                                          and no longer referenced.
 *
 * Generations older than the previous one leave the program; their versions
 * are disabled, never destroyed (`deletionPolicy: DISABLE`).
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import * as random from '@pulumi/random';
import { COMPONENT_TYPE_PREFIX, type BaseArgs } from './common.js';

/** How a generation's value is produced when none is supplied through stack config. */
export type SecretGenerator =
  /** Alphanumeric string (safe in connection strings and headers). */
  | { kind: 'password'; length: number }
  /** Random bytes, base64-encoded (for encryption keys). */
  | { kind: 'bytes'; length: number };

/** Rotation state of one secret, from stack config. */
export interface RotationState {
  /** Generation the service is pinned to (≥ 1). */
  rotation: number;
  /** Highest confirmed generation: `rotation` (settled) or `rotation - 1` (rotation in progress). */
  confirmed: number;
}

export interface SecretSpec {
  /** Logical key, e.g. `jwtSecret`. */
  key: string;
  /** Secret Manager secret id. */
  secretId: string;
  /** Generator used when no value is supplied. */
  generate: SecretGenerator;
  /** Value from `pulumi config set --secret`; applies to the current generation. */
  value?: pulumi.Input<string>;
  rotation: RotationState;
}

export interface SecretsArgs extends BaseArgs {
  secrets: SecretSpec[];
  /** Refuse to delete the secrets (Secret Manager-level deletion protection). Default true. */
  deletionProtection?: boolean;
}

/** One generation of a secret as created by the program. */
export interface SecretGeneration {
  generation: number;
  version: gcp.secretmanager.SecretVersion;
  /** Whether the version is enabled. */
  enabled: boolean;
}

/** The resources and references of one managed secret. */
export interface ManagedSecret {
  key: string;
  secret: gcp.secretmanager.Secret;
  /** Version name of the current generation: `projects/P/secrets/S/versions/N`. */
  currentRef: pulumi.Output<string>;
  /** Version name of the previous generation while its rotation is unconfirmed. */
  previousRef?: pulumi.Output<string>;
  /** Value of the current generation (a Pulumi secret). */
  value: pulumi.Output<string>;
  generations: SecretGeneration[];
}

/** Validates a rotation state; throws with a message naming the secret. */
export function checkRotation(key: string, r: RotationState): void {
  if (!Number.isInteger(r.rotation) || r.rotation < 1) throw new Error(`${key}: rotation must be an integer ≥ 1`);
  if (r.confirmed !== r.rotation && r.confirmed !== r.rotation - 1) {
    throw new Error(`${key}: confirmed must be rotation (${r.rotation}) or rotation - 1, got ${r.confirmed}`);
  }
}

export class Secrets extends pulumi.ComponentResource {
  public readonly secrets: Record<string, ManagedSecret> = {};

  constructor(name: string, args: SecretsArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:Secrets`, name, {}, opts);
    for (const spec of args.secrets) {
      this.secrets[spec.key] = this.createSecret(args, spec);
    }
    const refs: Record<string, pulumi.Output<string>> = {};
    for (const [key, s] of Object.entries(this.secrets)) refs[key] = s.currentRef;
    this.registerOutputs({ currentRefs: refs });
  }

  private createSecret(args: SecretsArgs, spec: SecretSpec): ManagedSecret {
    checkRotation(spec.key, spec.rotation);
    const { rotation, confirmed } = spec.rotation;
    const secret = new gcp.secretmanager.Secret(
      spec.secretId,
      {
        project: args.project,
        secretId: spec.secretId,
        replication: { auto: {} },
        labels: { ...args.labels, 'secret-key': spec.key.toLowerCase() },
        deletionProtection: args.deletionProtection ?? true,
      },
      { parent: this },
    );

    const generations: SecretGeneration[] = [];
    let currentValue: pulumi.Output<string> | undefined;
    // The previous generation stays in the program (enabled while unconfirmed,
    // disabled afterwards); older ones are removed, which disables them.
    const first = Math.max(1, rotation - 1);
    for (let g = first; g <= rotation; g++) {
      const isCurrent = g === rotation;
      const enabled = isCurrent || confirmed < rotation;
      // A supplied value applies to the current generation; older generations ignore their
      // data input (below), so it only matters when a generation is first created.
      const data = spec.value !== undefined ? pulumi.secret(spec.value) : this.generate(spec, g);
      const version = new gcp.secretmanager.SecretVersion(
        `${spec.secretId}-g${g}`,
        {
          secret: secret.id,
          secretData: data,
          enabled,
          deletionPolicy: 'DISABLE',
        },
        {
          parent: this,
          // A generation's value never changes once created: a supplied value for the
          // next generation must not rewrite the one before it.
          ignoreChanges: isCurrent ? [] : ['secretData'],
        },
      );
      generations.push({ generation: g, version, enabled });
      if (isCurrent) currentValue = pulumi.secret(data);
    }

    const current = generations[generations.length - 1]!;
    const previous = generations.length > 1 && confirmed < rotation ? generations[0] : undefined;
    return {
      key: spec.key,
      secret,
      currentRef: current.version.name,
      previousRef: previous?.version.name,
      value: currentValue!,
      generations,
    };
  }

  private generate(spec: SecretSpec, generation: number): pulumi.Output<string> {
    const name = `${spec.secretId}-g${generation}-value`;
    if (spec.generate.kind === 'bytes') {
      return new random.RandomBytes(name, { length: spec.generate.length }, { parent: this }).base64;
    }
    return new random.RandomPassword(
      name,
      { length: spec.generate.length, special: false, minLower: 4, minUpper: 4, minNumeric: 4 },
      { parent: this },
    ).result;
  }
}
