/**
 * Runs the pack's policies without the Pulumi CLI: builds the argument objects
 * CrossGuard would pass (`ResourceValidationArgs`, `StackValidationArgs`) from
 * plain resource data. Used by `npm run infra:plan` on the mocked program and
 * by the policy unit tests.
 */
import type {
  PolicyResource,
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
  StackValidationPolicy,
} from '@pulumi/policy';

/** Plain data describing one resource for a policy. */
export interface PolicyInput {
  type: string;
  name: string;
  props: Record<string, unknown>;
  /** Defaults to `urn:pulumi:<stack>::karaxas-backend::<type>::<name>`. */
  urn?: string;
}

export interface Violation {
  policy: string;
  resource?: string;
  message: string;
}

/** Thrown by `notApplicable`, as the CrossGuard server does. */
export class NotApplicable extends Error {
  constructor(reason?: string) {
    super(reason ?? 'not applicable');
    this.name = 'NotApplicable';
  }
}

const typeOf = (cls: unknown): string | undefined => (cls as { __pulumiType?: string }).__pulumiType;

/** Builds a URN for a resource of a stack. */
export function urnFor(stack: string, type: string, name: string): string {
  return `urn:pulumi:${stack}::karaxas-backend::${type}::${name}`;
}

const emptyOpts = {
  protect: false,
  ignoreChanges: [],
  aliases: [],
  customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
  additionalSecretOutputs: [],
};

/** The argument object of a resource validation. */
export function resourceArgs(r: PolicyInput, stack = 'staging', config: object = {}): ResourceValidationArgs {
  return {
    type: r.type,
    name: r.name,
    urn: r.urn ?? urnFor(stack, r.type, r.name),
    props: r.props,
    opts: emptyOpts,
    stackTags: new Map(),
    isType: (cls) => typeOf(cls) === r.type,
    asType: ((cls: unknown) => (typeOf(cls) === r.type ? r.props : undefined)) as ResourceValidationArgs['asType'],
    getConfig: <T extends object>() => config as T,
    notApplicable: (reason?: string): never => {
      throw new NotApplicable(reason);
    },
  };
}

/** The argument object of a stack validation. */
export function stackArgs(resources: PolicyInput[], stack = 'staging', config: object = {}): StackValidationArgs {
  const policyResources: PolicyResource[] = resources.map((r) => ({
    type: r.type,
    name: r.name,
    urn: r.urn ?? urnFor(stack, r.type, r.name),
    props: r.props,
    opts: emptyOpts,
    dependencies: [],
    propertyDependencies: {},
    isType: (cls) => typeOf(cls) === r.type,
    asType: ((cls: unknown) => (typeOf(cls) === r.type ? r.props : undefined)) as PolicyResource['asType'],
  }));
  return {
    resources: policyResources,
    stackTags: new Map(),
    getConfig: <T extends object>() => config as T,
    notApplicable: (reason?: string): never => {
      throw new NotApplicable(reason);
    },
  };
}

function isStackPolicy(p: ResourceValidationPolicy | StackValidationPolicy): p is StackValidationPolicy {
  return 'validateStack' in p;
}

async function guard(run: () => Promise<void> | void): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (!(err instanceof NotApplicable)) throw err;
  }
}

/**
 * Runs policies over resources; returns every violation. `packConfig` has the shape of
 * `pulumi preview --policy-pack-config`: policy name → that policy's config.
 */
export async function evaluatePolicies(
  policies: Array<ResourceValidationPolicy | StackValidationPolicy>,
  resources: PolicyInput[],
  stack: string,
  packConfig: Record<string, object> = {},
): Promise<Violation[]> {
  const violations: Violation[] = [];
  for (const policy of policies) {
    const config = packConfig[policy.name] ?? {};
    if (isStackPolicy(policy)) {
      const report: ReportViolation = (message, urn) => violations.push({ policy: policy.name, resource: urn, message });
      await guard(() => policy.validateStack(stackArgs(resources, stack, config), report));
      continue;
    }
    const validators = Array.isArray(policy.validateResource) ? policy.validateResource : [policy.validateResource];
    for (const r of resources) {
      const report: ReportViolation = (message) => violations.push({ policy: policy.name, resource: r.name, message });
      for (const validate of validators) {
        if (validate) await guard(() => validate(resourceArgs(r, stack, config), report));
      }
    }
  }
  return violations;
}
