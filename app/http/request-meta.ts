import semver from 'semver';
import type { RequestMeta } from '../audit/types.js';
import type { AppContext } from './route.js';

export const clientPlatforms = ['ios', 'android', 'windows', 'macos', 'linux', 'web'] as const;
export type ClientPlatform = (typeof clientPlatforms)[number];

/** Request id, client IP and user agent, as recorded with security events. */
export const requestMeta = (ctx: AppContext): RequestMeta => ({
  requestId: ctx.state.requestId,
  ip: ctx.state.clientIp === 'unknown' ? null : ctx.state.clientIp,
  userAgent: ctx.get('user-agent').slice(0, 512) || null,
});

/**
 * `X-Client-Platform` / `X-Client-Version` (contract §1). Values that are not a known platform
 * or a semver version count as absent — the release gate treats an absent version as too old.
 */
export const clientInfo = (ctx: AppContext): { platform: ClientPlatform | null; version: string | null } => {
  const platform = ctx.get('x-client-platform').toLowerCase();
  const version = ctx.get('x-client-version');
  return {
    platform: (clientPlatforms as readonly string[]).includes(platform) ? (platform as ClientPlatform) : null,
    version: version.length <= 64 && semver.valid(version) ? semver.clean(version) : null,
  };
};
