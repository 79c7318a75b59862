/**
 * The release policy's login gate (contract §6): mounted before /auth/login, /auth/refresh and
 * /auth/mfa/verify. While the active policy of the client's platform has `loginGate`, a client
 * whose `X-Client-Version` is missing or below `minSupportedVersion` gets
 * `426 client_update_required`.
 *
 * Requests without a (known) `X-Client-Platform`: blocked while ANY active policy gates logins —
 * otherwise dropping the header would bypass every gate. Clients must therefore send their
 * platform (contract §1) once an operator turns a gate on.
 *
 * The policies come from the release service's in-memory cache (≤ 1 s old, dropped at once on a
 * policy notification): no database query per login.
 */
import type { Middleware } from 'koa';
import { AppError } from '../http/errors.js';
import { clientInfo } from '../http/request-meta.js';
import type { AppState } from '../http/route.js';
import { gateDecision, type ActivePolicies } from './service.js';

export type ReleaseGateDeps = {
  activePolicies: () => Promise<ActivePolicies>;
};

export const createReleaseGate =
  ({ activePolicies }: ReleaseGateDeps): Middleware<AppState> =>
  async (ctx, next) => {
    const client = clientInfo(ctx);
    const decision = gateDecision(await activePolicies(), client);
    if (decision.blocked) {
      ctx.state.log.info(
        { clientPlatform: client.platform, clientVersion: client.version, minSupportedVersion: decision.policy?.min_supported_version },
        'login gated by the release policy',
      );
      throw new AppError('client_update_required', {
        headers: decision.policy ? { 'X-Min-Supported-Version': decision.policy.min_supported_version } : {},
      });
    }
    await next();
  };
