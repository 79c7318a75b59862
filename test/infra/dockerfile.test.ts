/**
 * The Dockerfile's key properties. hadolint runs too when it is installed
 * (it is not packaged for this machine's Debian; the line checks always run).
 */
import test from 'ava';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers.js';

const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const dockerignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

/** Instructions with continuation lines joined and comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'))
  .map((l) => {
    const [keyword = '', ...rest] = l.split(/\s+/);
    return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
  });

const argDefaults = Object.fromEntries(
  instructions.filter((i) => i.keyword === 'ARG' && i.args.includes('=')).map((i) => i.args.split('=') as [string, string]),
);
const resolve = (s: string) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => argDefaults[a ?? b] ?? '');
const stages = instructions.filter((i) => i.keyword === 'FROM').map((i) => resolve(i.args));
const lastFrom = instructions.map((i) => i.keyword).lastIndexOf('FROM');
const finalStage = instructions.slice(lastFrom);

test('multi-stage build on the current Node LTS slim image', (t) => {
  t.true(stages.length >= 2, 'at least a build and a runtime stage');
  for (const from of stages) {
    const m = /^node:(\d+)-[a-z]+-slim(@sha256:[a-f0-9]{64})?\s+AS\s+\w+$/i.exec(from);
    t.truthy(m, `${from}: node:<LTS>-<debian>-slim AS <stage>`);
    const major = Number(m?.[1]);
    t.true(major >= 22 && major % 2 === 0, `${from}: an even (LTS) Node major, 22 or newer`);
  }
  t.regex(stages[stages.length - 1] ?? '', /AS runtime$/);
});

test('the runtime stage runs as a non-root user and starts the compiled server', (t) => {
  const users = finalStage.filter((i) => i.keyword === 'USER').map((i) => i.args);
  t.is(users.length, 1);
  t.notRegex(users[0] ?? '', /^(root|0)(:|$)/);
  // USER comes before CMD, after every COPY.
  const kw = finalStage.map((i) => i.keyword);
  t.true(kw.indexOf('USER') > kw.lastIndexOf('COPY'));
  t.true(kw.indexOf('USER') < kw.indexOf('CMD'));
  t.deepEqual(finalStage.find((i) => i.keyword === 'CMD')?.args, '["node", "dist/app/main.js"]');
  t.is(finalStage.find((i) => i.keyword === 'EXPOSE')?.args, '8080');
  t.true(finalStage.some((i) => i.keyword === 'ENV' && /NODE_ENV=production/.test(i.args)));
  // The runtime has no build toolchain.
  t.false(finalStage.some((i) => i.keyword === 'RUN' && /apt-get install/.test(i.args)));
});

test('production dependencies only, native addons compiled from source', (t) => {
  const runs = instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
  t.true(runs.some((r) => /npm ci --omit=dev/.test(r)));
  t.true(runs.some((r) => /apt-get install -y --no-install-recommends python3 make g\+\+/.test(r)));
  t.true(instructions.some((i) => i.keyword === 'ENV' && i.args === 'npm_config_build_from_source=true'));
  t.true(runs.some((r) => /rm -rf node_modules\/argon2\/prebuilds/.test(r)), 'the crashing prebuild cannot be loaded');
  t.true(runs.some((r) => /npm run build/.test(r)));
  // The runtime's node_modules come from the --omit=dev stage.
  const depsStage = stages.find((s) => /AS deps$/.test(s));
  t.truthy(depsStage);
  t.true(finalStage.some((i) => i.keyword === 'COPY' && i.args === '--from=deps /app/node_modules ./node_modules'));
});

test('no secrets: no secret-looking ENV/ARG, no wholesale COPY, no remote ADD', (t) => {
  for (const i of instructions.filter((x) => x.keyword === 'ENV' || x.keyword === 'ARG')) {
    const name = i.args.split(/[=\s]/)[0] ?? '';
    t.notRegex(name, /SECRET|TOKEN|PASSWORD|PASSWD|KEY|CREDENTIAL|AUTH/i, `${i.keyword} ${name}`);
  }
  t.false(instructions.some((i) => i.keyword === 'ADD'), 'use COPY');
  t.false(instructions.some((i) => i.keyword === 'COPY' && /^\.\s+\.?\/?$|^\.\s/.test(i.args)), 'no COPY . .');
  t.notRegex(dockerfile, /--mount=type=secret|credentials\.json|\.npmrc/);
  for (const pattern of ['.env', '.env.*', '*.pem', '*.key', '.git', '**/node_modules']) {
    t.true(dockerignore.includes(pattern), `.dockerignore has ${pattern}`);
  }
});

// hadolint is not packaged for the registries these machines reach; where it is installed, the
// Dockerfile must pass it too (elsewhere only the line checks above run, and the output says so).
const hasHadolint = !spawnSync('hadolint', ['--version'], { encoding: 'utf8' }).error;
if (!hasHadolint) console.log('dockerfile: hadolint is not installed, so only the line checks run');
(hasHadolint ? test : Object.assign(() => undefined, test))('hadolint passes', async (t) => {
  const result = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile('hadolint', [path.join(ROOT, 'Dockerfile')], (error, stdout, stderr) =>
      resolve({ code: error ? 1 : 0, out: stdout + stderr }),
    );
  });
  t.is(result.code, 0, result.out);
});
