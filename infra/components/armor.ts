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
      return {
        ...base,
        action: `deny(${rule.status})`,
        match: rule.srcIpRanges
          ? { versionedExpr: 'SRC_IPS_V1', config: { srcIpRanges: rule.srcIpRanges } }
          : { expr: { expression: rule.expression ?? 'false' } },
      };
  }
}

/** The mandatory last rule: everything not denied above is allowed through to the app. */
export const DEFAULT_RULE: PolicyRule = {
  priority: ARMOR_PRIORITY.default,
  action: 'allow',
  preview: false,
  description: '[default] Default rule: allow what no rule above denied',
  match: { versionedExpr: 'SRC_IPS_V1', config: { srcIpRanges: ['*'] } },
};

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

    this.policy = new gcp.compute.SecurityPolicy(
      `${args.prefix}-armor`,
      {
        project: args.project,
        name: args.policyName,
        type: 'CLOUD_ARMOR',
        description: 'Karaxas backend edge policy: OWASP CRS, per-IP rate limits, adaptive protection',
        advancedOptionsConfig: {
          jsonParsing: args.jsonParsing ?? 'STANDARD',
          logLevel: args.verboseLogging ? 'VERBOSE' : 'NORMAL',
        },
        adaptiveProtectionConfig: {
          layer7DdosDefenseConfig: { enable: true, ruleVisibility: 'STANDARD' },
        },
        rules: [...rules.map((r) => toPolicyRule(r, isPreview(r, previewNew, previewRules))), DEFAULT_RULE],
      },
      { parent: this },
    );

    this.registerOutputs({ policyName: this.policy.name, previewedRules: this.previewedRules });
  }
}
