/**
 * Ops routes (contract §7) other than the release ones (app/release/routes.ts): audit queries,
 * metrics, incident actions and the TOTP key rotation. Every route runs behind the ops guard.
 */
import type { Middleware } from 'koa';
import { requestMeta } from '../http/request-meta.js';
import { defineRoute, type AnyRoute, type AppState } from '../http/route.js';
import { opsCallerOf } from './guard.js';
import {
  adminAuditPageSchema,
  adminAuditQuerySchema,
  forcePasswordResetResponseSchema,
  idParamsSchema,
  metricsResponseSchema,
  mfaKeysResponseSchema,
  mfaResealBodySchema,
  mfaResealResponseSchema,
  revokeSessionsBodySchema,
  revokeSessionsResponseSchema,
  roleBodySchema,
  roleResponseSchema,
  securityAuditPageSchema,
  securityAuditQuerySchema,
  verifyResponseSchema,
} from './schemas.js';
import type { OpsService } from './service.js';

export type OpsRouteDeps = {
  ops: OpsService;
  opsGuard: Middleware<AppState>;
};

const opsErrors = ['unauthorized', 'forbidden', 'mfa_required'] as const;
const bodyErrors = ['validation_failed', 'invalid_json', 'unsupported_media_type', 'payload_too_large'] as const;

export const createOpsRoutes = ({ ops, opsGuard }: OpsRouteDeps): AnyRoute[] => [
  defineRoute({
    method: 'get',
    path: '/ops/release/metrics',
    summary: 'Security-event, auth, drain and session counters (cheap enough to poll every 10 s)',
    tags: ['ops'],
    security: 'ops',
    responses: { 200: { description: 'The counters', body: metricsResponseSchema } },
    errors: [...opsErrors],
    middleware: [opsGuard],
    handler: async () => ({ status: 200, body: await ops.metrics() }),
  }),
  defineRoute({
    method: 'get',
    path: '/ops/release/admin-audit',
    summary: 'Admin actions, newest first (keyset pages)',
    tags: ['ops'],
    security: 'ops',
    request: { query: adminAuditQuerySchema },
    responses: { 200: { description: 'A page', body: adminAuditPageSchema } },
    errors: [...opsErrors, 'validation_failed'],
    middleware: [opsGuard],
    handler: async ({ query }) => ({ status: 200, body: await ops.listAdminAudit(query) }),
  }),
  defineRoute({
    method: 'get',
    path: '/ops/release/security-audit',
    summary: 'Security events, newest first (keyset pages)',
    tags: ['ops'],
    security: 'ops',
    request: { query: securityAuditQuerySchema },
    responses: { 200: { description: 'A page', body: securityAuditPageSchema } },
    errors: [...opsErrors, 'validation_failed'],
    middleware: [opsGuard],
    handler: async ({ query }) => ({ status: 200, body: await ops.listSecurityAudit(query) }),
  }),
  defineRoute({
    method: 'get',
    path: '/ops/release/security-audit/verify',
    summary: "Verify the security-event trail's hash chain",
    tags: ['ops'],
    security: 'ops',
    responses: { 200: { description: 'The verification (ok false names the first broken row)', body: verifyResponseSchema } },
    errors: [...opsErrors],
    middleware: [opsGuard],
    handler: async () => ({ status: 200, body: await ops.verifySecurityAudit() }),
  }),
  defineRoute({
    method: 'post',
    path: '/ops/sessions/revoke',
    summary: "Revoke one user's sessions, or every session ({all: true})",
    tags: ['ops'],
    security: 'ops',
    request: { body: revokeSessionsBodySchema },
    responses: { 200: { description: 'How many sessions were revoked', body: revokeSessionsResponseSchema } },
    errors: [...opsErrors, ...bodyErrors, 'not_found'],
    middleware: [opsGuard],
    handler: async ({ body, ctx }) => ({
      status: 200,
      body: { revoked: await ops.revokeSessions(opsCallerOf(ctx), requestMeta(ctx), body) },
    }),
  }),
  defineRoute({
    method: 'post',
    path: '/ops/users/:id/role',
    summary: "Set a user's role (revokes the user's sessions when it changes)",
    tags: ['ops'],
    security: 'ops',
    request: { params: idParamsSchema, body: roleBodySchema },
    responses: { 200: { description: 'The user', body: roleResponseSchema } },
    errors: [...opsErrors, ...bodyErrors, 'not_found'],
    middleware: [opsGuard],
    handler: async ({ params, body, ctx }) => ({
      status: 200,
      body: await ops.setRole(opsCallerOf(ctx), requestMeta(ctx), params.id, body.role),
    }),
  }),
  defineRoute({
    method: 'post',
    path: '/ops/users/:id/force-password-reset',
    summary: "Require a password reset at the user's next sign-in and revoke the user's sessions",
    tags: ['ops'],
    security: 'ops',
    request: { params: idParamsSchema },
    responses: { 200: { description: 'The user', body: forcePasswordResetResponseSchema } },
    errors: [...opsErrors, 'validation_failed', 'not_found'],
    middleware: [opsGuard],
    handler: async ({ params, ctx }) => ({
      status: 200,
      body: await ops.forcePasswordReset(opsCallerOf(ctx), requestMeta(ctx), params.id),
    }),
  }),
  defineRoute({
    method: 'get',
    path: '/ops/mfa/keys',
    summary: 'TOTP secrets per sealing key id: the current key and how many still await a reseal',
    tags: ['ops', 'mfa'],
    security: 'ops',
    responses: { 200: { description: 'The sealing state (pendingReseal 0: the previous key can be dropped)', body: mfaKeysResponseSchema } },
    errors: [...opsErrors],
    middleware: [opsGuard],
    handler: async () => ({ status: 200, body: await ops.mfaKeys() }),
  }),
  defineRoute({
    method: 'post',
    path: '/ops/mfa/reseal',
    summary: 'Re-seal TOTP secrets still under an older key with the current one (bounded batches, a few seconds per call; repeat until pendingReseal is 0)',
    tags: ['ops', 'mfa'],
    security: 'ops',
    request: { body: mfaResealBodySchema },
    responses: { 200: { description: 'What this call re-sealed and what is left', body: mfaResealResponseSchema } },
    errors: [...opsErrors, ...bodyErrors],
    middleware: [opsGuard],
    handler: async ({ body, ctx }) => ({
      status: 200,
      body: await ops.resealMfaSecrets(opsCallerOf(ctx), requestMeta(ctx), body),
    }),
  }),
];
