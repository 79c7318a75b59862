/**
 * Operator-tunable settings of contract §9, with their bounds.
 *
 * This module is the single source of truth for the values that incident playbooks change
 * (lockout strictness, chat limits, refresh grace, ...). The app's config schema is built from
 * it, and the Pulumi program validates stack config against the very same schemas so that
 * `pulumi up` refuses a value the service would refuse at boot. Keep it free of Node-only
 * imports: it is loaded by the infra program too.
 */
import { z } from 'zod';

/** An integer environment value (a decimal string) within inclusive bounds. */
export const intSetting = (min: number, max: number, fallback: number) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`))
    .default(String(fallback));

/** A boolean environment value: exactly `true` or `false`. */
export const boolSetting = (fallback: boolean) =>
  z
    .enum(['true', 'false'], { errorMap: () => ({ message: 'must be "true" or "false"' }) })
    .transform((value) => value === 'true')
    .default(fallback ? 'true' : 'false');

const originPattern = /^https?:\/\/[A-Za-z0-9.-]+(?::\d{1,5})?$/;

/** Comma-separated exact origins (`scheme://host[:port]`), never a wildcard. */
export const originListSetting = z
  .string()
  .default('')
  .transform((raw) =>
    raw
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry.length > 0),
  )
  .pipe(
    z.array(
      z.string().regex(originPattern, 'each origin must be scheme://host[:port] with no path and no wildcard'),
    ),
  );

const DAY = 86_400;

/**
 * The tunables, keyed by their environment variable name (contract §9).
 * Bounds are deliberately generous but stop values that would disable a control
 * (e.g. a lockout threshold of 0) or overflow timers.
 */
export const tunableSchemas = {
  MAX_REQUEST_BODY_BYTES: intSetting(1_024, 10 * 1_048_576, 65_536),
  CORS_ALLOWED_ORIGINS: originListSetting,
  ACCESS_TOKEN_TTL_SECONDS: intSetting(60, 3_600, 900),
  REFRESH_TOKEN_TTL_SECONDS: intSetting(300, 90 * DAY, 30 * DAY),
  ADMIN_REFRESH_TOKEN_TTL_SECONDS: intSetting(1, DAY, 8 * 3_600),
  REFRESH_REUSE_GRACE_SECONDS: intSetting(0, 60, 10),
  WS_TICKET_TTL_SECONDS: intSetting(1, 60, 30),
  AUTH_RATE_LIMIT_MAX: intSetting(1, 10_000, 20),
  AUTH_RATE_LIMIT_WINDOW_SECONDS: intSetting(1, 3_600, 60),
  AUTH_LOCKOUT_THRESHOLD: intSetting(1, 100, 5),
  AUTH_LOCKOUT_BASE_SECONDS: intSetting(1, DAY, 30),
  AUTH_LOCKOUT_MAX_SECONDS: intSetting(1, 7 * DAY, 900),
  CHAT_RATE_LIMIT_MAX: intSetting(1, 1_000, 5),
  CHAT_RATE_LIMIT_WINDOW_SECONDS: intSetting(1, 3_600, 5),
  CHAT_MUTE_BASE_SECONDS: intSetting(1, DAY, 30),
  CHAT_MUTE_MAX_SECONDS: intSetting(1, 30 * DAY, 3_600),
  CHAT_MAX_MESSAGE_LENGTH: intSetting(1, 2_000, 500),
} as const;

export type TunableName = keyof typeof tunableSchemas;

/** Cross-field rules between tunables; each returns the variable to blame and why. */
export const tunableRefinements: ReadonlyArray<{
  variable: TunableName;
  check: (values: TunableValues) => boolean;
  message: string;
}> = [
  {
    variable: 'AUTH_LOCKOUT_MAX_SECONDS',
    check: (v) => v.AUTH_LOCKOUT_MAX_SECONDS >= v.AUTH_LOCKOUT_BASE_SECONDS,
    message: 'must be at least AUTH_LOCKOUT_BASE_SECONDS',
  },
  {
    variable: 'CHAT_MUTE_MAX_SECONDS',
    check: (v) => v.CHAT_MUTE_MAX_SECONDS >= v.CHAT_MUTE_BASE_SECONDS,
    message: 'must be at least CHAT_MUTE_BASE_SECONDS',
  },
  {
    variable: 'ADMIN_REFRESH_TOKEN_TTL_SECONDS',
    check: (v) => v.ADMIN_REFRESH_TOKEN_TTL_SECONDS <= v.REFRESH_TOKEN_TTL_SECONDS,
    message: 'must not exceed REFRESH_TOKEN_TTL_SECONDS (admin sessions are the shorter ones)',
  },
];

export type TunableValues = { [K in TunableName]: z.output<(typeof tunableSchemas)[K]> };
