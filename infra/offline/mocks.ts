/**
 * Pulumi mocks that answer like Google Cloud would, closely enough for the
 * program's outputs (version names, emails, self links, private IPs) to look
 * real, and that record every registered resource.
 */
import { createHash } from 'node:crypto';
import type * as pulumi from '@pulumi/pulumi';

/** The signature Pulumi uses to mark secret values in serialized properties. */
const SECRET_SIG_KEY = '4dabf18193072939515e22adb298388d';
const SECRET_SIG = '1b47061264138c4ac30d75fd1eb44270';

/** One resource as the program registered it. */
export interface RecordedResource {
  /** Provider type token, e.g. `gcp:cloudrunv2/service:Service`. */
  type: string;
  /** Logical (Pulumi) name. */
  name: string;
  /** Inputs with secrets unwrapped to their values. */
  inputs: Record<string, unknown>;
  /** Dotted paths in `inputs` that held secret values. */
  secretPaths: string[];
  /** Outputs the mock answered with (inputs plus computed properties). */
  outputs: Record<string, unknown>;
  /** Resource id. */
  id: string;
}

/** Replaces Pulumi's secret wrappers by their values and lists where they were. */
export function unwrapSecrets(value: unknown, path = '', found: string[] = []): unknown {
  if (Array.isArray(value)) return value.map((v, i) => unwrapSecrets(v, path ? `${path}.${i}` : String(i), found));
  if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    if (obj[SECRET_SIG_KEY] === SECRET_SIG) {
      found.push(path);
      return unwrapSecrets(obj.value, path, []);
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) out[k] = unwrapSecrets(v, path ? `${path}.${k}` : k, found);
    return out;
  }
  return value;
}

function digest(text: string, length: number, alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'): string {
  let out = '';
  let counter = 0;
  while (out.length < length) {
    const bytes = createHash('sha256').update(`${text}:${counter++}`).digest();
    for (const b of bytes) {
      if (out.length >= length) break;
      out += alphabet[b % alphabet.length];
    }
  }
  return out;
}

const COMPUTE_GLOBAL: Record<string, string> = {
  'gcp:compute/network:Network': 'networks',
  'gcp:compute/globalAddress:GlobalAddress': 'addresses',
  'gcp:compute/securityPolicy:SecurityPolicy': 'securityPolicies',
  'gcp:compute/backendService:BackendService': 'backendServices',
  'gcp:compute/uRLMap:URLMap': 'urlMaps',
  'gcp:compute/managedSslCertificate:ManagedSslCertificate': 'sslCertificates',
  'gcp:compute/sSLPolicy:SSLPolicy': 'sslPolicies',
  'gcp:compute/targetHttpsProxy:TargetHttpsProxy': 'targetHttpsProxies',
  'gcp:compute/targetHttpProxy:TargetHttpProxy': 'targetHttpProxies',
  'gcp:compute/globalForwardingRule:GlobalForwardingRule': 'forwardingRules',
};
const COMPUTE_REGIONAL: Record<string, string> = {
  'gcp:compute/subnetwork:Subnetwork': 'subnetworks',
  'gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup': 'networkEndpointGroups',
};

/** What the mocked `gcp.monitoring.getUptimeCheckIPs` answers (documentation ranges). */
export const MOCK_UPTIME_CHECK_IPS = [
  { ipAddress: '192.0.2.10', location: 'Oregon', region: 'USA' },
  { ipAddress: '192.0.2.11', location: 'Iowa', region: 'USA' },
  { ipAddress: '198.51.100.20', location: 'Belgium', region: 'EUROPE' },
  { ipAddress: '198.51.100.21', location: 'Belgium', region: 'EUROPE' },
  { ipAddress: '203.0.113.30', location: 'Singapore', region: 'ASIA_PACIFIC' },
  { ipAddress: '2001:db8::40', location: 'Sao Paulo', region: 'SOUTH_AMERICA' },
];

/** Mocks for one program run. */
export class GcpMocks implements pulumi.runtime.Mocks {
  public readonly resources: RecordedResource[] = [];
  private readonly versionCounters = new Map<string, number>();
  public readonly projectNumber: string;

  constructor(
    private readonly project: string,
    private readonly region: string,
  ) {
    this.projectNumber = String(100000000000 + (parseInt(digest(project, 8, '0123456789'), 10) % 899999999999));
  }

  newResource(args: pulumi.runtime.MockResourceArgs): { id: string | undefined; state: Record<string, unknown> } {
    const secretPaths: string[] = [];
    const inputs = unwrapSecrets(args.inputs, '', secretPaths) as Record<string, unknown>;
    const { id, state } = this.answer(args.type, args.name, inputs);
    if (!args.type.startsWith('pulumi:providers:')) {
      this.resources.push({ type: args.type, name: args.name, inputs, secretPaths, outputs: state, id });
    }
    return { id, state };
  }

  call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
    if (args.token === 'gcp:organizations/getProject:getProject') {
      return { projectId: this.project, number: this.projectNumber, name: this.project };
    }
    if (args.token === 'gcp:monitoring/getUptimeCheckIPs:getUptimeCheckIPs') {
      return { uptimeCheckIps: MOCK_UPTIME_CHECK_IPS };
    }
    return args.inputs as Record<string, unknown>;
  }

  private answer(type: string, logicalName: string, inputs: Record<string, unknown>): { id: string; state: Record<string, unknown> } {
    const project = (inputs.project as string | undefined) ?? this.project;
    const name = (inputs.name as string | undefined) ?? logicalName;
    const state: Record<string, unknown> = { ...inputs, project, name };
    let id = name;

    const globalCollection = COMPUTE_GLOBAL[type];
    const regionalCollection = COMPUTE_REGIONAL[type];
    if (globalCollection) {
      id = `projects/${project}/global/${globalCollection}/${name}`;
      state.selfLink = `https://www.googleapis.com/compute/v1/${id}`;
    } else if (regionalCollection) {
      const region = (inputs.region as string | undefined) ?? this.region;
      id = `projects/${project}/regions/${region}/${regionalCollection}/${name}`;
      state.selfLink = `https://www.googleapis.com/compute/v1/${id}`;
    }

    switch (type) {
      case 'gcp:compute/globalAddress:GlobalAddress':
        state.address = inputs.addressType === 'INTERNAL' ? '10.100.0.0' : '203.0.113.10';
        break;
      case 'gcp:servicenetworking/connection:Connection':
        id = `${String(inputs.network)}:${String(inputs.service)}`;
        state.peering = 'servicenetworking-googleapis-com';
        break;
      case 'gcp:sql/databaseInstance:DatabaseInstance':
        state.privateIpAddress = '10.100.0.3';
        state.publicIpAddress = '';
        state.connectionName = `${project}:${(inputs.region as string) ?? this.region}:${name}`;
        state.serverCaCerts = [{ cert: '-----BEGIN CERTIFICATE-----\nMOCKSERVERCA\n-----END CERTIFICATE-----\n' }];
        state.selfLink = `https://sqladmin.googleapis.com/sql/v1beta4/projects/${project}/instances/${name}`;
        break;
      case 'gcp:sql/database:Database':
      case 'gcp:sql/user:User':
        id = `${String(inputs.instance)}/${name}`;
        break;
      case 'gcp:secretmanager/secret:Secret':
        id = `projects/${project}/secrets/${String(inputs.secretId)}`;
        state.name = id;
        break;
      case 'gcp:secretmanager/secretVersion:SecretVersion': {
        const secret = String(inputs.secret);
        const n = (this.versionCounters.get(secret) ?? 0) + 1;
        this.versionCounters.set(secret, n);
        id = `${secret}/versions/${n}`;
        state.name = id;
        state.version = String(n);
        break;
      }
      case 'random:index/randomPassword:RandomPassword':
        state.result = digest(`password:${logicalName}`, Number(inputs.length));
        id = 'none';
        break;
      case 'random:index/randomBytes:RandomBytes': {
        const bytes = Buffer.from(digest(`bytes:${logicalName}`, Number(inputs.length) * 2, '0123456789abcdef'), 'hex');
        state.base64 = bytes.toString('base64');
        state.hex = bytes.toString('hex');
        id = 'none';
        break;
      }
      case 'gcp:serviceaccount/account:Account': {
        const email = `${String(inputs.accountId)}@${project}.iam.gserviceaccount.com`;
        id = `projects/${project}/serviceAccounts/${email}`;
        Object.assign(state, { email, name: id, member: `serviceAccount:${email}`, uniqueId: digest(email, 21, '0123456789') });
        break;
      }
      case 'gcp:cloudrunv2/service:Service':
        id = `projects/${project}/locations/${String(inputs.location)}/services/${name}`;
        state.uri = '';
        state.urls = [];
        break;
      case 'gcp:artifactregistry/repository:Repository':
        id = `projects/${project}/locations/${String(inputs.location)}/repositories/${String(inputs.repositoryId)}`;
        state.name = String(inputs.repositoryId);
        break;
      case 'gcp:iam/workloadIdentityPool:WorkloadIdentityPool':
        id = `projects/${this.projectNumber}/locations/global/workloadIdentityPools/${String(inputs.workloadIdentityPoolId)}`;
        state.name = id;
        break;
      case 'gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider':
        id = `projects/${this.projectNumber}/locations/global/workloadIdentityPools/${String(inputs.workloadIdentityPoolId)}/providers/${String(inputs.workloadIdentityPoolProviderId)}`;
        state.name = id;
        break;
      case 'gcp:storage/bucket:Bucket':
        state.url = `gs://${name}`;
        state.selfLink = `https://www.googleapis.com/storage/v1/b/${name}`;
        break;
      case 'gcp:projects/service:Service':
        id = `${project}/${String(inputs.service)}`;
        break;
      case 'gcp:cloudrunv2/job:Job':
        id = `projects/${project}/locations/${String(inputs.location)}/jobs/${name}`;
        break;
      case 'gcp:cloudscheduler/job:Job':
        id = `projects/${project}/locations/${String(inputs.region)}/jobs/${name}`;
        break;
      case 'gcp:monitoring/notificationChannel:NotificationChannel':
        id = `projects/${project}/notificationChannels/${digest(logicalName, 18, '0123456789')}`;
        state.name = id;
        break;
      case 'gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig':
        state.uptimeCheckId = `${logicalName}-${digest(logicalName, 6, '0123456789abcdef')}`;
        id = `projects/${project}/uptimeCheckConfigs/${String(state.uptimeCheckId)}`;
        state.name = id;
        break;
      case 'gcp:monitoring/alertPolicy:AlertPolicy':
        id = `projects/${project}/alertPolicies/${digest(logicalName, 19, '0123456789')}`;
        state.name = id;
        break;
      case 'gcp:logging/metric:Metric':
        id = name;
        break;
      default:
        if (!globalCollection && !regionalCollection) id = `${logicalName}-id`;
    }
    return { id, state };
  }
}
