import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_FILE,
  auditFindings,
  isAccepted,
  run,
  trivyIgnore,
  validateAcceptedFindings,
} from '../scripts/check-accepted-findings.js';

const TODAY = '2026-06-15';

const entry = (overrides: Record<string, string> = {}): string => {
  const e = {
    id: 'GHSA-2p57-rm9w-gvfp',
    package: 'ip',
    reason: 'only used by a dev-time proxy, never in production',
    owner: '@karaxas/backend',
    expires: '2026-07-01',
    ...overrides,
  };
  return `  - ${Object.entries(e)
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
    .join('\n    ')}\n`;
};
const file = (...entries: string[]): string => `version: 1\naccepted:\n${entries.join('')}`;

const auditJson = (advisories: Array<{ name: string; severity: string; ghsa?: string; source?: number }>) => ({
  auditReportVersion: 2,
  vulnerabilities: Object.fromEntries(
    advisories.map((a) => [
      a.name,
      {
        name: a.name,
        severity: a.severity,
        via: [
          {
            source: a.source ?? 1,
            name: a.name,
            title: `problem in ${a.name}`,
            url: a.ghsa ? `https://github.com/advisories/${a.ghsa}` : '',
            severity: a.severity,
          },
        ],
      },
    ]),
  ),
  metadata: {},
});

test('the committed accepted-findings file is valid and has nothing expired', (t) => {
  const result = validateAcceptedFindings(readFileSync(DEFAULT_FILE, 'utf8'), new Date().toISOString().slice(0, 10));
  t.deepEqual(result.errors, []);
  t.deepEqual(result.expired, []);
});

test('an entry is active through its expiry date and expired the day after', (t) => {
  const text = file(entry({ expires: TODAY }));
  t.is(validateAcceptedFindings(text, TODAY).active.length, 1);
  const next = validateAcceptedFindings(text, '2026-06-16');
  t.is(next.active.length, 0);
  t.is(next.expired.length, 1);
  t.is(next.expired[0]?.id, 'GHSA-2p57-rm9w-gvfp');
});

test('unquoted YAML dates are accepted', (t) => {
  const text = 'version: 1\naccepted:\n  - id: CVE-2024-12345\n    package: openssl\n    reason: r\n    owner: o\n    expires: 2026-07-01\n    tool: trivy\n';
  const result = validateAcceptedFindings(text, TODAY);
  t.deepEqual(result.errors, []);
  t.is(result.active[0]?.expires, '2026-07-01');
  t.is(result.active[0]?.tool, 'trivy');
});

test('malformed entries are errors', (t) => {
  const cases: Array<[string, RegExp]> = [
    [file(entry({ owner: '' })), /`owner` is required/],
    [file(entry({ expires: '2026-02-30' })), /`expires` must be a date/],
    [file(entry({ expires: 'soon' })), /`expires` must be a date/],
    [file(entry({ id: 'not-an-id' })), /`id` must be/],
    [file(entry({ tool: 'snyk' })), /`tool` must be/],
    [file(entry({ colour: 'red' })), /unknown field `colour`/],
    [file(entry(), entry()), /duplicate entry/],
    [file(entry({ expires: '2027-06-15' })), /more than 180 days ahead/],
    ['version: 2\naccepted: []\n', /`version` must be 1/],
    ['version: 1\naccepted: {}\n', /`accepted` must be a list/],
    ['version: 1\naccepted: [\n', /not valid YAML/],
  ];
  for (const [text, expected] of cases) {
    const { errors } = validateAcceptedFindings(text, TODAY);
    t.true(errors.some((e) => expected.test(e)), `${expected} in ${JSON.stringify(errors)}`);
  }
});

test('auditFindings keeps advisories at or above the level and names them by GHSA id', (t) => {
  const findings = auditFindings(
    auditJson([
      { name: 'a', severity: 'critical', ghsa: 'GHSA-aaaa-bbbb-cccc' },
      { name: 'b', severity: 'high', source: 42 },
      { name: 'c', severity: 'moderate', ghsa: 'GHSA-xxxx-yyyy-zzzz' },
    ]),
    'high',
  );
  t.deepEqual(
    findings.map((f) => [f.id, f.package, f.severity]),
    [
      ['GHSA-aaaa-bbbb-cccc', 'a', 'critical'],
      ['npm-42', 'b', 'high'],
    ],
  );
});

test('auditFindings ignores transitive "via" names and rejects failed audits', (t) => {
  const json = auditJson([{ name: 'leaf', severity: 'high', ghsa: 'GHSA-aaaa-bbbb-cccc' }]);
  (json.vulnerabilities as Record<string, unknown>).parent = { name: 'parent', severity: 'high', via: ['leaf'] };
  t.is(auditFindings(json, 'high').length, 1);
  t.throws(() => auditFindings({ error: { code: 'ENOTFOUND', summary: 'offline' } }, 'high'), { message: /npm audit failed/ });
  t.throws(() => auditFindings({ foo: 1 }, 'high'), { message: /unrecognised/ });
});

test('isAccepted matches id and package and respects the tool', (t) => {
  const { active } = validateAcceptedFindings(file(entry({ tool: 'trivy' }), entry({ id: 'GHSA-3333-4444-5555', package: 'x' })), TODAY);
  t.true(isAccepted({ id: 'ghsa-2p57-rm9w-gvfp', package: 'ip' }, active, 'trivy'));
  t.false(isAccepted({ id: 'GHSA-2p57-rm9w-gvfp', package: 'ip' }, active, 'npm-audit'));
  t.false(isAccepted({ id: 'GHSA-2p57-rm9w-gvfp', package: 'other' }, active, 'trivy'));
  t.true(isAccepted({ id: 'GHSA-3333-4444-5555', package: 'x' }, active, 'npm-audit'));
});

test('trivyIgnore lists trivy/any entries with their expiry', (t) => {
  const { active } = validateAcceptedFindings(
    file(entry({ id: 'CVE-2024-0001', package: 'zlib', tool: 'trivy' }), entry({ tool: 'npm-audit' })),
    TODAY,
  );
  const text = trivyIgnore(active);
  t.regex(text, /^CVE-2024-0001 exp:2026-07-01$/m);
  t.notRegex(text, /GHSA-2p57-rm9w-gvfp/);
});

const scratchDirs: string[] = [];
test.after.always(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

function runIn(files: Record<string, string>, args: string[]): { code: number; out: string[]; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'accepted-findings-'));
  scratchDirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const out: string[] = [];
  const rewritten = args.map((a) => (a.startsWith('@') ? join(dir, a.slice(1)) : a));
  const code = run(rewritten, (l) => out.push(l), new Date(`${TODAY}T12:00:00Z`));
  return { code, out, dir };
}

test('run: passes with no findings, fails on expired entries', (t) => {
  t.is(runIn({ 'a.yml': file(entry()) }, ['--file', '@a.yml']).code, 0);
  const expired = runIn({ 'a.yml': file(entry({ expires: '2026-06-14' })) }, ['--file', '@a.yml']);
  t.is(expired.code, 1);
  t.true(expired.out.some((l) => l.startsWith('EXPIRED: GHSA-2p57-rm9w-gvfp')));
});

test('run: filters npm audit through the accepted list', (t) => {
  const audit = JSON.stringify(
    auditJson([
      { name: 'ip', severity: 'high', ghsa: 'GHSA-2p57-rm9w-gvfp' },
      { name: 'lodash', severity: 'critical', ghsa: 'GHSA-jf85-cpcp-j695' },
    ]),
  );
  const failing = runIn({ 'a.yml': file(entry()), 'audit.json': audit }, ['--file', '@a.yml', '--npm-audit', '@audit.json']);
  t.is(failing.code, 1);
  t.true(failing.out.includes('accepted: high GHSA-2p57-rm9w-gvfp in ip: problem in ip https://github.com/advisories/GHSA-2p57-rm9w-gvfp'));
  t.true(failing.out.some((l) => l.startsWith('FAIL: critical GHSA-jf85-cpcp-j695 in lodash')));

  const accepted = runIn(
    { 'a.yml': file(entry(), entry({ id: 'GHSA-jf85-cpcp-j695', package: 'lodash' })), 'audit.json': audit },
    ['--file', '@a.yml', '--npm-audit', '@audit.json'],
  );
  t.is(accepted.code, 0);
  // Raising the level drops the high finding out of scope entirely.
  const critical = runIn({ 'a.yml': file(), 'audit.json': audit }, ['--file', '@a.yml', '--npm-audit', '@audit.json', '--level', 'critical']);
  t.is(critical.code, 1);
  t.true(critical.out.some((l) => l.includes('1 finding(s) at or above critical, 1 not accepted')));
});

test('run: writes a trivyignore and rejects bad input with exit 2', (t) => {
  const ok = runIn({ 'a.yml': file(entry({ id: 'CVE-2024-0001', package: 'zlib' })) }, ['--file', '@a.yml', '--write-trivyignore', '@.trivyignore']);
  t.is(ok.code, 0);
  t.regex(readFileSync(join(ok.dir, '.trivyignore'), 'utf8'), /^CVE-2024-0001 exp:2026-07-01$/m);
  t.is(runIn({}, ['--file', '@missing.yml']).code, 2);
  t.is(runIn({ 'a.yml': file(entry({ owner: '' })) }, ['--file', '@a.yml']).code, 2);
  t.is(runIn({ 'a.yml': file() }, ['--bogus']).code, 2);
  t.is(runIn({ 'a.yml': file(), 'audit.json': '{"error":{"code":"E500"}}' }, ['--file', '@a.yml', '--npm-audit', '@audit.json']).code, 2);
});
