/**
 * Armor: the Cloud Armor backend security policy, built from typed rule data
 * (see armor-rules.ts), with JSON body parsing, Adaptive Protection and the
 * mandatory default rule.
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, type BaseArgs } from './common.js';
import { ARMOR_PRIORITY, checkArmorRules, wafExpression, type ArmorRule } from './armor-rules.js';

type PolicyRule = gcp.types.input.compute.SecurityPolicyRule;

export interface ArmorArgs extends BaseArgs {
  /** Policy name (default in config: `karaxas-backend-policy`, as in the seed runbook). */
  policyName: string;
  /** The rules, as data. The default rule is added by the component. */
  rules: ArmorRule[];
  /** Put rules flagged `isNew` into preview (log-only). */
  previewNewRules?: boolean;
  /** Keys of rules to put into preview (log-only). */
  previewRules?: string[];
  /** JSON body parsing for the WAF rules. Default `STANDARD`. */
  jsonParsing?: 'STANDARD' | 'STANDARD_WITH_GRAPHQL';
  /** Log which signature matched (VERBOSE). Default false. */
  verboseLogging?: boolean;
  /** Rules only known at deploy time (e.g. the uptime checker addresses); never previewed. */
  dynamicRules?: pulumi.Input<ArmorRule[]>;
  /** The default rule's action. Default `allow`; `deny(403)` makes the policy an allow list. */
  defaultAction?: DefaultAction;
  /** Description of the policy. */
  description?: string;
  /** Logical name suffix of the resource (default `armor`). */
  resourceSuffix?: string;
}

/** Whether a rule runs in preview mode under the given switches. */
export function isPreview(rule: ArmorRule, previewNewRules: boolean, previewRules: readonly string[]): boolean {
  return previewRules.includes(rule.key) || (previewNewRules && rule.isNew === true);
}

/** Translates one typed rule into the provider's rule shape. */
export function toPolicyRule(rule: ArmorRule, preview: boolean): PolicyRule {
  const description = `[${rule.key}] ${rule.description}`.slice(0, 2048);
  const base = { priority: rule.priority, description, preview };
  switch (rule.kind) {
    case 'waf':
      return { ...base, action: 'deny(403)', match: { expr: { expression: wafExpression(rule) } } };
    case 'rate_based_ban':
      return {
        ...base,
        action: 'rate_based_ban',
        match: { expr: { expression: rule.expression } },
        rateLimitOptions: {
          conformAction: 'allow',
          exceedAction: 'deny(429)',
          enforceOnKey: 'IP',
          rateLimitThreshold: { count: rule.count, intervalSec: rule.intervalSec },
          banDurationSec: rule.banDurationSec,
        },
      };
    case 'throttle':
      return {
        ...base,
        action: 'throttle',
        match: { expr: { expression: rule.expression } },
        rateLimitOptions: {
          conformAction: 'allow',
          exceedAction: 'deny(429)',
          enforceOnKey: 'IP',
          rateLimitThreshold: { count: rule.count, intervalSec: rule.intervalSec },
        },
      };
    case 'deny':
    case 'allow':
      return {
        ...base,
        action: rule.kind === 'deny' ? `deny(${rule.status})` : 'allow',
        match: rule.srcIpRanges
          ? { versionedExpr: 'SRC_IPS_V1', config: { srcIpRanges: rule.srcIpRanges } }
          : { expr: { expression: rule.expression ?? 'false' } },
      };
  }
}

/** What the mandatory last rule does with requests no rule above matched. */
export type DefaultAction = 'allow' | 'deny(403)';

/** The mandatory last rule. */
export function defaultRule(action: DefaultAction = 'allow'): PolicyRule {
  return {
    priority: ARMOR_PRIORITY.default,
    action,
    preview: false,
    description:
      action === 'allow'
        ? '[default] Default rule: allow what no rule above denied'
        : '[default] Default rule: deny what no rule above allowed',
    match: { versionedExpr: 'SRC_IPS_V1', config: { srcIpRanges: ['*'] } },
  };
}

export class Armor extends pulumi.ComponentResource {
  public readonly policy: gcp.compute.SecurityPolicy;
  /** Keys of the rules that run in preview (log-only) on this stack. */
  public readonly previewedRules: string[];

  constructor(name: string, args: ArmorArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:Armor`, name, {}, opts);
    checkArmorRules(args.rules);
    const previewRules = args.previewRules ?? [];
    const known = new Set(args.rules.map((r) => r.key));
    for (const key of previewRules) {
      if (!known.has(key)) {
        throw new Error(`karaxas-backend:armor.previewRules: unknown rule ${key} (known: ${[...known].join(', ')})`);
      }
    }
    const previewNew = args.previewNewRules ?? false;
    const rules = [...args.rules].sort((a, b) => a.priority - b.priority);
    this.previewedRules = rules.filter((r) => isPreview(r, previewNew, previewRules)).map((r) => r.key);

    const fixed = rules.map((r) => toPolicyRule(r, isPreview(r, previewNew, previewRules)));
    const fallback = defaultRule(args.defaultAction ?? 'allow');
    const allRules = pulumi.output(args.dynamicRules ?? []).apply((dynamic) => {
      checkArmorRules([...args.rules, ...dynamic]);
      const extra = [...dynamic].sort((a, b) => a.priority - b.priority).map((r) => toPolicyRule(r, false));
      return [...fixed, ...extra].sort((a, b) => (a.priority as number) - (b.priority as number)).concat(fallback);
    });

    this.policy = new gcp.compute.SecurityPolicy(
      `${args.prefix}-${args.resourceSuffix ?? 'armor'}`,
      {
        project: args.project,
        name: args.policyName,
        type: 'CLOUD_ARMOR',
        description: args.description ?? 'Karaxas backend edge policy: OWASP CRS, per-IP rate limits, adaptive protection',
        advancedOptionsConfig: {
          jsonParsing: args.jsonParsing ?? 'STANDARD',
          logLevel: args.verboseLogging ? 'VERBOSE' : 'NORMAL',
        },
        adaptiveProtectionConfig: {
          layer7DdosDefenseConfig: { enable: true, ruleVisibility: 'STANDARD' },
        },
        rules: allRules,
      },
      { parent: this },
    );

    this.registerOutputs({ policyName: this.policy.name, previewedRules: this.previewedRules });
  }
}
