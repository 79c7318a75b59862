import type { Middleware } from 'koa';
import { z } from 'zod';
import { clientInfo, requestMeta } from '../http/request-meta.js';
import { defineRoute, type AnyRoute, type AppState } from '../http/route.js';
import { authOf, requireUser } from './guard.js';
import {
  loginBodySchema,
  mfaChallengeSchema,
  refreshBodySchema,
  registerBodySchema,
  sessionSchema,
  tokenPairSchema,
  userSchema,
} from './schemas.js';
import type { AuthService } from './service.js';

export type AuthRouteDeps = {
  auth: AuthService;
  /** Per-IP throttle shared by the credential endpoints (contract §9 AUTH_RATE_LIMIT_*). */
  throttle: Middleware<AppState>;
  /** Checks run before login and refresh (the release policy's client update gate). */
  clientGate: Middleware<AppState>[];
  /** MFA's handover after a correct password (returns a challenge when TOTP is on). */
  afterPassword?: Parameters<AuthService['login']>[3];
};

export const createAuthRoutes = ({ auth, throttle, clientGate, afterPassword }: AuthRouteDeps): AnyRoute[] => {
  const signedIn = requireUser(auth);
  return [
    defineRoute({
      method: 'post',
      path: '/auth/register',
      summary: 'Create an account',
      tags: ['auth'],
      request: { body: registerBodySchema },
      responses: { 201: { description: 'Created', body: z.object({ user: userSchema }) } },
      errors: ['validation_failed', 'invalid_json', 'unsupported_media_type', 'payload_too_large', 'email_taken', 'rate_limited'],
      middleware: [throttle],
      handler: async ({ body, ctx }) => ({ status: 201, body: { user: await auth.register(requestMeta(ctx), body) } }),
    }),
    defineRoute({
      method: 'post',
      path: '/auth/login',
      summary: 'Sign in with e-mail and password',
      tags: ['auth'],
      request: { body: loginBodySchema },
      responses: { 200: { description: 'A token pair, or an MFA challenge', body: z.union([tokenPairSchema, mfaChallengeSchema]) } },
      errors: [
        'validation_failed',
        'invalid_json',
        'invalid_credentials',
        'password_reset_required',
        'rate_limited',
        'account_locked',
        'client_update_required',
      ],
      middleware: [throttle, ...clientGate],
      handler: async ({ body, ctx }) => {
        const result = await auth.login(requestMeta(ctx), clientInfo(ctx), body, afterPassword);
        return { status: 200, body: 'pair' in result ? result.pair : result.challenge };
      },
    }),
    defineRoute({
      method: 'post',
      path: '/auth/refresh',
      summary: 'Exchange a refresh token for a new pair (rotation)',
      tags: ['auth'],
      request: { body: refreshBodySchema },
      responses: { 200: { description: 'The rotated pair', body: tokenPairSchema } },
      errors: ['validation_failed', 'invalid_refresh_token', 'refresh_token_reused', 'rate_limited', 'client_update_required'],
      middleware: [throttle, ...clientGate],
      handler: async ({ body, ctx }) => ({
        status: 200,
        body: await auth.refresh(requestMeta(ctx), clientInfo(ctx), body.refreshToken),
      }),
    }),
    defineRoute({
      method: 'post',
      path: '/auth/logout',
      summary: 'Revoke the current session',
      tags: ['auth'],
      security: 'bearer',
      responses: { 204: { description: 'Signed out' } },
      errors: ['unauthorized'],
      middleware: [signedIn],
      handler: async ({ ctx }) => {
        await auth.logout(requestMeta(ctx), authOf(ctx.state));
        return { status: 204 };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/auth/me',
      summary: 'The signed-in user',
      tags: ['auth'],
      security: 'bearer',
      responses: { 200: { description: 'The user', body: z.object({ user: userSchema }) } },
      errors: ['unauthorized'],
      middleware: [signedIn],
      handler: async ({ ctx }) => ({ status: 200, body: { user: await auth.me(authOf(ctx.state)) } }),
    }),
    defineRoute({
      method: 'get',
      path: '/auth/sessions',
      summary: "The caller's active sessions",
      tags: ['auth'],
      security: 'bearer',
      responses: { 200: { description: 'Active sessions', body: z.object({ sessions: z.array(sessionSchema) }) } },
      errors: ['unauthorized'],
      middleware: [signedIn],
      handler: async ({ ctx }) => ({ status: 200, body: { sessions: await auth.listSessions(authOf(ctx.state)) } }),
    }),
    defineRoute({
      method: 'delete',
      path: '/auth/sessions/:id',
      summary: "Revoke one of the caller's sessions",
      tags: ['auth'],
      security: 'bearer',
      request: { params: z.object({ id: z.string().uuid() }) },
      responses: { 204: { description: 'Revoked' } },
      errors: ['unauthorized', 'validation_failed', 'not_found'],
      middleware: [signedIn],
      handler: async ({ params, ctx }) => {
        await auth.revokeOwnSession(requestMeta(ctx), authOf(ctx.state), params.id);
        return { status: 204 };
      },
    }),
    defineRoute({
      method: 'post',
      path: '/auth/sessions/revoke-all',
      summary: "Revoke all of the caller's sessions, the current one included",
      tags: ['auth'],
      security: 'bearer',
      responses: { 200: { description: 'How many were revoked', body: z.object({ revoked: z.number().int() }) } },
      errors: ['unauthorized'],
      middleware: [signedIn],
      handler: async ({ ctx }) => ({
        status: 200,
        body: { revoked: await auth.revokeAllOwnSessions(requestMeta(ctx), authOf(ctx.state)) },
      }),
    }),
  ];
};
