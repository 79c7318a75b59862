/**
 * Routes of the release feature: the public policy read (contract §6) and the ops release
 * endpoints (contract §7) — policies, activation, publish, drain status.
 */
import type { Middleware } from 'koa';
import { requestMeta } from '../http/request-meta.js';
import { defineRoute, type AnyRoute, type AppState } from '../http/route.js';
import { opsCallerOf } from '../ops/guard.js';
import {
  activatePolicyResponseSchema,
  createPolicyBodySchema,
  createPolicyResponseSchema,
  drainResponseSchema,
  idParamsSchema,
  publicPolicyQuerySchema,
  publicPolicyResponseSchema,
  publishBodySchema,
  publishResponseSchema,
} from '../ops/schemas.js';
import type { ReleaseService } from './service.js';

export type ReleaseRouteDeps = {
  release: ReleaseService;
  /** The ops authentication guard (app/ops/guard.ts). */
  opsGuard: Middleware<AppState>;
};

const opsErrors = ['unauthorized', 'forbidden', 'mfa_required'] as const;
const bodyErrors = ['validation_failed', 'invalid_json', 'unsupported_media_type', 'payload_too_large'] as const;

export const createReleaseRoutes = ({ release, opsGuard }: ReleaseRouteDeps): AnyRoute[] => [
  defineRoute({
    method: 'get',
    path: '/release/policy',
    summary: "The active release policy of a platform, and whether the given version must update",
    tags: ['release'],
    request: { query: publicPolicyQuerySchema },
    responses: { 200: { description: 'The policy (null when none is active)', body: publicPolicyResponseSchema } },
    errors: ['validation_failed'],
    handler: async ({ query }) => ({ status: 200, body: await release.publicPolicy(query.platform, query.version) }),
  }),
  defineRoute({
    method: 'post',
    path: '/ops/release/policies',
    summary: 'Create a release policy (inactive until activated)',
    tags: ['ops', 'release'],
    security: 'ops',
    request: { body: createPolicyBodySchema },
    responses: { 201: { description: 'The new, inactive policy', body: createPolicyResponseSchema } },
    errors: [...opsErrors, ...bodyErrors],
    middleware: [opsGuard],
    handler: async ({ body, ctx }) => ({
      status: 201,
      body: { policy: await release.createPolicy(opsCallerOf(ctx), requestMeta(ctx), body) },
    }),
  }),
  defineRoute({
    method: 'post',
    path: '/ops/release/policies/:id/activate',
    summary: "Activate a policy; the platform's previous active policy is deactivated in the same transaction",
    tags: ['ops', 'release'],
    security: 'ops',
    request: { params: idParamsSchema },
    responses: { 200: { description: 'The active policy', body: activatePolicyResponseSchema } },
    errors: [...opsErrors, 'validation_failed', 'not_found'],
    middleware: [opsGuard],
    handler: async ({ params, ctx }) => ({
      status: 200,
      body: { policy: await release.activatePolicy(opsCallerOf(ctx), requestMeta(ctx), params.id) },
    }),
  }),
  defineRoute({
    method: 'post',
    path: '/ops/release/publish',
    summary: 'Publish a release: activate its policy and drain old clients on every instance',
    tags: ['ops', 'release'],
    security: 'ops',
    request: { body: publishBodySchema },
    responses: { 202: { description: 'The drain started; follow it at /ops/release/drains/{drainId}', body: publishResponseSchema } },
    errors: [...opsErrors, ...bodyErrors],
    middleware: [opsGuard],
    handler: async ({ body, ctx }) => ({ status: 202, body: await release.publish(opsCallerOf(ctx), requestMeta(ctx), body) }),
  }),
  defineRoute({
    method: 'get',
    path: '/ops/release/drains/:id',
    summary: 'Status of a publish drain, with counts per instance',
    tags: ['ops', 'release'],
    security: 'ops',
    request: { params: idParamsSchema },
    responses: { 200: { description: 'The drain', body: drainResponseSchema } },
    errors: [...opsErrors, 'validation_failed', 'not_found'],
    middleware: [opsGuard],
    handler: async ({ params }) => ({ status: 200, body: { drain: await release.drainStatus(params.id) } }),
  }),
];
