/**
 * `npm run infra:plan -- --stack <name>`: runs the Pulumi program offline
 * (mocks, no cloud credentials) and prints every resource with its
 * security-relevant settings, the stack outputs, and the policy pack's verdict.
 *
 * Options:
 *   --stack <name>          staging | prod (reads Pulumi.<name>.yaml)           [required]
 *   --config <key>=<value>  override a config key (JSON values allowed), repeatable
 *   --secret <key>=<value>  provide a secret config value, repeatable
 *   --image <ref>           image by digest (default: a labelled placeholder if the stack has none)
 *   --policy-config <json>  policy pack config, as for `pulumi preview --policy-pack-config`
 *                           (e.g. '{"cloud-sql-deletion-protection-in-production":{"productionStacks":["staging"]}}')
 *   --json                  machine-readable output (secret values masked)
 *   --no-policy             skip the policy pack
 *
 * Exit codes: 0 ok, 1 invalid config / program error / policy violation, 2 usage.
 */
import { parseArgs } from 'node:util';
import { readStackConfig, runOffline, type OfflineRunResult } from './offline/run.js';
import { renderTable } from './offline/summarize.js';
import type { RecordedResource } from './offline/mocks.js';
import { evaluatePolicies, type Violation } from './policy/evaluate.js';
import { policies } from './policy/policies.js';

const IMAGE_KEY = 'karaxas-backend:image';
const PLACEHOLDER_DIGEST = `sha256:${'0'.repeat(64)}`;

function usage(message: string): never {
  console.error(`${message}\nusage: npm run infra:plan -- --stack <staging|prod> [--json] [--config key=value]… [--secret key=value]… [--image ref]`);
  process.exit(2);
}

function parseAssignments(values: string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values ?? []) {
    const eq = v.indexOf('=');
    if (eq <= 0) usage(`${what} expects key=value, got ${v}`);
    let key = v.slice(0, eq);
    if (!key.includes(':')) key = `karaxas-backend:${key}`;
    out[key] = v.slice(eq + 1);
  }
  return out;
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur: Record<string, unknown> = target;
  for (const part of parts.slice(0, -1)) {
    const next = cur[part];
    if (!next || typeof next !== 'object') return;
    cur = next as Record<string, unknown>;
  }
  const last = parts[parts.length - 1]!;
  if (last in cur) cur[last] = value;
}

/** A resource for JSON output: inputs with secret values masked, and identifying outputs only. */
function publicView(r: RecordedResource) {
  const inputs = structuredClone(r.inputs);
  for (const p of r.secretPaths) setPath(inputs, p, '[secret]');
  const pick = ['id', 'name', 'email', 'selfLink', 'address', 'version', 'privateIpAddress', 'connectionName'];
  const outputs = Object.fromEntries(pick.filter((k) => k in r.outputs).map((k) => [k, r.outputs[k]]));
  return { type: r.type, name: r.name, id: r.id, inputs, secretPaths: r.secretPaths, outputs };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      stack: { type: 'string' },
      config: { type: 'string', multiple: true },
      secret: { type: 'string', multiple: true },
      image: { type: 'string' },
      'policy-config': { type: 'string' },
      json: { type: 'boolean', default: false },
      'no-policy': { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.stack) usage('--stack is required');
  const stack = values.stack;

  const overrides: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(parseAssignments(values.config, '--config'))) overrides[key] = raw;
  const secrets = parseAssignments(values.secret, '--secret');

  let packConfig: Record<string, object> = {};
  if (values['policy-config']) {
    try {
      packConfig = JSON.parse(values['policy-config']) as Record<string, object>;
    } catch {
      usage('--policy-config expects JSON');
    }
  }

  const { config } = readStackConfig(stack);
  let placeholderImage = false;
  if (values.image) overrides[IMAGE_KEY] = values.image;
  else if (!(IMAGE_KEY in overrides) && !(IMAGE_KEY in config)) {
    const project = String(overrides['gcp:project'] ?? config['gcp:project'] ?? 'project');
    const region = String(overrides['gcp:region'] ?? config['gcp:region'] ?? 'region');
    overrides[IMAGE_KEY] = `${region}-docker.pkg.dev/${project}/karaxas-${stack}-images/karaxas-api@${PLACEHOLDER_DIGEST}`;
    placeholderImage = true;
  }

  let result: OfflineRunResult;
  try {
    result = await runOffline({ stack, overrides, secrets });
  } catch (err) {
    console.error((err as Error).message);
    return 1;
  }

  const violations: Violation[] = values['no-policy']
    ? []
    : await evaluatePolicies(
        policies,
        result.resources
          .filter((r) => !r.type.startsWith('karaxas:'))
          .map((r) => ({ type: r.type, name: r.name, props: { ...r.outputs, ...r.inputs, id: r.id } })),
        stack,
        packConfig,
      );

  if (values.json) {
    console.log(
      JSON.stringify(
        {
          stack,
          placeholderImage,
          encryptedKeys: result.encryptedKeys,
          outputs: result.outputs,
          resources: result.resources.map(publicView),
          violations,
        },
        null,
        2,
      ),
    );
  } else {
    console.log(`Offline plan of stack "${stack}" (Pulumi mocks: nothing was deployed, no cloud credentials used)\n`);
    if (placeholderImage) console.log(`note: ${IMAGE_KEY} is not in Pulumi.${stack}.yaml; using a placeholder digest (CI sets the real one)\n`);
    if (result.encryptedKeys.length) console.log(`note: encrypted keys not readable offline: ${result.encryptedKeys.join(', ')}\n`);
    console.log(renderTable(result.resources));
    console.log('\nStack outputs:');
    for (const [k, v] of Object.entries(result.outputs)) {
      console.log(`  ${k} = ${typeof v === 'string' ? v : JSON.stringify(v)}`);
    }
    console.log(`\nPolicy pack (infra/policy, ${policies.length} policies):`);
    if (values['no-policy']) console.log('  skipped');
    else if (violations.length === 0) console.log('  no violations');
    else for (const v of violations) console.log(`  VIOLATION ${v.policy} ${v.resource ?? ''}: ${v.message}`);
    const custom = result.resources.filter((r) => !r.type.startsWith('karaxas:')).length;
    console.log(`\n${custom} resources.`);
  }
  return violations.length > 0 ? 1 : 0;
}

process.on('unhandledRejection', (err) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
