/**
 * Network: a custom VPC with one regional subnet for Cloud Run Direct VPC
 * egress, and private services access so Cloud SQL gets a private IP only.
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, type BaseArgs } from './common.js';

export interface NetworkArgs extends BaseArgs {
  /** Region of the subnet (same as Cloud Run and Cloud SQL). */
  region: string;
  /** CIDR of the subnet Cloud Run instances take their addresses from (at least a /26). */
  subnetCidr: string;
  /** Prefix length of the range reserved for Google-managed services (Cloud SQL). */
  privateServicesPrefixLength: number;
  /** Enable VPC flow logs on the subnet. Default true. */
  flowLogs?: boolean;
}

/** Custom-mode VPC: no auto subnets, no default firewall rules beyond the implied deny-ingress. */
export class Network extends pulumi.ComponentResource {
  public readonly network: gcp.compute.Network;
  public readonly subnet: gcp.compute.Subnetwork;
  /** The reserved peering range for private services access. */
  public readonly privateServicesRange: gcp.compute.GlobalAddress;
  /** The private services connection; Cloud SQL must depend on it. */
  public readonly privateServicesConnection: gcp.servicenetworking.Connection;

  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:Network`, name, {}, opts);
    const p = args.prefix;

    this.network = new gcp.compute.Network(
      `${p}-vpc`,
      {
        project: args.project,
        name: `${p}-vpc`,
        autoCreateSubnetworks: false,
        routingMode: 'REGIONAL',
        description: 'Karaxas backend: Cloud Run egress and Cloud SQL private IP',
      },
      { parent: this },
    );

    this.subnet = new gcp.compute.Subnetwork(
      `${p}-run-subnet`,
      {
        project: args.project,
        name: `${p}-run-subnet`,
        region: args.region,
        network: this.network.id,
        ipCidrRange: args.subnetCidr,
        privateIpGoogleAccess: true,
        logConfig:
          args.flowLogs === false
            ? undefined
            : { aggregationInterval: 'INTERVAL_5_SEC', flowSampling: 0.5, metadata: 'INCLUDE_ALL_METADATA' },
      },
      { parent: this },
    );

    this.privateServicesRange = new gcp.compute.GlobalAddress(
      `${p}-private-services`,
      {
        project: args.project,
        name: `${p}-private-services`,
        purpose: 'VPC_PEERING',
        addressType: 'INTERNAL',
        prefixLength: args.privateServicesPrefixLength,
        network: this.network.id,
      },
      { parent: this },
    );

    this.privateServicesConnection = new gcp.servicenetworking.Connection(
      `${p}-private-services-connection`,
      {
        network: this.network.id,
        service: 'servicenetworking.googleapis.com',
        reservedPeeringRanges: [this.privateServicesRange.name],
      },
      { parent: this },
    );

    this.registerOutputs({
      networkId: this.network.id,
      subnetId: this.subnet.id,
      privateServicesRange: this.privateServicesRange.name,
    });
  }
}
