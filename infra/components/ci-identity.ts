/**
 * CiIdentity: keyless CI access through Workload Identity Federation.
 *
 * - One pool + GitHub OIDC provider whose attribute condition pins the
 *   repository and its owner by numeric id (names can be re-registered; ids cannot).
 * - A deployer account usable only by jobs on the configured branches (push /
 *   manual runs) or in the configured protected GitHub environments.
 * - A read-only preview account usable by pull-request jobs (and the deploy refs).
 * - Bindings are `principalSet://…/attribute.<name>/<value>`, never `/*`;
 *   no service-account key exists anywhere.
 */
import * as pulumi from '@pulumi/pulumi';
import * as gcp from '@pulumi/gcp';
import { COMPONENT_TYPE_PREFIX, serviceAccountMember, type BaseArgs } from './common.js';

export const GITHUB_OIDC_ISSUER = 'https://token.actions.githubusercontent.com';

export interface CiIdentityArgs extends BaseArgs {
  /** `owner/name` of the repository (informational; the condition uses the ids). */
  repository: string;
  /** Numeric GitHub repository id. */
  repositoryId: string;
  /** Numeric GitHub owner (organization/user) id. */
  ownerId: string;
  /** Branches whose pushes and manual runs may deploy. */
  deployBranches: string[];
  /** Protected GitHub environments whose jobs may deploy. */
  deployEnvironments: string[];
  /** Project roles of the deployer. */
  deployerRoles: string[];
  /** Project roles of the preview account (read-only). */
  previewRoles: string[];
  /** Service accounts the deployer must be able to attach to resources (the runtime account). */
  actAsServiceAccounts: pulumi.Input<string>[];
  /** Artifact Registry repository the deployer pushes images to. */
  artifactRepository: { project: pulumi.Input<string>; location: pulumi.Input<string>; name: pulumi.Input<string> };
}

/** The CEL attribute condition: only tokens of this repository, by numeric ids. */
export function attributeCondition(repositoryId: string, ownerId: string): string {
  if (!/^\d+$/.test(repositoryId) || !/^\d+$/.test(ownerId)) throw new Error('repository and owner ids must be numeric');
  return `assertion.repository_id == '${repositoryId}' && assertion.repository_owner_id == '${ownerId}'`;
}

/**
 * CEL mapping of `attribute.deploy_gate`: `environment-<name>` for jobs in an allowed
 * environment, `branch-<name>` for pushes/manual runs on an allowed branch, else `none`.
 * Built only from claims GitHub always sends (`sub`, `ref`, `event_name`).
 */
export function deployGateMapping(branches: string[], environments: string[]): string {
  const checks = [
    ...environments.map((e) => [`assertion.sub.endsWith(':environment:${e}')`, `environment-${e}`] as const),
    ...branches.map(
      (b) =>
        [
          `(assertion.ref == 'refs/heads/${b}' && (assertion.event_name == 'push' || assertion.event_name == 'workflow_dispatch'))`,
          `branch-${b}`,
        ] as const,
    ),
  ];
  return checks.reduceRight<string>((rest, [cond, value]) => `${cond} ? '${value}' : (${rest})`, "'none'");
}

export class CiIdentity extends pulumi.ComponentResource {
  public readonly pool: gcp.iam.WorkloadIdentityPool;
  public readonly provider: gcp.iam.WorkloadIdentityPoolProvider;
  public readonly deployer: gcp.serviceaccount.Account;
  public readonly previewer: gcp.serviceaccount.Account;
  /** Value for the GCP_WORKLOAD_IDENTITY_PROVIDER repository variable. */
  public readonly providerName: pulumi.Output<string>;

  constructor(name: string, args: CiIdentityArgs, opts?: pulumi.ComponentResourceOptions) {
    super(`${COMPONENT_TYPE_PREFIX}:CiIdentity`, name, {}, opts);
    const p = args.prefix;

    this.pool = new gcp.iam.WorkloadIdentityPool(
      `${p}-github`,
      {
        project: args.project,
        workloadIdentityPoolId: `${p}-github`,
        displayName: 'GitHub Actions',
        description: `CI of ${args.repository}`,
      },
      { parent: this },
    );

    this.provider = new gcp.iam.WorkloadIdentityPoolProvider(
      `${p}-github-actions`,
      {
        project: args.project,
        workloadIdentityPoolId: this.pool.workloadIdentityPoolId,
        workloadIdentityPoolProviderId: 'github-actions',
        displayName: 'GitHub Actions OIDC',
        attributeCondition: attributeCondition(args.repositoryId, args.ownerId),
        attributeMapping: {
          'google.subject': 'assertion.sub',
          'attribute.repository_id': 'assertion.repository_id',
          'attribute.repository_owner_id': 'assertion.repository_owner_id',
          'attribute.ref': 'assertion.ref',
          'attribute.event_name': 'assertion.event_name',
          'attribute.deploy_gate': deployGateMapping(args.deployBranches, args.deployEnvironments),
        },
        oidc: { issuerUri: GITHUB_OIDC_ISSUER },
      },
      { parent: this },
    );
    this.providerName = this.provider.name;

    const principalSet = (attribute: string, value: string) =>
      pulumi.interpolate`principalSet://iam.googleapis.com/${this.pool.name}/attribute.${attribute}/${value}`;

    this.deployer = new gcp.serviceaccount.Account(
      `${p}-deploy`,
      {
        project: args.project,
        accountId: `${p}-deploy`,
        displayName: 'CI deployer (pulumi up)',
        description: `Impersonated by ${args.repository} on ${[...args.deployBranches.map((b) => `branch ${b}`), ...args.deployEnvironments.map((e) => `environment ${e}`)].join(', ')}`,
      },
      { parent: this },
    );
    this.previewer = new gcp.serviceaccount.Account(
      `${p}-preview`,
      {
        project: args.project,
        accountId: `${p}-preview`,
        displayName: 'CI preview (read-only)',
        description: `Impersonated by pull-request jobs of ${args.repository} for pulumi preview`,
      },
      { parent: this },
    );

    const deployGates = [
      ...args.deployEnvironments.map((e) => `environment-${e}`),
      ...args.deployBranches.map((b) => `branch-${b}`),
    ];
    for (const gate of deployGates) {
      new gcp.serviceaccount.IAMMember(
        `${p}-deploy-wif-${gate}`,
        {
          serviceAccountId: this.deployer.name,
          role: 'roles/iam.workloadIdentityUser',
          member: principalSet('deploy_gate', gate),
        },
        { parent: this },
      );
    }

    const previewPrincipals: Array<[string, pulumi.Output<string>]> = [
      ['pull-request', principalSet('event_name', 'pull_request')],
      ...args.deployBranches.map((b): [string, pulumi.Output<string>] => [`branch-${b}`, principalSet('ref', `refs/heads/${b}`)]),
    ];
    for (const [label, member] of previewPrincipals) {
      new gcp.serviceaccount.IAMMember(
        `${p}-preview-wif-${label}`,
        { serviceAccountId: this.previewer.name, role: 'roles/iam.workloadIdentityUser', member },
        { parent: this },
      );
    }

    const deployerMember = serviceAccountMember(this.deployer.email);
    const previewMember = serviceAccountMember(this.previewer.email);
    for (const role of args.deployerRoles) {
      new gcp.projects.IAMMember(
        `${p}-deploy-${role.replace(/^roles\//, '').replace(/\./g, '-')}`,
        { project: args.project, role, member: deployerMember },
        { parent: this },
      );
    }
    for (const role of args.previewRoles) {
      new gcp.projects.IAMMember(
        `${p}-preview-${role.replace(/^roles\//, '').replace(/\./g, '-')}`,
        { project: args.project, role, member: previewMember },
        { parent: this },
      );
    }
    // The deployer may attach the runtime account to Cloud Run, and nothing else.
    args.actAsServiceAccounts.forEach((sa, i) => {
      new gcp.serviceaccount.IAMMember(
        `${p}-deploy-actas-${i}`,
        { serviceAccountId: sa, role: 'roles/iam.serviceAccountUser', member: deployerMember },
        { parent: this },
      );
    });
    new gcp.artifactregistry.RepositoryIamMember(
      `${p}-deploy-push`,
      {
        project: args.artifactRepository.project,
        location: args.artifactRepository.location,
        repository: args.artifactRepository.name,
        role: 'roles/artifactregistry.writer',
        member: deployerMember,
      },
      { parent: this },
    );

    this.registerOutputs({
      workloadIdentityProvider: this.providerName,
      deployerEmail: this.deployer.email,
      previewEmail: this.previewer.email,
    });
  }
}
