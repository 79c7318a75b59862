/**
 * Small helpers shared by the components.
 */
import * as pulumi from '@pulumi/pulumi';

/** Arguments every component takes. */
export interface BaseArgs {
  /** Prefix of every cloud resource name this component creates, e.g. `karaxas-prod`. */
  prefix: string;
  /** GCP project id. */
  project: pulumi.Input<string>;
  /** Labels applied to every labelled resource. */
  labels?: Record<string, string>;
}

/** Token prefix of this project's component resource types. */
export const COMPONENT_TYPE_PREFIX = 'karaxas:infra';

/** Builds the standard labels of a stack. */
export function standardLabels(environment: string): Record<string, string> {
  return { app: 'karaxas-backend', environment, 'managed-by': 'pulumi' };
}

/** A short, stable hash (FNV-1a, hex) for resource name suffixes that must change with their content. */
export function shortHash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0').slice(0, 6);
}

/** IAM member string of a service account email. */
export function serviceAccountMember(email: pulumi.Input<string>): pulumi.Output<string> {
  return pulumi.interpolate`serviceAccount:${email}`;
}
