/**
 * Helpers for the offline infra tests: run the Pulumi program under mocks
 * (in this process, or in a child process through `infra/plan.ts --json`)
 * and query the registered resources.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RecordedResource } from '../../infra/offline/mocks.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A syntactically valid image pinned by digest, used when a stack file has none. */
export const TEST_IMAGE = `europe-west1-docker.pkg.dev/karaxas-test/karaxas-images/karaxas-api@sha256:${'ab'.repeat(32)}`;

export const T = {
  cloudRun: 'gcp:cloudrunv2/service:Service',
  sqlInstance: 'gcp:sql/databaseInstance:DatabaseInstance',
  sqlUser: 'gcp:sql/user:User',
  secret: 'gcp:secretmanager/secret:Secret',
  secretVersion: 'gcp:secretmanager/secretVersion:SecretVersion',
  secretIam: 'gcp:secretmanager/secretIamMember:SecretIamMember',
  armor: 'gcp:compute/securityPolicy:SecurityPolicy',
  backend: 'gcp:compute/backendService:BackendService',
  urlMap: 'gcp:compute/uRLMap:URLMap',
  sslPolicy: 'gcp:compute/sSLPolicy:SSLPolicy',
  httpsProxy: 'gcp:compute/targetHttpsProxy:TargetHttpsProxy',
  httpProxy: 'gcp:compute/targetHttpProxy:TargetHttpProxy',
  forwardingRule: 'gcp:compute/globalForwardingRule:GlobalForwardingRule',
  address: 'gcp:compute/globalAddress:GlobalAddress',
  neg: 'gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup',
  cert: 'gcp:compute/managedSslCertificate:ManagedSslCertificate',
  wifPool: 'gcp:iam/workloadIdentityPool:WorkloadIdentityPool',
  wifProvider: 'gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider',
  serviceAccount: 'gcp:serviceaccount/account:Account',
  serviceAccountKey: 'gcp:serviceaccount/key:Key',
  serviceAccountIam: 'gcp:serviceaccount/iAMMember:IAMMember',
  projectIam: 'gcp:projects/iAMMember:IAMMember',
  bucket: 'gcp:storage/bucket:Bucket',
  bucketIam: 'gcp:storage/bucketIAMMember:BucketIAMMember',
  repository: 'gcp:artifactregistry/repository:Repository',
  network: 'gcp:compute/network:Network',
  subnet: 'gcp:compute/subnetwork:Subnetwork',
  randomPassword: 'random:index/randomPassword:RandomPassword',
  randomBytes: 'random:index/randomBytes:RandomBytes',
  job: 'gcp:cloudrunv2/job:Job',
  jobIam: 'gcp:cloudrunv2/jobIamMember:JobIamMember',
  scheduler: 'gcp:cloudscheduler/job:Job',
  uptimeCheck: 'gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig',
  alertPolicy: 'gcp:monitoring/alertPolicy:AlertPolicy',
  notificationChannel: 'gcp:monitoring/notificationChannel:NotificationChannel',
  logMetric: 'gcp:logging/metric:Metric',
  iapMember: 'gcp:iap/webBackendServiceIamMember:WebBackendServiceIamMember',
} as const;

/** Minimal resource shape shared by in-process and JSON results. */
export interface Res {
  type: string;
  name: string;
  id: string;
  inputs: Record<string, unknown>;
  secretPaths: string[];
  outputs: Record<string, unknown>;
}

export const ofType = <R extends Res>(resources: R[], type: string): R[] => resources.filter((r) => r.type === type);

export function only<R extends Res>(resources: R[], type: string): R {
  const found = ofType(resources, type);
  if (found.length !== 1) throw new Error(`expected exactly one ${type}, found ${found.length}`);
  return found[0]!;
}

export function named<R extends Res>(resources: R[], name: string): R {
  const found = resources.find((r) => r.name === name);
  if (!found) throw new Error(`no resource named ${name}`);
  return found;
}

/** Reads a nested property (`a.b.0.c`). */
export function get(value: unknown, dotted: string): unknown {
  let cur: unknown = value;
  for (const part of dotted.split('.')) {
    if (cur === null || cur === undefined) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

export type Env = { name: string; value?: string };

/** The Cloud Armor rules of a policy, by its resource name (`karaxas-<stack>-armor` / `-ops-armor`). */
export function armorRules(resources: Res[], name: string): ArmorRuleShape[] {
  return named(resources, name).inputs.rules as ArmorRuleShape[];
}

/** A Cloud Armor rule as recorded (the provider's input shape). */
export interface ArmorRuleShape {
  action: string;
  priority: number;
  preview?: boolean;
  description?: string;
  match?: { expr?: { expression?: string }; versionedExpr?: string; config?: { srcIpRanges?: string[] } };
  rateLimitOptions?: {
    enforceOnKey?: string;
    exceedAction?: string;
    banDurationSec?: number;
    rateLimitThreshold?: { count?: number; intervalSec?: number };
  };
}

/** The catalog key of a rule (`[key] description`). */
export const ruleKey = (r: ArmorRuleShape): string => /^\[([^\]]+)\]/.exec(r.description ?? '')?.[1] ?? '';

/** The container env of the (single) Cloud Run service, as a map. */
export function cloudRunEnv(resources: Res[]): Record<string, string> {
  const svc = only(resources, T.cloudRun);
  const envs = (get(svc.inputs, 'template.containers.0.envs') as Env[] | undefined) ?? [];
  return Object.fromEntries(envs.map((e) => [e.name, e.value ?? '']));
}

export interface PlanJson {
  stack: string;
  outputs: Record<string, unknown>;
  resources: Res[];
  violations: Array<{ policy: string; resource?: string; message: string }>;
}

export interface PlanRun {
  code: number;
  stdout: string;
  stderr: string;
  json?: PlanJson;
}

export interface PlanOptions {
  /** Config overrides (full or short keys); objects are JSON-encoded. */
  config?: Record<string, unknown>;
  /** Secret config values. */
  secrets?: Record<string, string>;
  image?: string;
  json?: boolean;
  extraArgs?: string[];
}

/** Runs `infra/plan.ts` in a child process (a fresh program run per call). */
export function runPlan(stack: string, options: PlanOptions = {}): Promise<PlanRun> {
  const args = ['--import=tsx', path.join(ROOT, 'infra', 'plan.ts'), '--stack', stack];
  if (options.json !== false) args.push('--json');
  args.push('--image', options.image ?? TEST_IMAGE);
  for (const [k, v] of Object.entries(options.config ?? {})) args.push('--config', `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  for (const [k, v] of Object.entries(options.secrets ?? {})) args.push('--secret', `${k}=${v}`);
  args.push(...(options.extraArgs ?? []));
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      let json: PlanJson | undefined;
      if (options.json !== false && stdout.trim().startsWith('{')) json = JSON.parse(stdout) as PlanJson;
      resolve({ code, stdout, stderr, json });
    });
  });
}

/** Runs the plan and fails loudly unless it succeeded with JSON output. */
export async function planJson(stack: string, options: PlanOptions = {}): Promise<PlanJson> {
  const run = await runPlan(stack, options);
  if (!run.json || (run.code !== 0 && run.json.violations.length === 0)) {
    throw new Error(`plan --stack ${stack} failed (${run.code}): ${run.stderr || run.stdout}`);
  }
  return run.json;
}

/** Recorded resources as the shared `Res` shape. */
export const asRes = (resources: RecordedResource[]): Res[] => resources;
