import type { Middleware } from 'koa';
import { authOf, requireUser } from '../auth/guard.js';
import { tokenPairSchema } from '../auth/schemas.js';
import type { AuthService } from '../auth/service.js';
import { clientInfo, requestMeta } from '../http/request-meta.js';
import { defineRoute, type AnyRoute, type AppState } from '../http/route.js';
import { mfaCodeBodySchema, mfaVerifyBodySchema, recoveryCodesSchema, totpEnrollmentSchema } from './schemas.js';
import type { MfaService } from './service.js';

export type MfaRouteDeps = {
  mfa: MfaService;
  auth: AuthService;
  /**
   * The per-IP credential throttle shared with login (contract §9 AUTH_RATE_LIMIT_*): on verify,
   * and on the signed-in routes that check a code (on top of the per-account lockout).
   */
  throttle: Middleware<AppState>;
  /** The checks run before login (release policy gate); also run before verify, which mints tokens. */
  clientGate: Middleware<AppState>[];
};

export const createMfaRoutes = ({ mfa, auth, throttle, clientGate }: MfaRouteDeps): AnyRoute[] => {
  const signedIn = requireUser(auth);
  const codeErrors = ['validation_failed', 'invalid_json', 'unsupported_media_type', 'unauthorized', 'invalid_mfa_code', 'account_locked', 'rate_limited'] as const;
  return [
    defineRoute({
      method: 'post',
      path: '/auth/mfa/verify',
      summary: 'Complete a sign-in with a TOTP or recovery code (after an MFA challenge from /auth/login)',
      tags: ['auth', 'mfa'],
      request: { body: mfaVerifyBodySchema },
      responses: { 200: { description: 'The token pair (amr pwd, otp)', body: tokenPairSchema } },
      errors: [
        'validation_failed',
        'invalid_json',
        'unsupported_media_type',
        'invalid_mfa_token',
        'invalid_mfa_code',
        'password_reset_required',
        'account_locked',
        'rate_limited',
        'client_update_required',
      ],
      middleware: [throttle, ...clientGate],
      handler: async ({ body, ctx }) => ({ status: 200, body: await mfa.verifyLogin(requestMeta(ctx), clientInfo(ctx), body) }),
    }),
    defineRoute({
      method: 'post',
      path: '/auth/mfa/totp/enroll',
      summary: 'Start TOTP enrollment (pending until activated; restarting replaces a pending secret)',
      tags: ['mfa'],
      security: 'bearer',
      responses: { 200: { description: 'The new secret', body: totpEnrollmentSchema } },
      errors: ['unauthorized', 'mfa_already_enabled'],
      middleware: [signedIn],
      handler: async ({ ctx }) => ({ status: 200, body: await mfa.enroll(requestMeta(ctx), authOf(ctx.state)) }),
    }),
    defineRoute({
      method: 'post',
      path: '/auth/mfa/totp/activate',
      summary: 'Activate TOTP with a first code; returns the recovery codes (shown once)',
      tags: ['mfa'],
      security: 'bearer',
      request: { body: mfaCodeBodySchema },
      responses: { 200: { description: 'TOTP is on', body: recoveryCodesSchema } },
      errors: [...codeErrors, 'mfa_not_enabled', 'mfa_already_enabled'],
      middleware: [throttle, signedIn],
      handler: async ({ body, ctx }) => ({ status: 200, body: await mfa.activate(requestMeta(ctx), authOf(ctx.state), body.code) }),
    }),
    defineRoute({
      method: 'post',
      path: '/auth/mfa/totp/disable',
      summary: 'Turn TOTP off with a current TOTP code or a recovery code; signs out every session',
      tags: ['mfa'],
      security: 'bearer',
      request: { body: mfaCodeBodySchema },
      responses: { 204: { description: 'TOTP is off; all sessions were revoked' } },
      errors: [...codeErrors, 'mfa_not_enabled'],
      middleware: [throttle, signedIn],
      handler: async ({ body, ctx }) => {
        await mfa.disable(requestMeta(ctx), authOf(ctx.state), body.code);
        return { status: 204 };
      },
    }),
    defineRoute({
      method: 'post',
      path: '/auth/mfa/recovery-codes',
      summary: 'Replace the recovery codes (a current TOTP code required); earlier codes stop working',
      tags: ['mfa'],
      security: 'bearer',
      request: { body: mfaCodeBodySchema },
      responses: { 200: { description: 'The new recovery codes (shown once)', body: recoveryCodesSchema } },
      errors: [...codeErrors, 'mfa_not_enabled'],
      middleware: [throttle, signedIn],
      handler: async ({ body, ctx }) => ({
        status: 200,
        body: await mfa.regenerateRecoveryCodes(requestMeta(ctx), authOf(ctx.state), body.code),
      }),
    }),
  ];
};
