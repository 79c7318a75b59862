/**
 * Edge: the global external Application Load Balancer in front of Cloud Run.
 *
 *   :443  forwarding rule → HTTPS proxy (managed cert, SSL policy TLS ≥ 1.2)
 *                         → URL map: only the app's public prefixes → API backend service
 *                                    /ops, /ops/*               → ops backend service
 *                                    anything else / other host → 404 at the edge
 *                         → backend services (each with its Cloud Armor policy, logging)
 *                         → serverless NEGs → Cloud Run
 *   :80   forwarding rule (same IP) → HTTP proxy → redirect-only URL map (301 to https)
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, shortHash, type BaseArgs } from './common.js';
import { OPS_PREFIX } from './armor-rules.js';

/** Prefixes the app serves publicly: the prefix itself and everything below it. */
export const PUBLIC_PREFIXES = ['/auth', '/ws', '/chat', '/release'] as const;
/** Single public paths (health, the OpenAPI document). */
export const PUBLIC_PATHS = ['/healthz', '/readyz', '/openapi.json'] as const;
/** The status the load balancer answers itself for every path it does not route. */
export const EDGE_NOT_FOUND_STATUS = 404;

/** URL-map path patterns of a prefix: the prefix and everything below it. */
export const prefixPaths = (prefix: string): string[] => [prefix, `${prefix}/*`];

/**
 * A route that never reaches a backend: fault injection aborts 100 % of requests with 404 at the
 * load balancer (global external Application Load Balancers support it; the backend is only
 * named because a route action needs one).
 */
export function edgeNotFound(backendService: pulumi.Input<string>) {
  return {
    weightedBackendServices: [{ backendService, weight: 100 }],
    faultInjectionPolicy: { abort: { httpStatus: EDGE_NOT_FOUND_STATUS, percentage: 100 } },
  };
}

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
  /** Cloud Armor policy of the ops backend service (/ops/*). */
  opsSecurityPolicy: pulumi.Input<string>;
  /** Identity-Aware Proxy on the ops backend: the principals allowed through. */
  opsIap?: { members: string[] };
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
  /** The backend service of /ops/* (its own Armor policy; IAP when configured). */
  public readonly opsBackendService: gcp.compute.BackendService;
  /** Every backend service of the load balancer (each one has an Armor policy). */
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

    // /ops/* has a backend service of its own, so it can carry its own Armor policy (an allow
    // list with a default deny) and, when configured, IAP. Its own NEG for the same service.
    const opsNeg = new gcp.compute.RegionNetworkEndpointGroup(
      `${p}-ops-neg`,
      {
        project: args.project,
        name: `${p}-ops-neg`,
        region: args.region,
        networkEndpointType: 'SERVERLESS',
        cloudRun: { service: args.cloudRunServiceName },
      },
      { parent: this },
    );
    this.opsBackendService = new gcp.compute.BackendService(
      `${p}-ops-backend`,
      {
        project: args.project,
        name: `${p}-ops-backend`,
        description: 'Karaxas ops API (/ops/*): restricted at the edge',
        loadBalancingScheme: 'EXTERNAL_MANAGED',
        protocol: 'HTTPS',
        backends: [{ group: opsNeg.id }],
        securityPolicy: args.opsSecurityPolicy,
        logConfig: { enable: true, sampleRate: 1 },
        ...(args.opsIap ? { iap: { enabled: true } } : {}),
      },
      { parent: this },
    );
    (args.opsIap?.members ?? []).forEach((member, i) => {
      new gcp.iap.WebBackendServiceIamMember(
        `${p}-ops-iap-${i}`,
        {
          project: args.project,
          webBackendService: this.opsBackendService.name,
          role: 'roles/iap.httpsResourceAccessor',
          member,
        },
        { parent: this },
      );
    });
    this.backendServices = [this.backendService, this.opsBackendService];

    // Only the app's public prefixes reach the API; /ops reaches the restricted backend;
    // any other path, and any other host, is answered 404 by the load balancer itself.
    const api = this.backendService.id;
    this.urlMap = new gcp.compute.URLMap(
      `${p}-urlmap`,
      {
        project: args.project,
        name: `${p}-urlmap`,
        description: 'Public prefixes of the app; /ops restricted; everything else 404 at the edge',
        defaultRouteAction: edgeNotFound(api),
        hostRules: [{ hosts: args.domains, pathMatcher: 'app' }],
        pathMatchers: [
          {
            name: 'app',
            defaultRouteAction: edgeNotFound(api),
            pathRules: [
              ...PUBLIC_PREFIXES.map((prefix) => ({ paths: prefixPaths(prefix), service: api })),
              { paths: [...PUBLIC_PATHS], service: api },
              { paths: prefixPaths(OPS_PREFIX), service: this.opsBackendService.id },
            ],
          },
        ],
      },
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
      opsBackendService: this.opsBackendService.name,
      urlMap: this.urlMap.name,
    });
  }
}
