/**
 * `npm run infra:plan -- --stack <name>`: the offline review table.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { ROOT, runPlan } from './helpers.js';

function npmPlan(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('npm', ['run', '-s', 'infra:plan', '--', ...args], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

test('npm run infra:plan -- --stack prod prints the table, the outputs and the policy verdict', async (t) => {
  const run = await npmPlan(['--stack', 'prod']);
  t.is(run.code, 0, run.stderr);
  const out = run.stdout;
  t.regex(out, /Offline plan of stack "prod" \(Pulumi mocks: nothing was deployed/);
  t.regex(out, /^TYPE\s+NAME\s+SECURITY-RELEVANT SETTINGS$/m);
  t.regex(out, /cloudrunv2\.Service\s+karaxas-prod-api\s+ingress=INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER defaultUriDisabled=true/);
  t.regex(out, /secret ref JWT_SECRET_SECRET_REF → projects\/karaxas-prod\/secrets\/karaxas-prod-jwt-secret\/versions\/1/);
  t.regex(out, /sql\.DatabaseInstance\s+karaxas-prod-pg\s+POSTGRES_17/);
  t.regex(out, /ipv4Enabled=false privateNetwork=set sslMode=ENCRYPTED_ONLY/);
  t.regex(out, /deletionProtection=true deletionProtectionEnabled=true/);
  t.regex(out, /rule\s+3000 rate_based_ban auth-rate-ban \[300\/60s per IP, ban 900s\]/);
  t.regex(out, /rule\s+1090 deny\(403\)\s+PREVIEW waf-nodejs/);
  t.regex(out, /compute\.SSLPolicy\s+karaxas-prod-ssl-policy\s+profile=RESTRICTED minTlsVersion=TLS_1_2/);
  t.regex(out, /redirect only: httpsRedirect=true/);
  t.regex(out, /condition: assertion\.repository_id == '\d+'/);
  t.regex(out, /publicAccessPrevention=enforced uniformAccess=true/);
  t.regex(out, /note: karaxas-backend:image is not in Pulumi\.prod\.yaml; using a placeholder digest/);
  t.regex(out, /Policy pack \(infra\/policy, \d+ policies\):\n {2}no violations/);
  t.regex(out, /^\d+ resources\.$/m);
  // Secret values are never printed.
  t.regex(out, /generated, length 64 \(value never printed\)/);
  t.notRegex(out, /secretData=/);
});

test('the plan table of staging shows its own settings', async (t) => {
  const run = await runPlan('staging', { json: false });
  t.is(run.code, 0, run.stderr);
  t.regex(run.stdout, /logLevel=VERBOSE/);
  t.notRegex(run.stdout, /PREVIEW/);
  t.regex(run.stdout, /attribute\.deploy_gate\/branch-main/);
});

test('a policy violation makes the plan fail (exit 1) and names the policy', async (t) => {
  // Staging legitimately has deletion protection off and an unlocked archive; treated as a
  // production stack by the pack's config, the same resources violate two policies.
  const config = JSON.stringify({
    'cloud-sql-deletion-protection-in-production': { productionStacks: ['staging'] },
    'audit-archive-retention': { productionStacks: ['staging'] },
  });
  const run = await runPlan('staging', { extraArgs: ['--policy-config', config] });
  t.is(run.code, 1);
  const policies = new Set(run.json?.violations.map((v) => v.policy));
  t.deepEqual([...policies].sort(), ['audit-archive-retention', 'cloud-sql-deletion-protection-in-production']);
  const table = await runPlan('staging', { json: false, extraArgs: ['--policy-config', config] });
  t.is(table.code, 1);
  t.regex(table.stdout, /VIOLATION cloud-sql-deletion-protection-in-production karaxas-staging-pg: deletionProtection must be true in production/);
});

test('the program refuses what the config forbids before any policy runs', async (t) => {
  const bad = await runPlan('prod', { config: { auditArchive: { lockRetention: false } } });
  t.is(bad.code, 1);
  t.regex(bad.stderr, /karaxas-backend:auditArchive\.lockRetention: must be true in prod/);
});

test('usage errors exit 2; an unknown stack exits 1 naming the file', async (t) => {
  const none = await npmPlan([]);
  t.is(none.code, 2);
  t.regex(none.stderr, /--stack is required/);
  const unknown = await runPlan('nope');
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /cannot read Pulumi\.nope\.yaml/);
});
