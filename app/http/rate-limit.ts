/**
 * Per-client-IP rate limiting with koa-ratelimit: the memory driver by default, the Redis driver
 * when a Redis client is given (limits then hold across instances). When Redis fails, the
 * limiter falls back to the per-instance memory budget rather than failing open or answering
 * 500, and says so in the log.
 */
import { isIP } from 'node:net';
import type { Redis } from 'ioredis';
import type { Middleware } from 'koa';
import ratelimit from 'koa-ratelimit';
import type { Logger } from '../logger.js';
import { AppError } from './errors.js';
import type { AppContext, AppState } from './route.js';

export type RateLimitOptions = {
  /** Budget name; limiters with the same namespace share counters. */
  namespace: string;
  max: number;
  windowSeconds: number;
  redis?: Redis;
  logger: Logger;
  /** Called once per client and window when the client is first limited. */
  onLimited?: (ctx: AppContext) => void;
};

/**
 * Seconds until the window resets, from koa-ratelimit's epoch-seconds reset value, within
 * [1, window]: the memory driver's microsecond clock runs a hair ahead of Date.now(), and
 * rounding up a reset of 30.0004 s would announce 31 s for a 30 s window.
 */
const secondsUntil = (resetEpochSeconds: number, windowSeconds: number) =>
  Math.min(windowSeconds, Math.max(1, Math.ceil(resetEpochSeconds - Date.now() / 1000)));

/**
 * IPv4 addresses count one by one; IPv6 clients usually own a whole /64, so they are counted
 * per /64 — otherwise rotating addresses within it would bypass the limit.
 */
export const rateLimitKey = (ip: string): string => {
  if (isIP(ip) !== 6) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const padding = Array<string>(Math.max(0, 8 - headGroups.length - tailGroups.length)).fill('0');
  const groups = [...headGroups, ...padding, ...tailGroups];
  return `${groups
    .slice(0, 4)
    .map((group) => group.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
};

export const createRateLimiter = (options: RateLimitOptions): Middleware<AppState> & { sweep: () => void } => {
  const memory = new Map<string, { reset: number }>();
  const common = {
    duration: options.windowSeconds * 1000,
    max: options.max,
    namespace: `karaxas:rl:${options.namespace}`,
    id: (ctx: AppContext) => rateLimitKey(ctx.state.clientIp),
    headers: { remaining: 'RateLimit-Remaining', reset: 'RateLimit-Reset', total: 'RateLimit-Limit' },
    throw: false,
  };
  const memoryLimiter = ratelimit({ ...common, driver: 'memory', db: memory }) as unknown as Middleware<AppState>;
  const redisLimiter = options.redis
    ? (ratelimit({ ...common, driver: 'redis', db: options.redis }) as unknown as Middleware<AppState>)
    : undefined;
  const notified = new Map<string, number>();
  let redisFailing = false;

  /** Runs one limiter; `entered` tells a limiter failure apart from a failure downstream. */
  const run = async (limiter: Middleware<AppState>, ctx: AppContext, next: () => Promise<void>, attempt: { entered: boolean }) => {
    await limiter(ctx, async () => {
      attempt.entered = true;
      // Contract §1: RateLimit-Reset is delta-seconds; koa-ratelimit writes an epoch timestamp.
      ctx.set('RateLimit-Reset', String(secondsUntil(Number(ctx.response.get('RateLimit-Reset')), options.windowSeconds)));
      await next();
    });
    return attempt.entered;
  };

  const middleware = async (ctx: AppContext, next: () => Promise<void>) => {
    let passed: boolean;
    if (redisLimiter) {
      const attempt = { entered: false };
      const redisAnswered = () => {
        if (redisFailing) {
          redisFailing = false;
          options.logger.info({ limiter: options.namespace }, 'rate limiting back on the shared Redis budget');
        }
      };
      try {
        passed = await run(redisLimiter, ctx, next, attempt);
        redisAnswered();
      } catch (error) {
        if (attempt.entered) {
          // Redis answered; the error is the route's (a 4xx, …). Without noting the recovery here,
          // a recovery seen only by failing requests went unlogged, and so did the next outage.
          redisAnswered();
          throw error;
        }
        if (!redisFailing) {
          redisFailing = true;
          options.logger.warn({ err: error, limiter: options.namespace }, 'Redis unavailable; rate limiting per instance');
        }
        passed = await run(memoryLimiter, ctx, next, { entered: false });
      }
    } else {
      passed = await run(memoryLimiter, ctx, next, { entered: false });
    }
    if (passed) return;

    const retryAfter = secondsUntil(Number(ctx.response.get('RateLimit-Reset')), options.windowSeconds);
    const key = ctx.state.clientIp;
    if ((notified.get(key) ?? 0) < Date.now()) {
      notified.set(key, Date.now() + options.windowSeconds * 1000);
      options.onLimited?.(ctx);
    }
    throw new AppError('rate_limited', {
      headers: {
        'Retry-After': String(retryAfter),
        'RateLimit-Reset': String(retryAfter),
        'RateLimit-Remaining': '0',
        'RateLimit-Limit': String(options.max),
      },
    });
  };

  /** Drops expired counters; koa-ratelimit's memory driver never forgets a client by itself. */
  const sweep = () => {
    const now = Date.now() / 1000;
    for (const [key, entry] of memory) if (entry.reset < now) memory.delete(key);
    for (const [key, until] of notified) if (until < Date.now()) notified.delete(key);
  };
  return Object.assign(middleware as Middleware<AppState>, { sweep });
};
