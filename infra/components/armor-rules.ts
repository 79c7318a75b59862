/**
 * Cloud Armor rules as typed data.
 *
 * The Armor component turns these into policy rules; tests, the policy pack
 * and docs/infra.md read the same catalog. Later rule kinds (IP deny lists,
 * the /ops source restriction) slot in as more `ArmorRule` values in the
 * reserved priority band.
 */
import { WAF_RULE_SETS, type WafRuleSet } from '../config.js';

/** Priority bands. Lower numbers are evaluated first; the first matching rule wins. */
export const ARMOR_PRIORITY = {
  /** 100–899: reserved for deny lists and source restrictions (evaluated before everything else). */
  reservedDenyStart: 100,
  /** 1000 + 10·i: OWASP CRS preconfigured WAF rules (before rate limits, whose "allow" ends evaluation). */
  wafStart: 1000,
  /** Per-IP ban on /auth/*. */
  authBan: 3000,
  /** Per-IP throttle on HTTP chat writes. */
  chatThrottle: 3100,
  /** The mandatory default rule. */
  default: 2147483647,
} as const;

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

export type ArmorRule = WafRule | RateBasedBanRule | ThrottleRule | DenyRule;

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
