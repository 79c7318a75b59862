/**
 * The rules the GitHub Actions workflows must keep (docs/ci.md), checked on the
 * parsed YAML: least-privilege permissions, actions pinned to full commit SHAs,
 * Workload Identity Federation as the only way into Google Cloud, fork-safe
 * previews, and the jobs, triggers and ordering each workflow must have.
 */
import test from 'ava';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { parse } from 'yaml';

type Dict = Record<string, unknown>;
interface Step extends Dict {
  id?: string;
  uses?: string;
  run?: string;
  with?: Dict;
  env?: Dict;
  name?: string;
}
interface Job extends Dict {
  permissions?: Dict | string;
  steps?: Step[];
  needs?: string | string[];
  if?: string;
  environment?: string | { name: string; url?: string };
  strategy?: { matrix?: Dict };
  services?: Dict;
  env?: Dict;
}
interface Workflow {
  file: string;
  text: string;
  on: Dict;
  permissions: unknown;
  concurrency: unknown;
  jobs: Record<string, Job>;
}

const DIR = '.github/workflows';
const REQUIRED = ['ci.yml', 'security-scan.yml', 'preview.yml', 'deploy.yml'];
const AUTH_ACTION = 'google-github-actions/auth';

function load(file: string): Workflow {
  const text = readFileSync(join(DIR, file), 'utf8');
  const doc = parse(text) as Dict;
  // YAML 1.1 readers turn a bare `on:` key into `true`; the `yaml` package does not.
  const on = (doc.on ?? doc.true) as Dict | string | string[];
  const normalised: Dict =
    typeof on === 'string' ? { [on]: null } : Array.isArray(on) ? Object.fromEntries(on.map((e) => [e, null])) : on;
  return {
    file,
    text,
    on: normalised,
    permissions: doc.permissions,
    concurrency: doc.concurrency,
    jobs: doc.jobs as Record<string, Job>,
  };
}

const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f));
const workflows = files.map(load);
const wf = (file: string): Workflow => {
  const found = workflows.find((w) => w.file === file);
  if (!found) throw new Error(`${file} is missing`);
  return found;
};
const allJobs = (): Array<[Workflow, string, Job]> =>
  workflows.flatMap((w) => Object.entries(w.jobs).map(([name, job]): [Workflow, string, Job] => [w, name, job]));
const steps = (job: Job): Step[] => job.steps ?? [];
const usesAction = (step: Step, action: string): boolean => (step.uses ?? '').split('@')[0] === action;
const runs = (job: Job, pattern: RegExp): boolean => steps(job).some((s) => typeof s.run === 'string' && pattern.test(s.run));
const needsOf = (job: Job): string[] => (job.needs === undefined ? [] : Array.isArray(job.needs) ? job.needs : [job.needs]);
/** All jobs `name` waits for, directly or through other jobs. */
function upstream(w: Workflow, name: string, seen = new Set<string>()): Set<string> {
  for (const n of needsOf(w.jobs[name] ?? {})) {
    if (!seen.has(n)) {
      seen.add(n);
      upstream(w, n, seen);
    }
  }
  return seen;
}
const hasIdTokenWrite = (job: Job): boolean =>
  typeof job.permissions === 'object' && job.permissions !== null && job.permissions['id-token'] === 'write';
const authenticatesToGcp = (job: Job): boolean => steps(job).some((s) => usesAction(s, AUTH_ACTION));

test('the four workflows exist and parse', (t) => {
  for (const f of REQUIRED) t.true(files.includes(f), `${f} exists`);
  for (const w of workflows) {
    t.truthy(w.jobs, `${w.file} has jobs`);
    t.true(Object.keys(w.jobs).length > 0);
  }
});

test('every workflow: top-level permissions are exactly contents: read', (t) => {
  for (const w of workflows) t.deepEqual(w.permissions, { contents: 'read' }, w.file);
});

test('every workflow has a concurrency group', (t) => {
  for (const w of workflows) {
    const c = w.concurrency as { group?: unknown } | undefined;
    t.true(typeof c?.group === 'string' && c.group.length > 0, w.file);
  }
  const deploy = wf('deploy.yml').concurrency as { 'cancel-in-progress'?: unknown };
  t.is(deploy['cancel-in-progress'], false, 'a deploy in flight is never cancelled');
});

test('every job has a timeout and job-level permissions never widen beyond what it needs', (t) => {
  const allowedWrites = new Set(['id-token', 'security-events', 'pull-requests']);
  for (const [w, name, job] of allJobs()) {
    t.true(typeof job['timeout-minutes'] === 'number', `${w.file}:${name} timeout-minutes`);
    if (job.permissions === undefined) continue;
    t.is(typeof job.permissions, 'object', `${w.file}:${name} permissions is a mapping, not read-all/write-all`);
    for (const [scope, level] of Object.entries(job.permissions as Dict)) {
      if (level === 'write') t.true(allowedWrites.has(scope), `${w.file}:${name} may not write ${scope}`);
    }
  }
});

const USES_LINE = /^\s*(?:-\s+)?uses:\s*["']?([^\s"'#]+)["']?\s*(?:#\s*(.*))?$/;

test('every action is pinned to a full commit SHA with its version as a comment', (t) => {
  const versionsBySha = new Map<string, string>();
  let count = 0;
  for (const w of workflows) {
    for (const line of w.text.split('\n')) {
      const m = USES_LINE.exec(line);
      if (!m) continue;
      const ref = m[1] ?? '';
      const comment = m[2] ?? '';
      if (ref.startsWith('./')) continue;
      count++;
      if (ref.startsWith('docker://')) {
        t.regex(ref, /@sha256:[0-9a-f]{64}$/, `${w.file}: ${ref} pinned by digest`);
        continue;
      }
      t.regex(ref, /^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/, `${w.file}: ${ref} pinned to a 40-hex commit`);
      t.regex(comment, /^v\d+\.\d+\.\d+\b/, `${w.file}: ${ref} carries "# vX.Y.Z"`);
      const sha = ref.split('@')[1] ?? '';
      const version = /^v\d+\.\d+\.\d+/.exec(comment)?.[0] ?? '';
      const known = versionsBySha.get(sha);
      if (known !== undefined) t.is(version, known, `${ref} is labelled consistently`);
      versionsBySha.set(sha, version);
    }
  }
  // The parsed `uses:` values and the raw lines agree (no pin hidden from the line scan).
  const parsed = allJobs().flatMap(([, , job]) => steps(job).map((s) => s.uses).filter((u): u is string => !!u));
  t.is(parsed.filter((u) => !u.startsWith('./')).length, count);
  t.true(count > 0);
});

test('one version of each action across all workflows', (t) => {
  const refs = new Map<string, Set<string>>();
  for (const [, , job] of allJobs()) {
    for (const s of steps(job)) {
      if (!s.uses || s.uses.startsWith('./')) continue;
      // codeql-action/init and /analyze are one repository, one version.
      const [path = '', sha = ''] = s.uses.split('@');
      const repo = path.split('/').slice(0, 2).join('/');
      refs.set(repo, (refs.get(repo) ?? new Set()).add(sha));
    }
  }
  for (const [repo, shas] of refs) t.is(shas.size, 1, `${repo} pinned once`);
});

/** The step of a preview job that picks the stack's identity from repository variables. */
const identityStep = (job: Job): Step | undefined => steps(job).find((s) => s.id === 'identity');

test('Google Cloud auth is Workload Identity Federation only', (t) => {
  let authSteps = 0;
  for (const [w, name, job] of allJobs()) {
    for (const s of steps(job).filter((st) => usesAction(st, AUTH_ACTION))) {
      authSteps++;
      const withs = s.with ?? {};
      t.false('credentials_json' in withs, `${w.file}:${name} has no credentials_json`);
      if (w.file === 'preview.yml') {
        // Each stack's own read-only preview identity, chosen from variables by the identity step.
        t.is(withs.workload_identity_provider, '${{ steps.identity.outputs.provider }}', `${w.file}:${name}`);
        t.is(withs.service_account, '${{ steps.identity.outputs.account }}', `${w.file}:${name}`);
        t.deepEqual(identityStep(job)?.env, {
          STAGING_PROVIDER: '${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}',
          STAGING_ACCOUNT: '${{ vars.GCP_PREVIEW_SERVICE_ACCOUNT }}',
          PROD_PROVIDER: '${{ vars.PROD_GCP_WORKLOAD_IDENTITY_PROVIDER }}',
          PROD_ACCOUNT: '${{ vars.PROD_GCP_PREVIEW_SERVICE_ACCOUNT }}',
        });
        continue;
      }
      t.is(withs.workload_identity_provider, '${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}', `${w.file}:${name}`);
      t.is(withs.service_account, '${{ vars.GCP_SERVICE_ACCOUNT }}', `${w.file}:${name}`);
    }
    for (const s of steps(job)) {
      if (usesAction(s, 'google-github-actions/setup-gcloud')) {
        t.false('service_account_key' in (s.with ?? {}), `${w.file}:${name} setup-gcloud without a key`);
      }
    }
  }
  t.true(authSteps >= 8, 'preview + build + two deploys + four post-deploy checks authenticate');
});

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const p = join(dir, entry);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

test('no service-account keys or other long-lived credentials anywhere in .github', (t) => {
  const forbidden: Array<[RegExp, string]> = [
    [/credentials_json/, 'credentials_json'],
    [/service_account_key/, 'service_account_key'],
    [/"type"\s*:\s*"service_account"/, 'a service-account JSON key'],
    [/"private_key(_id)?"\s*:/, 'a private key field'],
    [/-----BEGIN [A-Z ]*PRIVATE KEY-----/, 'a PEM private key'],
    [/GOOGLE_(APPLICATION_)?CREDENTIALS\s*:/, 'a credentials file passed by hand'],
    [/\bGCP_SA_KEY\b|\bGOOGLE_CREDENTIALS\b/, 'a key secret'],
  ];
  const all = walk('.github');
  t.true(all.length >= REQUIRED.length);
  for (const file of all) {
    t.false(/\.(json|p12|pem|key)$/i.test(file) && /key|cred|account/i.test(file), `${file} looks like a key file`);
    const text = readFileSync(file, 'utf8');
    for (const [re, what] of forbidden) t.false(re.test(text), `${file} contains ${what}`);
  }
});

test('id-token: write only on the jobs that authenticate to Google Cloud, and on all of them', (t) => {
  for (const w of workflows) {
    t.false(JSON.stringify(w.permissions).includes('id-token'), `${w.file}: no top-level id-token`);
  }
  for (const [w, name, job] of allJobs()) {
    t.is(hasIdTokenWrite(job), authenticatesToGcp(job), `${w.file}:${name}`);
  }
});

test('checkouts never persist the token; run scripts never interpolate expressions', (t) => {
  for (const [w, name, job] of allJobs()) {
    for (const s of steps(job)) {
      if (usesAction(s, 'actions/checkout')) {
        t.is(s.with?.['persist-credentials'], false, `${w.file}:${name} checkout persist-credentials: false`);
      }
      if (typeof s.run === 'string') {
        // Values reach scripts through env:, never by ${{ }} text substitution (script injection).
        t.false(s.run.includes('${{'), `${w.file}:${name} step "${s.name ?? s.run.split('\n')[0]}"`);
      }
    }
  }
});

test('no workflow uses pull_request_target or workflow_run', (t) => {
  for (const w of workflows) {
    t.false('pull_request_target' in w.on, w.file);
    t.false('workflow_run' in w.on, w.file);
    const code = w.text
      .split('\n')
      .filter((l) => !/^\s*#/.test(l))
      .join('\n');
    t.false(/pull_request_target/.test(code), w.file);
  }
});

const pushesMain = (w: Workflow): boolean => {
  const push = w.on.push as { branches?: string[] } | null | undefined;
  return push !== undefined && push !== null && (push.branches ?? []).includes('main');
};

test('ci.yml: triggers, node matrix, lint/typecheck/test/infra jobs, service containers, coverage', (t) => {
  const w = wf('ci.yml');
  t.true('pull_request' in w.on);
  t.true(pushesMain(w));

  const all = Object.values(w.jobs);
  t.true(all.some((j) => runs(j, /^npm run lint$/m)), 'npm run lint');
  t.true(all.some((j) => runs(j, /^npm run typecheck$/m)), 'npm run typecheck');
  t.true(all.some((j) => runs(j, /^npm run infra:test$/m)), 'npm run infra:test');
  t.true(all.some((j) => runs(j, /scripts\/lint-workflows\.sh/)), 'actionlint');
  for (const j of all) t.true(runs(j, /^npm ci\b/m), 'every job installs with npm ci');

  const testJob = all.find((j) => runs(j, /^npm test$/m));
  if (!testJob) return t.fail('a job runs npm test');
  const nodes = (testJob.strategy?.matrix?.node ?? []) as string[];
  t.deepEqual([...nodes].sort(), ['20', '22', '24']);
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } };
  for (const n of nodes) t.true(semver.intersects(`${n}.x`, pkg.engines.node), `node ${n} is allowed by engines`);
  t.false(semver.intersects('21.x', pkg.engines.node), 'engines still excludes 21');

  const services = testJob.services ?? {};
  t.regex(String((services.postgres as Dict | undefined)?.image), /^postgres:\d+/);
  t.regex(String((services.redis as Dict | undefined)?.image), /^redis:\d+/);
  const serviceRun = steps(testJob).find((s) => s.run === 'npm test' && s.env?.DATABASE_URL !== undefined);
  t.deepEqual(
    serviceRun && {
      DATABASE_URL: serviceRun.env?.DATABASE_URL,
      DB_SSLMODE: serviceRun.env?.DB_SSLMODE,
      REDIS_URL: serviceRun.env?.REDIS_URL,
    },
    {
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
      DB_SSLMODE: 'disable',
      REDIS_URL: 'redis://127.0.0.1:6379',
    },
  );
  t.true(
    steps(testJob).some((s) => s.run === 'npm test' && s.env?.DATABASE_URL === undefined),
    'a pass on the embedded PostgreSQL too',
  );
  t.true(
    steps(testJob).some((s) => usesAction(s, 'actions/upload-artifact') && String(s.with?.path).startsWith('coverage')),
    'coverage is uploaded as an artifact',
  );
  for (const [name, job] of Object.entries(w.jobs)) t.false(authenticatesToGcp(job), `ci:${name} needs no cloud`);
});

test('security-scan.yml: triggers and every gate', (t) => {
  const w = wf('security-scan.yml');
  t.true('pull_request' in w.on);
  t.true(pushesMain(w));
  const schedule = w.on.schedule as Array<{ cron: string }> | undefined;
  t.true(Array.isArray(schedule) && schedule.length > 0, 'scheduled');
  // Weekly: day-of-month and month are wildcards, one day of the week.
  t.regex(schedule?.[0]?.cron ?? '', /^\S+ \S+ \* \* [0-6]$/);

  const all = Object.entries(w.jobs);
  const find = (pred: (j: Job) => boolean): [string, Job] | undefined => all.find(([, j]) => pred(j));

  const audit = find((j) => runs(j, /npm audit --omit=dev --audit-level=high/));
  t.truthy(audit, 'npm audit of production dependencies at high');
  t.true(audit !== undefined && runs(audit[1], /check-accepted-findings\.ts --npm-audit/), 'audit filtered by accepted findings');
  t.true(all.some(([, j]) => runs(j, /^npx tsx scripts\/check-accepted-findings\.ts$/m)), 'expired acceptances fail the scan');

  const codeql = find((j) => steps(j).some((s) => usesAction(s, 'github/codeql-action/init')));
  const init = codeql && steps(codeql[1]).find((s) => usesAction(s, 'github/codeql-action/init'));
  t.is(init?.with?.languages, 'javascript-typescript');
  t.regex(String(init?.with?.queries), /security-extended/);
  t.true(codeql !== undefined && steps(codeql[1]).some((s) => usesAction(s, 'github/codeql-action/analyze')));
  t.is((codeql?.[1].permissions as Dict | undefined)?.['security-events'], 'write');

  const gitleaks = find((j) => steps(j).some((s) => usesAction(s, 'gitleaks/gitleaks-action')));
  const checkout = gitleaks && steps(gitleaks[1]).find((s) => usesAction(s, 'actions/checkout'));
  t.is(checkout?.with?.['fetch-depth'], 0, 'gitleaks sees the whole history');

  const review = find((j) => steps(j).some((s) => usesAction(s, 'actions/dependency-review-action')));
  t.regex(String(review?.[1].if), /github\.event_name == 'pull_request'/);

  const image = find((j) => steps(j).some((s) => usesAction(s, 'aquasecurity/trivy-action')));
  const build = image && steps(image[1]).find((s) => usesAction(s, 'docker/build-push-action'));
  t.is(build?.with?.file, 'Dockerfile');
  t.is(build?.with?.push, false);
  const trivy = image && steps(image[1]).find((s) => usesAction(s, 'aquasecurity/trivy-action'));
  t.is(trivy?.with?.severity, 'CRITICAL');
  t.is(String(trivy?.with?.['exit-code']), '1');
  t.is(trivy?.with?.['image-ref'], build?.with?.tags, 'scans the image it built');
  t.true(image !== undefined && runs(image[1], /--write-trivyignore \.trivyignore/));
  t.is(trivy?.with?.trivyignores, '.trivyignore');

  t.true(all.some(([, j]) => runs(j, /^bash scripts\/lint-workflows\.sh$/m)), 'actionlint on the workflows');
  for (const [name, job] of all) t.false(authenticatesToGcp(job), `security-scan:${name} needs no cloud`);
});

test('preview.yml: pull requests only, fork-safe, both stacks with the policy pack, comment without cloud access', (t) => {
  const w = wf('preview.yml');
  t.deepEqual(Object.keys(w.on), ['pull_request']);
  for (const [name, job] of Object.entries(w.jobs)) {
    t.true(
      (job.if ?? '').includes('github.event.pull_request.head.repo.full_name == github.repository'),
      `preview:${name} is skipped for forks`,
    );
  }
  const preview = Object.values(w.jobs).find(authenticatesToGcp);
  if (!preview) return t.fail('a job authenticates for the preview');
  t.deepEqual(preview.strategy?.matrix?.stack, ['staging', 'prod']);
  t.is(preview.env?.STACK, '${{ matrix.stack }}');
  t.true(runs(preview, /pulumi preview --stack "\$STACK" --policy-pack infra\/policy/));
  t.false(JSON.stringify(w.jobs).includes('pulumi up'), 'a preview never applies');
  t.false(
    typeof preview.permissions === 'object' && (preview.permissions as Dict)['pull-requests'] === 'write',
    'the job holding cloud credentials cannot write to the pull request',
  );
  const commenter = Object.values(w.jobs).find((j) => (j.permissions as Dict | undefined)?.['pull-requests'] === 'write');
  if (!commenter) return t.fail('a job comments on the pull request');
  t.false(hasIdTokenWrite(commenter));
  t.true(steps(commenter).some((s) => usesAction(s, 'actions/github-script')));
  t.true(needsOf(commenter).length > 0);
});

test('deploy.yml: build once, staging by digest, checks, the same digest to production, guardrails after each deploy', (t) => {
  const w = wf('deploy.yml');
  t.true(pushesMain(w));
  t.false('pull_request' in w.on);

  const jobs = Object.entries(w.jobs);
  const deploys = jobs.filter(([, j]) => runs(j, /pulumi up --stack (staging|prod)\b/));
  t.is(deploys.length, 2, 'one staging and one prod deploy');
  const deployOf = (stack: string): [string, Job] | undefined =>
    deploys.find(([, j]) => runs(j, new RegExp(`pulumi up --stack ${stack}\\b`)));
  const staging = deployOf('staging');
  const prod = deployOf('prod');
  if (!staging || !prod) return t.fail('staging and prod deploys');

  const [buildName, build] = jobs.find(([, j]) => steps(j).some((s) => usesAction(s, 'docker/build-push-action'))) ?? [];
  if (!buildName || !build) return t.fail('a build job');
  const push = steps(build).find((s) => usesAction(s, 'docker/build-push-action'));
  t.is(push?.with?.push, true);
  t.is(push?.with?.file, 'Dockerfile');
  t.regex(String((build.outputs as Dict | undefined)?.image), /steps\.\w+\.outputs\.ref/);
  t.true(runs(build, /\^sha256:\[0-9a-f\]\{64\}\$/), 'the output is checked to be a digest');
  t.true(runs(build, /\$REPO\/\$IMAGE_NAME@\$DIGEST/), 'the image is referenced by digest');

  for (const [name, job] of [staging, prod]) {
    t.true(upstream(w, name).has(buildName), `${name} runs after the build`);
    t.is(job.env?.IMAGE, `\${{ needs.${buildName}.outputs.image }}`, `${name} deploys the built digest`);
    t.true(runs(job, /--config "image=\$IMAGE"/), `${name} passes the digest to Pulumi`);
    t.true(runs(job, /--policy-pack infra\/policy/), `${name} enforces the policy pack`);
  }

  const prodEnv = prod[1].environment;
  t.is(typeof prodEnv === 'string' ? prodEnv : prodEnv?.name, 'production', 'prod is behind the production environment');

  const guardrails = jobs.filter(([, j]) => runs(j, /scripts\/check_ops_metrics_guardrails\.sh --url/));
  for (const [name] of deploys) {
    t.true(
      guardrails.some(([g]) => upstream(w, g).has(name)),
      `guardrails run after ${name}`,
    );
  }
  const pentest = jobs.filter(([, j]) => runs(j, /^npm run pentest -- --url "\$KARAXAS_URL"$/m));
  t.true(pentest.some(([p]) => upstream(w, p).has(staging[0])), 'pentest runs after the staging deploy');
  for (const [p] of pentest) t.false(upstream(w, p).has(prod[0]), 'the pentest never targets prod');

  const prodUpstream = upstream(w, prod[0]);
  for (const [g] of guardrails.filter(([g]) => upstream(w, g).has(staging[0]) && !upstream(w, g).has(prod[0]))) {
    t.true(prodUpstream.has(g), `prod waits for ${g}`);
  }
  for (const [p] of pentest) t.true(prodUpstream.has(p), `prod waits for ${p}`);

  // The checks get the ops token from Secret Manager (or a GitHub secret), never from the repository.
  for (const [name, job] of [...guardrails, ...pentest]) {
    t.true(authenticatesToGcp(job) && runs(job, /gcloud secrets versions access "\$OPS_TOKEN_SECRET"/), name);
    t.true(runs(job, /::add-mask::\$OPS_API_TOKEN/), `${name} masks the token`);
  }
});

test('prod is reached only with the prod identity: production environment in deploy.yml, PROD_ variables for the prod preview', (t) => {
  const w = wf('deploy.yml');
  const touchesProd = (job: Job): boolean =>
    runs(job, /--stack prod\b/) || JSON.stringify(job).includes('vars.PROD_') || JSON.stringify(job).includes('secrets.PROD_');
  const environmentOf = (job: Job): string | undefined => (typeof job.environment === 'string' ? job.environment : job.environment?.name);
  const prodJobs = Object.entries(w.jobs).filter(([, job]) => touchesProd(job));
  t.deepEqual(prodJobs.map(([name]) => name).sort(), ['deploy-prod', 'prod-guardrails']);
  for (const [name, job] of prodJobs) {
    t.is(environmentOf(job), 'production', `${name} runs in the production environment (its variables carry the prod identity)`);
    t.true(authenticatesToGcp(job), name);
  }
  for (const [name, job] of Object.entries(w.jobs)) {
    if (environmentOf(job) === 'production') t.true(touchesProd(job), `${name}: only prod jobs use the production environment`);
  }
  // Pull-request previews never use the production environment (its reviewers and branch rule
  // are for deploys); the prod leg takes prod's preview identity from PROD_ variables instead.
  const preview = wf('preview.yml');
  for (const [name, job] of Object.entries(preview.jobs)) t.is(job.environment, undefined, `preview:${name}`);
  const leg = Object.values(preview.jobs).find(authenticatesToGcp);
  const script = String(leg && identityStep(leg)?.run);
  t.regex(script, /if \[ "\$STACK" = prod \]; then\s+provider="\$PROD_PROVIDER"; account="\$PROD_ACCOUNT"/);
  t.regex(script, /exit 1/, 'a missing identity fails the leg instead of falling back to staging');
  const order = steps(leg ?? {}).map((s) => s.id ?? s.uses?.split('@')[0] ?? s.run ?? '');
  t.true(order.indexOf('identity') < order.indexOf(AUTH_ACTION), 'the identity is chosen before authenticating');
});

test('deploy.yml: the staging release smoke runs after the staging deploy and gates prod', (t) => {
  const w = wf('deploy.yml');
  const smoke = Object.entries(w.jobs).filter(([, j]) => runs(j, /^\s*bash \.github\/scripts\/staging-release-smoke\.sh$/m));
  t.is(smoke.length, 1, 'one job runs the staging release smoke');
  const [name, job] = smoke[0] ?? ['', {} as Job];
  const stagingDeploy = Object.keys(w.jobs).find((j) => runs(w.jobs[j]!, /pulumi up --stack staging\b/))!;
  const prodDeploy = Object.keys(w.jobs).find((j) => runs(w.jobs[j]!, /pulumi up --stack prod\b/))!;
  const pentest = Object.keys(w.jobs).find((j) => runs(w.jobs[j]!, /npm run pentest/))!;
  t.true(upstream(w, name).has(stagingDeploy), 'after the staging deploy');
  t.true(upstream(w, name).has(pentest), 'after the pentest (the smoke gates logins for a moment)');
  t.true(upstream(w, prodDeploy).has(name), 'prod waits for the smoke');
  t.false(upstream(w, name).has(prodDeploy), 'never against prod');
  const step = steps(job).find((s) => typeof s.run === 'string' && s.run.includes('staging-release-smoke.sh'));
  t.is(step?.env?.KARAXAS_URL, '${{ vars.STAGING_URL }}');
  t.true(runs(job, /gcloud secrets versions access "\$OPS_TOKEN_SECRET"/) && runs(job, /::add-mask::\$OPS_API_TOKEN/), 'token from Secret Manager, masked');

  const file = '.github/scripts/staging-release-smoke.sh';
  t.true((statSync(file).mode & 0o111) !== 0, `${file} is executable`);
  const script = readFileSync(file, 'utf8');
  t.regex(script, /^set -euo pipefail$/m);
  for (const command of ['policy show', 'policy create', 'policy activate', 'publish', 'drain', 'admin-audit']) {
    t.regex(script, new RegExp(`\\bops ${command}\\b`), `uses karaxas-ops ${command}`);
  }
  t.regex(script, /ops policy create [^\n]*--login-gate/, 'the test policy gates logins');
  t.regex(script, /== "426"/, 'expects the 426');
  t.regex(script, /client_update_required/);
  t.regex(script, /== "completed"/, "expects the drain's completed status");
  for (const action of ['release.policy.create', 'release.policy.activate', 'release.publish']) t.true(script.includes(action), `audit row ${action}`);
  t.regex(script, /^trap cleanup EXIT$/m, 'always cleans up');
  t.regex(script, /node "\$root\/bin\/karaxas-ops\.js"/);
  // The CLI commands it relies on exist.
  const cli = readFileSync('app/cli/main.ts', 'utf8');
  for (const command of ['policy', 'publish', 'drain', 'admin-audit']) t.true(cli.includes(`name: '${command}'`), `karaxas-ops ${command} exists`);
});

test('dependabot.yml covers npm, github-actions and docker', (t) => {
  const doc = parse(readFileSync('.github/dependabot.yml', 'utf8')) as { version: number; updates: Array<Dict> };
  t.is(doc.version, 2);
  const ecosystems = doc.updates.map((u) => u['package-ecosystem']);
  for (const e of ['npm', 'github-actions', 'docker']) t.true(ecosystems.includes(e), e);
});

test('the actionlint script exists and is executable', (t) => {
  const mode = statSync('scripts/lint-workflows.sh').mode;
  t.true((mode & 0o111) !== 0);
});
