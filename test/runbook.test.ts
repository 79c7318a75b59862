/**
 * docs/runbook.md names commands an operator runs during an incident; every one of them must
 * exist, or the runbook fails exactly when it is needed. Checked on the code in the runbook
 * (fenced blocks and inline code spans):
 *   - `npm run <script>`, `npm test`, `npm start`   → a script in package.json;
 *   - `scripts/…`, `.github/…` paths                 → a file in the repository;
 *   - `karaxas-ops <subcommand>` (also `npx karaxas-ops`, `node bin/karaxas-ops.js`,
 *     `node dist/app/cli/main.js`)                   → a command of the CLI's table (app/cli/main.ts);
 *   - `pulumi config set|rm|get [--path] <key>`      → a stack setting of infra/config.ts; a literal
 *     value for an app tunable is within the bounds the app enforces.
 */
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { commands as cliCommands } from '../app/cli/main.js';
import { tunableSchemas } from '../app/config/tunables.js';
import { TUNABLE_KEYS, isStackConfigKey } from '../infra/config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RUNBOOK = 'docs/runbook.md';

/** Code of a markdown document: fenced blocks and inline code spans (table pipes unescaped). */
export function codeOf(markdown: string): string[] {
  const code: string[] = [];
  const prose = markdown.replace(/^```[^\n]*\n([\s\S]*?)^```\s*$/gm, (_m, block: string) => {
    code.push(block);
    return '';
  });
  for (const m of prose.matchAll(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g)) code.push(m[2]!);
  return code.map((c) => c.replace(/\\\|/g, '|').replace(/\\\n/g, ' '));
}

/** Splits a command line into words (single and double quotes, no expansion). */
function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

export interface Finding {
  kind: 'npm script' | 'file' | 'karaxas-ops command' | 'stack config key' | 'tunable value';
  name: string;
  problem: string;
}

const FLAGS_WITH_VALUE = new Set(['--stack', '-s', '--config-file', '--cwd', '-C']);

/** Every command the code names that does not exist (empty when all do). */
export function checkCommands(code: string[], root = ROOT): { findings: Finding[]; checked: Record<Finding['kind'], Set<string>> } {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const subcommands = new Set(cliCommands.map((c) => c.name));
  const findings: Finding[] = [];
  const checked: Record<Finding['kind'], Set<string>> = {
    'npm script': new Set(),
    file: new Set(),
    'karaxas-ops command': new Set(),
    'stack config key': new Set(),
    'tunable value': new Set(),
  };

  for (const text of code) {
    for (const m of text.matchAll(/\bnpm\s+(?:run(?:-script)?\s+(?:-s\s+|--silent\s+)?([a-z][\w:.-]*)|(test|start)\b)/g)) {
      const script = m[1] ?? m[2]!;
      checked['npm script'].add(script);
      if (!(script in pkg.scripts)) findings.push({ kind: 'npm script', name: script, problem: 'not in package.json "scripts"' });
    }
    for (const m of text.matchAll(/(?:^|[\s'"(=`])(?:\.\/)?((?:scripts|\.github)\/[\w./-]*\w)/g)) {
      const file = m[1]!;
      checked.file.add(file);
      if (!existsSync(path.join(root, file))) findings.push({ kind: 'file', name: file, problem: 'no such file' });
    }
    for (const m of text.matchAll(/(?:^|[\s'"(;|&`])(?:(?:npx\s+)?karaxas-ops|node\s+(?:\S*\/)?(?:bin\/karaxas-ops\.js|dist\/app\/cli\/main\.js))\s+([a-z][\w-]*)/g)) {
      const sub = m[1]!;
      checked['karaxas-ops command'].add(sub);
      if (sub !== 'help' && !subcommands.has(sub)) findings.push({ kind: 'karaxas-ops command', name: sub, problem: 'not a command of app/cli/main.ts' });
    }
    for (const m of text.matchAll(/\bpulumi\s+config\s+(set|rm|get)\s+([^\n;|&`]*)/g)) {
      const args = words(m[2]!);
      const positional: string[] = [];
      for (let i = 0; i < args.length; i++) {
        const arg = args[i]!;
        if (FLAGS_WITH_VALUE.has(arg)) i++;
        else if (!arg.startsWith('-')) positional.push(arg);
      }
      const [key, value] = positional;
      // Templates (`secretRotation.<secret>.…`, `$KEY`) are not checked; concrete keys are.
      if (key === undefined || /[<$…]/.test(key)) continue;
      checked['stack config key'].add(key);
      if (!isStackConfigKey(key)) {
        findings.push({ kind: 'stack config key', name: key, problem: 'not a setting of infra/config.ts' });
        continue;
      }
      const tunable = TUNABLE_KEYS.get(key.replace(/^karaxas-backend:/, ''));
      if (m[1] === 'set' && tunable && value !== undefined && !/^[<$]/.test(value)) {
        checked['tunable value'].add(`${key}=${value}`);
        const result = tunableSchemas[tunable].safeParse(value);
        if (!result.success) findings.push({ kind: 'tunable value', name: `${key}=${value}`, problem: result.error.issues[0]?.message ?? 'invalid' });
      }
    }
  }
  return { findings, checked };
}

const runbook = (): string => readFileSync(path.join(ROOT, RUNBOOK), 'utf8');

test('docs/runbook.md exists and names commands of every kind', (t) => {
  t.true(existsSync(path.join(ROOT, RUNBOOK)), `${RUNBOOK} is missing`);
  const { checked } = checkCommands(codeOf(runbook()));
  for (const kind of ['npm script', 'file', 'karaxas-ops command', 'stack config key'] as const) {
    t.true(checked[kind].size > 0, `the runbook names at least one ${kind}`);
  }
});

test('every command docs/runbook.md names exists (npm scripts, files, karaxas-ops commands, stack keys, tunable bounds)', (t) => {
  const { findings } = checkCommands(codeOf(runbook()));
  t.deepEqual(findings, [], findings.map((f) => `${f.kind} ${f.name}: ${f.problem}`).join('\n'));
});

test('the seed playbooks that are stack-config changes are shown with their keys', (t) => {
  const { checked } = checkCommands(codeOf(runbook()));
  const keys = [...checked['stack config key']].map((k) => k.replace(/^karaxas-backend:/, '').split(/[.[]/)[0]);
  // "Increase auth lockout strictness (AUTH_*)", "Tighten chat rate limits (CHAT_*)",
  // "Apply network perimeter controls", "Restrict … only required public routes".
  t.true(keys.some((k) => k?.startsWith('auth')), 'an AUTH_* tunable');
  t.true(keys.some((k) => k?.startsWith('chat')), 'a CHAT_* tunable');
  t.true(keys.includes('armor'), 'a Cloud Armor setting');
  t.true(keys.includes('opsAccess'), 'the /ops restriction');
});

test('the checker itself catches each kind of missing command', (t) => {
  const bad = codeOf(
    [
      'Run `npm run no-such-script` and `bash scripts/no_such_script.sh`.',
      '```sh',
      'karaxas-ops no-such-command --all',
      'node bin/karaxas-ops.js metrics',
      'pulumi config set karaxas-backend:authLockoutThreshhold 3 --stack prod',
      "pulumi config set --path 'armor.authRateLimit.cnt' 100 --stack prod",
      'pulumi config set karaxas-backend:authLockoutThreshold 0 --stack prod',
      'pulumi config set --stack prod karaxas-backend:chatRateLimitMax 2',
      '```',
      '| a | `karaxas-ops set-role <userId> <player\\|admin>` |',
    ].join('\n'),
  );
  const { findings, checked } = checkCommands(bad);
  t.deepEqual(
    findings.map((f) => `${f.kind}: ${f.name}`).sort(),
    [
      'file: scripts/no_such_script.sh',
      'karaxas-ops command: no-such-command',
      'npm script: no-such-script',
      'stack config key: armor.authRateLimit.cnt',
      'stack config key: karaxas-backend:authLockoutThreshhold',
      'tunable value: karaxas-backend:authLockoutThreshold=0',
    ],
  );
  t.deepEqual([...checked['karaxas-ops command']].sort(), ['metrics', 'no-such-command', 'set-role']);
  t.true(checked['tunable value'].has('karaxas-backend:chatRateLimitMax=2'), '--stack before the key is skipped');
});
