/**
 * The minimal password reset a forced reset needs (ops `force-password-reset`, contract §7):
 * `POST /auth/password/reset {email, currentPassword, newPassword}`. Public and throttled like
 * login (the per-IP throttle and the per-account lockout): the user proves the current password
 * and sets a new one, which clears `password_reset_required`, revokes every session of the user
 * and records `password_changed`. The user then signs in again with the new password.
 *
 * Failures look like login failures (same 401 body, same hashing work for unknown addresses)
 * and count toward the account lockout. A user with MFA on must also give a current TOTP or
 * recovery code (`code`), consumed in the transaction that changes the password: the password
 * alone must not be enough to sign every session of an MFA user out.
 */
import type { Middleware } from 'koa';
import type { CommonQueryMethods as Queryable, DatabasePool } from 'slonik';
import { z } from 'zod';
import type { RequestMeta, SecurityAuditService } from '../audit/types.js';
import { AppError } from '../http/errors.js';
import { requestMeta } from '../http/request-meta.js';
import { defineRoute, type AnyRoute, type AppState } from '../http/route.js';
import type { PasswordHasher } from './passwords.js';
import { emailSchema, newPasswordSchema, userSchema } from './schemas.js';
import { toPublicUser, type AuthService, type PublicUser } from './service.js';
import type { AuthStore, UserRow } from './store.js';

export const passwordResetBodySchema = z
  .object({
    email: emailSchema,
    currentPassword: z.string().min(1).max(128),
    newPassword: newPasswordSchema,
    /** Required when the account has MFA on: a TOTP code or a recovery code. */
    code: z.string().min(1).max(64).optional(),
  })
  .strict();

export type PasswordResetDeps = {
  pool: DatabasePool;
  auth: Pick<AuthService, 'assertNotLocked' | 'recordLoginFailure' | 'revokeUserSessionsIn'>;
  store: Pick<AuthStore, 'findUserByEmail' | 'completePasswordReset'>;
  passwords: PasswordHasher;
  audit: Pick<SecurityAuditService, 'record'>;
  /** The MFA feature's second-factor check (consumes the code in the reset's transaction). */
  secondFactor: <T>(meta: RequestMeta, user: UserRow, code: string, purpose: 'password_reset', work: (tx: Queryable) => Promise<T>) => Promise<T>;
};

export const createPasswordResetService = ({ pool, auth, store, passwords, audit, secondFactor }: PasswordResetDeps) => ({
  /**
   * @throws {AppError} account_locked, invalid_credentials, validation_failed (new = current).
   */
  reset: async (
    meta: RequestMeta,
    input: { email: string; currentPassword: string; newPassword: string; code?: string },
  ): Promise<PublicUser> => {
    await auth.assertNotLocked(input.email);
    const user = await store.findUserByEmail(pool, input.email.trim());
    const valid = await passwords.verify(user?.password_hash, input.currentPassword);
    if (!user || !valid) {
      const state = await auth.recordLoginFailure(meta, input.email, user?.id ?? null, user ? 'wrong_password' : 'unknown_account');
      if (state.locked) throw new AppError('account_locked', { headers: { 'Retry-After': String(Math.max(1, state.retryAfterSeconds)) } });
      throw new AppError('invalid_credentials');
    }
    if (input.newPassword === input.currentPassword) {
      throw new AppError('validation_failed', { details: [{ path: 'body.newPassword', message: 'must differ from the current password' }] });
    }
    if (user.mfa_enabled && input.code === undefined) {
      throw new AppError('invalid_mfa_code', { message: 'This account has MFA on: a TOTP or recovery code is required.' });
    }
    const passwordHash = await passwords.hash(input.newPassword);
    const change = async (tx: Queryable) => {
      const updated = await store.completePasswordReset(tx, user.id, passwordHash);
      if (!updated) throw new AppError('invalid_credentials');
      const revoked = await auth.revokeUserSessionsIn(tx, user.id, 'password_changed');
      await audit.record(tx, meta, {
        type: 'password_changed',
        userId: user.id,
        details: { via: 'password_reset', wasRequired: user.password_reset_required, revoked: revoked.length, mfa: user.mfa_enabled },
      });
      return toPublicUser(updated);
    };
    return user.mfa_enabled ? secondFactor(meta, user, input.code!, 'password_reset', change) : pool.transaction(change);
  },
});

export type PasswordResetService = ReturnType<typeof createPasswordResetService>;

export const createPasswordResetRoutes = (deps: { reset: PasswordResetService; throttle: Middleware<AppState> }): AnyRoute[] => [
  defineRoute({
    method: 'post',
    path: '/auth/password/reset',
    summary: 'Set a new password by proving the current one (clears a forced reset; signs out every session)',
    tags: ['auth'],
    request: { body: passwordResetBodySchema },
    responses: { 200: { description: 'The user; sign in again with the new password', body: z.object({ user: userSchema }) } },
    errors: [
      'validation_failed',
      'invalid_json',
      'unsupported_media_type',
      'payload_too_large',
      'invalid_credentials',
      'invalid_mfa_code',
      'account_locked',
      'rate_limited',
    ],
    middleware: [deps.throttle],
    handler: async ({ body, ctx }) => ({ status: 200, body: { user: await deps.reset.reset(requestMeta(ctx), body) } }),
  }),
];
