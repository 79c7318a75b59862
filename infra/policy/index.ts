/**
 * The CrossGuard policy pack: `pulumi preview|up --policy-pack infra/policy`.
 * The policies themselves live in ./policies.ts (unit-tested without the CLI).
 */
import { PolicyPack } from '@pulumi/policy';
import { policies } from './policies.js';

new PolicyPack('karaxas-perimeter', {
  description: 'Invariants of the Karaxas backend perimeter on Google Cloud (see docs/infra.md).',
  enforcementLevel: 'mandatory',
  policies,
});
