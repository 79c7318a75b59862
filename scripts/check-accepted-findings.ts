/**
 * Accepted (triaged) vulnerability findings with an expiry date.
 *
 * The list lives in .github/security/accepted-findings.yml (format described
 * there and in docs/ci.md). This script:
 *   - validates the list and fails when an entry is malformed or has expired;
 *   - with --npm-audit FILE, reads `npm audit --json` output and fails on any
 *     advisory at or above --level (default high) that is not accepted;
 *   - with --write-trivyignore FILE, writes a .trivyignore of the accepted ids
 *     for Trivy (each with `exp:` so Trivy enforces the expiry as well).
 *
 * Usage:
 *   tsx scripts/check-accepted-findings.ts [--file PATH] [--today YYYY-MM-DD]
 *       [--npm-audit audit.json] [--level low|moderate|high|critical]
 *       [--write-trivyignore PATH]
 *
 * Exit codes: 0 ok, 1 expired entries or unaccepted findings, 2 bad input.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from 'yaml';

export const DEFAULT_FILE = '.github/security/accepted-findings.yml';
/** An acceptance may not reach further than this into the future. */
export const MAX_ACCEPTANCE_DAYS = 180;

export const SEVERITIES = ['info', 'low', 'moderate', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];
export const TOOLS = ['npm-audit', 'trivy', 'any'] as const;
export type Tool = (typeof TOOLS)[number];

export interface AcceptedFinding {
  id: string;
  package: string;
  reason: string;
  owner: string;
  /** YYYY-MM-DD, inclusive. */
  expires: string;
  tool: Tool;
}

export interface ValidationResult {
  /** Well-formed entries that have not expired. */
  active: AcceptedFinding[];
  /** Well-formed entries whose expiry date has passed. */
  expired: AcceptedFinding[];
  /** Problems that make the file unusable or an entry invalid. */
  errors: string[];
}

export class InputError extends Error {}

const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
const ID_RE = /^(GHSA(-[23456789cfghjmpqrvwx]{4}){3}|CVE-\d{4}-\d{4,}|npm-\d+)$/i;

function isValidDate(s: string): boolean {
  if (!DATE_RE.test(s)) return false;
  const d = new Date(`${s}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === s;
}

function daysBetween(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000);
}

export function todayUtc(now: Date = new Date()): string {
  return now.toISOString().slice(0, 10);
}

/** Parses and validates the YAML text of the accepted-findings file. */
export function validateAcceptedFindings(text: string, today: string): ValidationResult {
  const result: ValidationResult = { active: [], expired: [], errors: [] };
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    result.errors.push(`not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    return result;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    result.errors.push('expected a mapping with `version: 1` and an `accepted` list');
    return result;
  }
  const root = doc as Record<string, unknown>;
  if (root.version !== 1) result.errors.push('`version` must be 1');
  const list = root.accepted ?? [];
  if (!Array.isArray(list)) {
    result.errors.push('`accepted` must be a list');
    return result;
  }
  const seen = new Set<string>();
  list.forEach((raw: unknown, i: number) => {
    const where = `accepted[${i}]`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      result.errors.push(`${where}: must be a mapping`);
      return;
    }
    const e = raw as Record<string, unknown>;
    const problems: string[] = [];
    for (const key of ['id', 'package', 'reason', 'owner'] as const) {
      if (typeof e[key] !== 'string' || (e[key] as string).trim() === '') problems.push(`\`${key}\` is required`);
    }
    // YAML turns an unquoted 2026-01-31 into a Date; accept both spellings.
    const expiresRaw = e.expires instanceof Date ? e.expires.toISOString().slice(0, 10) : e.expires;
    if (typeof expiresRaw !== 'string' || !isValidDate(expiresRaw)) problems.push('`expires` must be a date YYYY-MM-DD');
    const tool = (e.tool ?? 'any') as Tool;
    if (!TOOLS.includes(tool)) problems.push(`\`tool\` must be one of ${TOOLS.join(', ')}`);
    if (typeof e.id === 'string' && e.id.trim() !== '' && !ID_RE.test(e.id.trim())) {
      problems.push('`id` must be a GHSA-…, CVE-… or npm-<number> advisory id');
    }
    const known = new Set(['id', 'package', 'reason', 'owner', 'expires', 'tool']);
    for (const key of Object.keys(e)) if (!known.has(key)) problems.push(`unknown field \`${key}\``);
    if (problems.length > 0) {
      result.errors.push(`${where}${typeof e.id === 'string' ? ` (${e.id})` : ''}: ${problems.join('; ')}`);
      return;
    }
    const entry: AcceptedFinding = {
      id: (e.id as string).trim(),
      package: (e.package as string).trim(),
      reason: (e.reason as string).trim(),
      owner: (e.owner as string).trim(),
      expires: expiresRaw as string,
      tool,
    };
    const key = `${entry.id.toUpperCase()}|${entry.package}|${entry.tool}`;
    if (seen.has(key)) {
      result.errors.push(`${where} (${entry.id}): duplicate entry`);
      return;
    }
    seen.add(key);
    if (entry.expires < today) {
      result.expired.push(entry);
    } else if (daysBetween(today, entry.expires) > MAX_ACCEPTANCE_DAYS) {
      result.errors.push(
        `${where} (${entry.id}): expires ${entry.expires}, more than ${MAX_ACCEPTANCE_DAYS} days ahead; re-triage instead of accepting for longer`,
      );
    } else {
      result.active.push(entry);
    }
  });
  return result;
}

export interface AuditFinding {
  id: string;
  package: string;
  severity: Severity;
  title: string;
  url: string;
}

function severityRank(s: string): number {
  return SEVERITIES.indexOf(s as Severity);
}

/**
 * Extracts the advisories at or above `level` from `npm audit --json`
 * (auditReportVersion 2, npm 7+). Transitive entries (`via` strings) point at
 * packages whose own entry carries the advisory, so only advisory objects count.
 */
export function auditFindings(auditJson: unknown, level: Severity): AuditFinding[] {
  if (auditJson === null || typeof auditJson !== 'object') throw new InputError('npm audit output is not a JSON object');
  const report = auditJson as Record<string, unknown>;
  if (report.error) {
    const err = report.error as { code?: string; summary?: string };
    const detail = [err.code, err.summary, typeof report.message === 'string' ? report.message : '']
      .filter((s) => typeof s === 'string' && s !== '')
      .join(' ');
    throw new InputError(`npm audit failed: ${detail || 'no details'}`);
  }
  if (report.auditReportVersion !== 2 || typeof report.vulnerabilities !== 'object' || report.vulnerabilities === null) {
    throw new InputError('unrecognised npm audit output (expected auditReportVersion 2)');
  }
  const min = severityRank(level);
  const found = new Map<string, AuditFinding>();
  for (const vuln of Object.values(report.vulnerabilities as Record<string, { via?: unknown[] }>)) {
    for (const via of vuln.via ?? []) {
      if (via === null || typeof via !== 'object') continue;
      const adv = via as { source?: number; name?: string; title?: string; url?: string; severity?: string };
      if (severityRank(adv.severity ?? '') < min) continue;
      const ghsa = /GHSA(-[0-9a-z]{4}){3}/i.exec(adv.url ?? '');
      const id = ghsa ? ghsa[0] : `npm-${adv.source ?? 'unknown'}`;
      const finding: AuditFinding = {
        id,
        package: adv.name ?? 'unknown',
        severity: adv.severity as Severity,
        title: adv.title ?? '',
        url: adv.url ?? '',
      };
      found.set(`${id}|${finding.package}`, finding);
    }
  }
  return [...found.values()].sort((a, b) => a.id.localeCompare(b.id));
}

export function isAccepted(
  finding: { id: string; package: string },
  accepted: AcceptedFinding[],
  tool: Exclude<Tool, 'any'>,
): boolean {
  return accepted.some(
    (a) =>
      (a.tool === 'any' || a.tool === tool) &&
      a.id.toUpperCase() === finding.id.toUpperCase() &&
      a.package === finding.package,
  );
}

/** The .trivyignore text for the active entries that apply to Trivy. */
export function trivyIgnore(accepted: AcceptedFinding[]): string {
  const lines = ['# Generated from .github/security/accepted-findings.yml by scripts/check-accepted-findings.ts'];
  for (const a of accepted) {
    if (a.tool !== 'any' && a.tool !== 'trivy') continue;
    lines.push(`# ${a.package}: ${a.reason} (owner ${a.owner})`);
    lines.push(`${a.id} exp:${a.expires}`);
  }
  return `${lines.join('\n')}\n`;
}

interface Options {
  file: string;
  today: string;
  npmAudit?: string;
  level: Severity;
  writeTrivyIgnore?: string;
}

export function parseArgs(argv: string[], now: Date = new Date()): Options {
  const opts: Options = { file: DEFAULT_FILE, today: todayUtc(now), level: 'high' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new InputError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case '--file':
        opts.file = value();
        break;
      case '--today':
        opts.today = value();
        if (!isValidDate(opts.today)) throw new InputError('--today must be YYYY-MM-DD');
        break;
      case '--npm-audit':
        opts.npmAudit = value();
        break;
      case '--level': {
        const level = value();
        if (!SEVERITIES.includes(level as Severity)) throw new InputError(`--level must be one of ${SEVERITIES.join(', ')}`);
        opts.level = level as Severity;
        break;
      }
      case '--write-trivyignore':
        opts.writeTrivyIgnore = value();
        break;
      default:
        throw new InputError(`unknown argument: ${arg}`);
    }
  }
  return opts;
}

/** Runs the check; returns the process exit code. */
export function run(argv: string[], log: (line: string) => void = console.log, now: Date = new Date()): number {
  let opts: Options;
  try {
    opts = parseArgs(argv, now);
  } catch (err) {
    log(`error: ${(err as Error).message}`);
    return 2;
  }
  let text: string;
  try {
    text = readFileSync(opts.file, 'utf8');
  } catch {
    log(`error: cannot read ${opts.file}`);
    return 2;
  }
  const { active, expired, errors } = validateAcceptedFindings(text, opts.today);
  if (errors.length > 0) {
    for (const e of errors) log(`error: ${opts.file}: ${e}`);
    return 2;
  }
  let failed = false;
  for (const e of expired) {
    log(`EXPIRED: ${e.id} (${e.package}) expired ${e.expires}; owner ${e.owner} must re-triage it or remove the entry`);
    failed = true;
  }
  log(`${active.length} accepted finding(s) active, ${expired.length} expired`);

  if (opts.writeTrivyIgnore) {
    writeFileSync(opts.writeTrivyIgnore, trivyIgnore(active));
    log(`wrote ${opts.writeTrivyIgnore}`);
  }

  if (opts.npmAudit) {
    let findings: AuditFinding[];
    try {
      findings = auditFindings(JSON.parse(readFileSync(opts.npmAudit, 'utf8')), opts.level);
    } catch (err) {
      log(`error: ${opts.npmAudit}: ${(err as Error).message}`);
      return 2;
    }
    const open = findings.filter((f) => !isAccepted(f, active, 'npm-audit'));
    for (const f of findings) {
      const state = open.includes(f) ? 'FAIL' : 'accepted';
      log(`${state}: ${f.severity} ${f.id} in ${f.package}: ${f.title} ${f.url}`.trimEnd());
    }
    for (const a of active) {
      if ((a.tool === 'npm-audit' || a.tool === 'any') && !findings.some((f) => isAccepted(f, [a], 'npm-audit'))) {
        log(`note: accepted ${a.id} (${a.package}) no longer reported by npm audit; consider removing it`);
      }
    }
    log(`npm audit: ${findings.length} finding(s) at or above ${opts.level}, ${open.length} not accepted`);
    if (open.length > 0) failed = true;
  }
  return failed ? 1 : 0;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (invokedDirectly) {
  process.exitCode = run(process.argv.slice(2));
}
