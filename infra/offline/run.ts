/**
 * Runs the Pulumi program offline, under mocks, for one stack: reads
 * `Pulumi.<stack>.yaml`, applies overrides, sets mocks and config, and only
 * then imports the program. One run per process (the program is an ES module,
 * evaluated once).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as pulumi from '@pulumi/pulumi';
import YAML from 'yaml';
import { GcpMocks, unwrapSecrets, type RecordedResource } from './mocks.js';

export const PROJECT_NAME = 'karaxas-backend';
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface StackConfigFile {
  /** Flat config map as the Pulumi engine hands it to the program (objects as JSON). */
  config: Record<string, string>;
  /** Keys stored encrypted (`secure:`), which cannot be read offline. */
  encryptedKeys: string[];
}

/** Reads `Pulumi.<stack>.yaml` into the flat map Pulumi passes to programs. */
export function readStackConfig(stack: string, root = REPO_ROOT): StackConfigFile {
  if (!/^[A-Za-z0-9_.-]+$/.test(stack)) throw new Error(`invalid stack name ${stack}`);
  const file = path.join(root, `Pulumi.${stack}.yaml`);
  let doc: { config?: Record<string, unknown> };
  try {
    doc = YAML.parse(readFileSync(file, 'utf8')) ?? {};
  } catch (err) {
    throw new Error(`cannot read ${path.relative(root, file)}: ${(err as Error).message}`);
  }
  const config: Record<string, string> = {};
  const encryptedKeys: string[] = [];
  for (const [key, value] of Object.entries(doc.config ?? {})) {
    if (value && typeof value === 'object' && 'secure' in (value as object)) {
      encryptedKeys.push(key);
      continue;
    }
    config[key] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return { config, encryptedKeys };
}

export interface OfflineRunOptions {
  stack: string;
  /** Config overrides: full key → value (objects are JSON-encoded); `null` removes the key. */
  overrides?: Record<string, unknown>;
  /** Secret config values (full key → plain value), as `pulumi config set --secret` would provide. */
  secrets?: Record<string, string>;
  /** Program entry; defaults to infra/index.ts. */
  program?: string;
  root?: string;
}

export interface OfflineRunResult {
  stack: string;
  resources: RecordedResource[];
  /** Stack outputs, resolved (secrets unwrapped). */
  outputs: Record<string, unknown>;
  /** Config keys that are encrypted in the stack file and were not available. */
  encryptedKeys: string[];
  projectNumber: string;
}

function resolveOutput(value: unknown): Promise<unknown> {
  if (pulumi.Output.isInstance(value)) {
    return new Promise((resolve) => {
      (value as pulumi.Output<unknown>).apply((v) => {
        resolve(v);
        return v;
      });
    });
  }
  if (Array.isArray(value)) return Promise.all(value.map(resolveOutput));
  if (value && typeof value === 'object') {
    return Promise.all(
      Object.entries(value as Record<string, unknown>).map(async ([k, v]) => [k, await resolveOutput(v)] as const),
    ).then((entries) => Object.fromEntries(entries));
  }
  return Promise.resolve(value);
}

/** Runs the program once under mocks. Call at most once per process. */
export async function runOffline(options: OfflineRunOptions): Promise<OfflineRunResult> {
  const root = options.root ?? REPO_ROOT;
  const { config, encryptedKeys } = readStackConfig(options.stack, root);
  for (const [key, value] of Object.entries(options.overrides ?? {})) {
    if (value === null || value === undefined) delete config[key];
    else config[key] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  for (const [key, value] of Object.entries(options.secrets ?? {})) config[key] = value;

  const mocks = new GcpMocks(config['gcp:project'] ?? 'unset-project', config['gcp:region'] ?? 'unset-region');
  await pulumi.runtime.setMocks(mocks, PROJECT_NAME, options.stack, false);
  pulumi.runtime.setAllConfig(config, Object.keys(options.secrets ?? {}));

  const program = options.program ?? path.join(root, 'infra', 'index.ts');
  const mod = (await import(pathToFileURL(program).href)) as Record<string, unknown>;
  const outputs: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(mod)) outputs[key] = unwrapSecrets(await resolveOutput(value));
  // Wait until every registration has been answered.
  const runtime = pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> };
  if (runtime.waitForRPCs) await runtime.waitForRPCs();
  else await pulumi.runtime.disconnect();
  return { stack: options.stack, resources: mocks.resources, outputs, encryptedKeys, projectNumber: mocks.projectNumber };
}
