import type { Middleware } from 'koa';
import { AppError } from '../http/errors.js';
import type { AppState } from '../http/route.js';
import type { AuthContext, AuthService } from './service.js';

/** The bearer token of the Authorization header, or undefined (the scheme is case-insensitive, RFC 7235). */
export const bearerToken = (header: string | undefined): string | undefined => {
  const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header ?? '');
  return match?.[1];
};

/** Requires a valid access token whose session is active; sets `ctx.state.auth`. */
export const requireUser =
  (auth: Pick<AuthService, 'authenticate'>): Middleware<AppState> =>
  async (ctx, next) => {
    const token = bearerToken(ctx.get('authorization'));
    if (token === undefined) throw new AppError('unauthorized', { headers: { 'WWW-Authenticate': 'Bearer' } });
    ctx.state.auth = await auth.authenticate(token);
    await next();
  };

/** The caller established by {@link requireUser}. */
export const authOf = (state: AppState): AuthContext => {
  if (state.auth === undefined) throw new Error('route is missing the requireUser guard');
  return state.auth as AuthContext;
};
