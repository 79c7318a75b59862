/**
 * Cloud Armor rules as typed data.
 *
 * The Armor component turns these into policy rules; tests, the policy pack
 * and docs/infra.md read the same catalog. Priorities live in fixed bands so a
 * stack-config change (a deny-listed range, a path throttle) never reorders
 * the rules around it.
 */
import { WAF_RULE_SETS, type WafRuleSet } from '../config.js';

/** Priority bands. Lower numbers are evaluated first; the first matching rule wins. */
export const ARMOR_PRIORITY = {
  /** 100–499: the stack's source-range deny list, 10 ranges per rule (before everything else). */
  denyListStart: 100,
  denyListEnd: 499,
  /** 500–899: reserved for later deny rules (geo, ASN). */
  reservedEnd: 899,
  /** 1000 + 10·i: OWASP CRS preconfigured WAF rules (before rate limits, whose "allow" ends evaluation). */
  wafStart: 1000,
  /**
   * 2000–2990 (step 10): per-path throttle overrides. After the WAF (a conforming request is
   * "allowed", which ends evaluation) and before the baseline limits they override.
   */
  pathThrottleStart: 2000,
  pathThrottleEnd: 2990,
  /** Per-IP ban on /auth/*. */
  authBan: 3000,
  /** Per-IP throttle on HTTP chat writes. */
  chatThrottle: 3100,
  /** 5000–5499 (ops policy only): source ranges allowed to reach /ops/*, 10 per rule. */
  opsAllowStart: 5000,
  opsAllowEnd: 5499,
  /** 5500–5999 (ops policy only): Cloud Monitoring uptime checkers, for GET /ops/release/admin-audit only. */
  opsUptimeStart: 5500,
  opsUptimeEnd: 5999,
  /** The mandatory default rule. */
  default: 2147483647,
} as const;

/** Cloud Armor accepts at most this many ranges in one basic (source range) match. */
export const RANGES_PER_RULE = 10;
/** Subexpressions per advanced match: one path test plus this many `inIpRange` tests. */
export const UPTIME_IPS_PER_RULE = 4;

interface RuleBase {
  /** Stable key, used in `armor.previewRules` and in the rule description. */
  key: string;
  priority: number;
  /** What the rule is for (shown in the console, docs and the plan). */
  description: string;
  /** Recently added: put into preview (log-only) on stacks with `armor.previewNewRules`. */
  isNew?: boolean;
}

/** An OWASP CRS rule set evaluated with `evaluatePreconfiguredWaf`. */
export interface WafRule extends RuleBase {
  kind: 'waf';
  ruleSet: WafRuleSet;
  /** CRS version suffix, e.g. `v33-stable`. */
  version: string;
  sensitivity: number;
}

/** Per-client-IP ban once a rate is exceeded. */
export interface RateBasedBanRule extends RuleBase {
  kind: 'rate_based_ban';
  /** CEL match expression. */
  expression: string;
  count: number;
  intervalSec: number;
  banDurationSec: number;
}

/** Per-client-IP throttle (over-limit requests get 429, others pass). */
export interface ThrottleRule extends RuleBase {
  kind: 'throttle';
  expression: string;
  count: number;
  intervalSec: number;
}

/** Plain deny by source range or expression (for deny lists). */
export interface DenyRule extends RuleBase {
  kind: 'deny';
  srcIpRanges?: string[];
  expression?: string;
  status: 403 | 404 | 502;
}

/** Allow (ends evaluation) by source range or expression — only in policies whose default denies. */
export interface AllowRule extends RuleBase {
  kind: 'allow';
  srcIpRanges?: string[];
  expression?: string;
}

export type ArmorRule = WafRule | RateBasedBanRule | ThrottleRule | DenyRule | AllowRule;

/** What each CRS rule set protects against. */
export const WAF_RULE_PURPOSE: Record<WafRuleSet, string> = {
  sqli: 'SQL injection in parameters, headers and JSON bodies',
  xss: 'cross-site scripting payloads',
  lfi: 'local file inclusion / path traversal',
  rfi: 'remote file inclusion',
  rce: 'remote code / shell command execution',
  scannerdetection: 'known vulnerability scanners and attack tools',
  protocolattack: 'HTTP request smuggling, response splitting, header injection',
  sessionfixation: 'session fixation attempts',
  methodenforcement: 'HTTP methods outside the allowed set',
  nodejs: 'Node.js-specific attacks (prototype pollution, injection into JS runtimes)',
};

/** Rule sets whose rule was added last; new stacks can watch them in preview first. */
const NEW_RULE_SETS: readonly WafRuleSet[] = ['nodejs'];

/** The path prefix whose requests the per-IP ban counts. */
export const AUTH_PATH_EXPRESSION = "request.path.startsWith('/auth/')";
/** HTTP chat writes (websocket frames are not visible to Armor; the app limits those per user). */
export const CHAT_WRITE_EXPRESSION =
  "request.method == 'POST' && request.path.matches('^/chat/channels/[^/]+/messages$')";

export interface ArmorRuleSettings {
  crsVersion: string;
  wafSensitivity: number;
  wafSensitivityOverrides: Partial<Record<WafRuleSet, number>>;
  authRateLimit: { count: number; intervalSec: number; banDurationSec: number };
  chatWriteThrottle: { count: number; intervalSec: number };
}

/** One per-path throttle override (stack config `armor.pathThrottles[]`). */
export interface PathThrottle {
  path: string;
  match: 'prefix' | 'exact';
  method?: string;
  count: number;
  intervalSec: number;
  banDurationSec?: number;
}

const chunk = <T>(items: readonly T[], size: number): T[][] =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, i * size + size));

/** A path is safe inside a single-quoted CEL string: the config schema allows `[A-Za-z0-9._~/-]` only. */
function celPath(path: string): string {
  if (!/^\/[A-Za-z0-9._~/-]*$/.test(path)) throw new Error(`armor: path ${path} has characters not allowed in a rule`);
  return `'${path}'`;
}

/** The source-range deny list: `deny-list-<n>`, 10 ranges per rule, priorities 100, 101, … (band 100–499). */
export function denyListRules(ranges: readonly string[]): DenyRule[] {
  const rules = chunk([...new Set(ranges)], RANGES_PER_RULE).map(
    (group, i): DenyRule => ({
      kind: 'deny',
      key: `deny-list-${i + 1}`,
      priority: ARMOR_PRIORITY.denyListStart + i,
      srcIpRanges: group,
      status: 403,
      description: `Deny list (stack config armor.denySourceRanges), part ${i + 1}`,
    }),
  );
  const last = rules[rules.length - 1];
  if (last && last.priority > ARMOR_PRIORITY.denyListEnd) throw new Error('armor.denySourceRanges: too many ranges for the deny-list band');
  return rules;
}

/** The CEL match of a path throttle. */
export function pathThrottleExpression(t: Pick<PathThrottle, 'path' | 'match' | 'method'>): string {
  const path = t.match === 'exact' ? `request.path == ${celPath(t.path)}` : `request.path.startsWith(${celPath(t.path)})`;
  return t.method ? `request.method == '${t.method}' && ${path}` : path;
}

/**
 * Per-path throttles: `path-throttle-<n>`, band 2000–2990 in steps of 10. The most specific path
 * (longest; exact before prefix) gets the lowest number, so it wins over broader ones.
 */
export function pathThrottleRules(throttles: readonly PathThrottle[]): Array<ThrottleRule | RateBasedBanRule> {
  const ordered = [...throttles].sort(
    (a, b) => b.path.length - a.path.length || Number(b.match === 'exact') - Number(a.match === 'exact') || Number(!!b.method) - Number(!!a.method),
  );
  return ordered.map((t, i) => {
    const priority = ARMOR_PRIORITY.pathThrottleStart + 10 * i;
    if (priority > ARMOR_PRIORITY.pathThrottleEnd) throw new Error('armor.pathThrottles: too many throttles for the band');
    const base = {
      key: `path-throttle-${i + 1}`,
      priority,
      expression: pathThrottleExpression(t),
      count: t.count,
      intervalSec: t.intervalSec,
      description: `Per-IP limit on ${t.method ?? 'any method'} ${t.path}${t.match === 'prefix' ? '*' : ''} (stack config armor.pathThrottles)`,
    };
    return t.banDurationSec === undefined
      ? { ...base, kind: 'throttle' as const }
      : { ...base, kind: 'rate_based_ban' as const, banDurationSec: t.banDurationSec };
  });
}

/** The path prefix the ops backend serves. */
export const OPS_PREFIX = '/ops';
/** The admin-audit endpoint the uptime check calls (the only /ops path the checkers may reach). */
export const ADMIN_AUDIT_PATH = '/ops/release/admin-audit';

/** Source ranges allowed through the ops policy: `ops-allow-<n>`, 10 per rule (band 5000–5499). */
export function opsAllowRules(ranges: readonly string[]): AllowRule[] {
  return chunk([...new Set(ranges)], RANGES_PER_RULE).map((group, i) => {
    const priority = ARMOR_PRIORITY.opsAllowStart + i;
    if (priority > ARMOR_PRIORITY.opsAllowEnd) throw new Error('opsAccess.allowedSourceRanges: too many ranges for the band');
    return {
      kind: 'allow',
      key: `ops-allow-${i + 1}`,
      priority,
      srcIpRanges: group,
      description: `Sources allowed to reach /ops/* (stack config opsAccess.allowedSourceRanges), part ${i + 1}`,
    };
  });
}

/** A single address as a CIDR range. */
const hostRange = (ip: string): string => (ip.includes('/') ? ip : ip.includes(':') ? `${ip}/128` : `${ip}/32`);

/**
 * Cloud Monitoring's uptime checker addresses, allowed to GET the admin-audit endpoint only:
 * `ops-uptime-<n>`, four addresses per rule (a rule has at most five subexpressions), band 5500–5999.
 */
export function opsUptimeRules(checkerIps: readonly string[]): AllowRule[] {
  const ips = [...new Set(checkerIps.map(hostRange))].sort();
  return chunk(ips, UPTIME_IPS_PER_RULE).map((group, i) => {
    const priority = ARMOR_PRIORITY.opsUptimeStart + i;
    if (priority > ARMOR_PRIORITY.opsUptimeEnd) throw new Error('too many uptime checker addresses for the band');
    return {
      kind: 'allow',
      key: `ops-uptime-${i + 1}`,
      priority,
      expression: `request.path == '${ADMIN_AUDIT_PATH}' && (${group.map((r) => `inIpRange(origin.ip, '${r}')`).join(' || ')})`,
      description: `Cloud Monitoring uptime checkers may GET ${ADMIN_AUDIT_PATH}, part ${i + 1}`,
    };
  });
}

/** Builds the baseline rule catalog from stack settings. */
export function baselineArmorRules(s: ArmorRuleSettings): ArmorRule[] {
  const waf: WafRule[] = WAF_RULE_SETS.map((ruleSet, i) => ({
    kind: 'waf',
    key: `waf-${ruleSet}`,
    priority: ARMOR_PRIORITY.wafStart + 10 * i,
    ruleSet,
    version: s.crsVersion,
    sensitivity: s.wafSensitivityOverrides[ruleSet] ?? s.wafSensitivity,
    description: `OWASP CRS ${ruleSet}: ${WAF_RULE_PURPOSE[ruleSet]}`,
    isNew: NEW_RULE_SETS.includes(ruleSet),
  }));
  return [
    ...waf,
    {
      kind: 'rate_based_ban',
      key: 'auth-rate-ban',
      priority: ARMOR_PRIORITY.authBan,
      expression: AUTH_PATH_EXPRESSION,
      count: s.authRateLimit.count,
      intervalSec: s.authRateLimit.intervalSec,
      banDurationSec: s.authRateLimit.banDurationSec,
      description: 'Per-IP ban on /auth/* (credential stuffing, registration and refresh floods)',
    },
    {
      kind: 'throttle',
      key: 'chat-write-throttle',
      priority: ARMOR_PRIORITY.chatThrottle,
      expression: CHAT_WRITE_EXPRESSION,
      count: s.chatWriteThrottle.count,
      intervalSec: s.chatWriteThrottle.intervalSec,
      description: 'Per-IP throttle on HTTP chat writes (spam bursts)',
      isNew: true,
    },
  ];
}

/** The CEL expression of a WAF rule. */
export function wafExpression(rule: Pick<WafRule, 'ruleSet' | 'version' | 'sensitivity'>): string {
  return `evaluatePreconfiguredWaf('${rule.ruleSet}-${rule.version}', {'sensitivity': ${rule.sensitivity}})`;
}

/** Checks a rule list: unique keys and priorities, priorities below the default rule. */
export function checkArmorRules(rules: ArmorRule[]): void {
  const keys = new Set<string>();
  const priorities = new Map<number, string>();
  for (const r of rules) {
    if (keys.has(r.key)) throw new Error(`armor rule ${r.key}: duplicate key`);
    keys.add(r.key);
    const clash = priorities.get(r.priority);
    if (clash) throw new Error(`armor rule ${r.key}: priority ${r.priority} already used by ${clash}`);
    priorities.set(r.priority, r.key);
    if (!Number.isInteger(r.priority) || r.priority < 0 || r.priority >= ARMOR_PRIORITY.default) {
      throw new Error(`armor rule ${r.key}: priority ${r.priority} outside 0..${ARMOR_PRIORITY.default - 1}`);
    }
  }
}
