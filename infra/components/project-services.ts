/**
 * ProjectServices: enables the Google APIs the program uses.
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, type BaseArgs } from './common.js';

/** APIs the perimeter needs. */
export const REQUIRED_APIS = [
  'artifactregistry.googleapis.com',
  'cloudscheduler.googleapis.com',
  'compute.googleapis.com',
  'iam.googleapis.com',
  'iamcredentials.googleapis.com',
  'logging.googleapis.com',
  'monitoring.googleapis.com',
  'run.googleapis.com',
  'secretmanager.googleapis.com',
  'servicenetworking.googleapis.com',
  'sqladmin.googleapis.com',
  'storage.googleapis.com',
  'sts.googleapis.com',
] as const;

export interface ProjectServicesArgs extends BaseArgs {
  /** APIs to enable; defaults to {@link REQUIRED_APIS}. */
  apis?: readonly string[];
}

/** Enables APIs without ever disabling them on destroy (other workloads may rely on them). */
export class ProjectServices extends pulumi.ComponentResource {
  /** The enabled services, for `dependsOn`. */
  public readonly services: gcp.projects.Service[];

  constructor(name: string, args: ProjectServicesArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:ProjectServices`, name, {}, opts);
    const apis = args.apis ?? REQUIRED_APIS;
    this.services = apis.map(
      (api) =>
        new gcp.projects.Service(
          `${args.prefix}-enable-${api.split('.')[0]}`,
          { project: args.project, service: api, disableOnDestroy: false, disableDependentServices: false },
          { parent: this },
        ),
    );
    this.registerOutputs({ apis: [...apis] });
  }
}
