/**
 * Edge: the global external Application Load Balancer in front of Cloud Run.
 *
 *   :443  forwarding rule → HTTPS proxy (managed cert, SSL policy TLS ≥ 1.2)
 *                         → URL map → backend service (Cloud Armor, logging)
 *                         → serverless NEG → Cloud Run
 *   :80   forwarding rule (same IP) → HTTP proxy → redirect-only URL map (301 to https)
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, shortHash, type BaseArgs } from './common.js';

export interface EdgeArgs extends BaseArgs {
  region: string;
  /** Name of the Cloud Run service behind the serverless NEG. */
  cloudRunServiceName: pulumi.Input<string>;
  /** Host names of the managed certificate. */
  domains: string[];
  /** Cloud Armor policy attached to every backend service (self link or name). */
  securityPolicy: pulumi.Input<string>;
  /** SSL policy profile: MODERN or RESTRICTED. Default MODERN. */
  sslProfile?: 'MODERN' | 'RESTRICTED';
  /** Minimum TLS version; never below 1.2. Default TLS_1_2. */
  minTlsVersion?: 'TLS_1_2' | 'TLS_1_3';
  /** Fraction of requests written to the LB request log. Default 1. */
  logSampleRate?: number;
}

export class Edge extends pulumi.ComponentResource {
  public readonly address: gcp.compute.GlobalAddress;
  public readonly neg: gcp.compute.RegionNetworkEndpointGroup;
  public readonly backendService: gcp.compute.BackendService;
  public readonly urlMap: gcp.compute.URLMap;
  public readonly certificate: gcp.compute.ManagedSslCertificate;
  public readonly sslPolicy: gcp.compute.SSLPolicy;
  public readonly httpsProxy: gcp.compute.TargetHttpsProxy;
  public readonly httpsForwardingRule: gcp.compute.GlobalForwardingRule;
  public readonly redirectUrlMap: gcp.compute.URLMap;
  public readonly httpProxy: gcp.compute.TargetHttpProxy;
  public readonly httpForwardingRule: gcp.compute.GlobalForwardingRule;
  /** Every backend service of the load balancer (each one has the Armor policy). */
  public readonly backendServices: gcp.compute.BackendService[];

  constructor(name: string, args: EdgeArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:Edge`, name, {}, opts);
    const p = args.prefix;
    if (args.domains.length === 0) throw new Error('edge: at least one domain is required');

    this.address = new gcp.compute.GlobalAddress(
      `${p}-lb-ip`,
      { project: args.project, name: `${p}-lb-ip`, addressType: 'EXTERNAL', ipVersion: 'IPV4', labels: args.labels },
      { parent: this },
    );

    this.neg = new gcp.compute.RegionNetworkEndpointGroup(
      `${p}-run-neg`,
      {
        project: args.project,
        name: `${p}-run-neg`,
        region: args.region,
        networkEndpointType: 'SERVERLESS',
        cloudRun: { service: args.cloudRunServiceName },
      },
      { parent: this },
    );

    this.backendService = new gcp.compute.BackendService(
      `${p}-backend`,
      {
        project: args.project,
        name: `${p}-backend`,
        description: 'Karaxas API (Cloud Run) behind Cloud Armor',
        loadBalancingScheme: 'EXTERNAL_MANAGED',
        protocol: 'HTTPS',
        backends: [{ group: this.neg.id }],
        securityPolicy: args.securityPolicy,
        logConfig: { enable: true, sampleRate: args.logSampleRate ?? 1 },
      },
      { parent: this },
    );
    this.backendServices = [this.backendService];

    this.urlMap = new gcp.compute.URLMap(
      `${p}-urlmap`,
      { project: args.project, name: `${p}-urlmap`, defaultService: this.backendService.id },
      { parent: this },
    );

    // Certificates are immutable: a domain change creates a new one (new name) before the old goes.
    const certName = `${p}-cert-${shortHash([...args.domains].sort().join(','))}`;
    this.certificate = new gcp.compute.ManagedSslCertificate(
      certName,
      { project: args.project, name: certName, type: 'MANAGED', managed: { domains: args.domains } },
      { parent: this },
    );

    this.sslPolicy = new gcp.compute.SSLPolicy(
      `${p}-ssl-policy`,
      {
        project: args.project,
        name: `${p}-ssl-policy`,
        profile: args.sslProfile ?? 'MODERN',
        minTlsVersion: args.minTlsVersion ?? 'TLS_1_2',
      },
      { parent: this },
    );

    this.httpsProxy = new gcp.compute.TargetHttpsProxy(
      `${p}-https-proxy`,
      {
        project: args.project,
        name: `${p}-https-proxy`,
        urlMap: this.urlMap.id,
        sslCertificates: [this.certificate.id],
        sslPolicy: this.sslPolicy.id,
      },
      { parent: this },
    );

    this.httpsForwardingRule = new gcp.compute.GlobalForwardingRule(
      `${p}-https`,
      {
        project: args.project,
        name: `${p}-https`,
        loadBalancingScheme: 'EXTERNAL_MANAGED',
        ipProtocol: 'TCP',
        portRange: '443',
        ipAddress: this.address.id,
        target: this.httpsProxy.id,
        labels: args.labels,
      },
      { parent: this },
    );

    // Port 80 only ever answers with a redirect to https on the same host, path and query.
    this.redirectUrlMap = new gcp.compute.URLMap(
      `${p}-http-redirect`,
      {
        project: args.project,
        name: `${p}-http-redirect`,
        description: 'HTTP to HTTPS redirect only',
        defaultUrlRedirect: { httpsRedirect: true, redirectResponseCode: 'MOVED_PERMANENTLY_DEFAULT', stripQuery: false },
      },
      { parent: this },
    );

    this.httpProxy = new gcp.compute.TargetHttpProxy(
      `${p}-http-proxy`,
      { project: args.project, name: `${p}-http-proxy`, urlMap: this.redirectUrlMap.id },
      { parent: this },
    );

    this.httpForwardingRule = new gcp.compute.GlobalForwardingRule(
      `${p}-http`,
      {
        project: args.project,
        name: `${p}-http`,
        loadBalancingScheme: 'EXTERNAL_MANAGED',
        ipProtocol: 'TCP',
        portRange: '80',
        ipAddress: this.address.id,
        target: this.httpProxy.id,
        labels: args.labels,
      },
      { parent: this },
    );

    this.registerOutputs({
      ipAddress: this.address.address,
      backendService: this.backendService.name,
      urlMap: this.urlMap.name,
    });
  }
}
