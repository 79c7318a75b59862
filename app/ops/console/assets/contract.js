/**
 * What the console needs to know about the server that the API does not tell it, kept equal to
 * the server's definitions by test/ops-console.test.ts:
 * - the guardrail thresholds and their defaults (app/cli/main.ts `guardrailThresholds`, what
 *   `karaxas-ops guardrails` checks when no flag or GUARDRAIL_* variable overrides them);
 * - the admin actions (app/ops/schemas.ts `adminActions`) and platforms (`releasePlatforms`).
 *
 * Plain data and pure functions: no DOM, so Node can import this module too.
 */

/** name → {flag, default (undefined: not checked by default), description}. */
export const guardrailThresholds = {
  drainFailures: { flag: 'max-drain-failures', default: 0, description: 'drains published in the window that ended failed' },
  stuckDrains: { flag: 'max-stuck-drains', default: 0, description: 'drains published in the window still running after their deadline' },
  drainFailuresTotal: { flag: 'max-drain-failures-total', default: undefined, description: 'drains that ever failed (metrics drains.failed)' },
  loginFailures1h: { flag: 'max-login-failures-1h', default: 500, description: 'failed logins in the last hour (auth.loginFailures1h)' },
  lockouts1h: { flag: 'max-lockouts-1h', default: 50, description: 'account lockouts in the last hour (auth.lockouts1h)' },
  rateLimited1h: { flag: 'max-rate-limited-1h', default: 500, description: 'rate-limited auth requests in the last hour (auth.rateLimited1h)' },
  reuseDetected1h: {
    flag: 'max-reuse-detected-1h',
    default: 5,
    description: 'refresh-token reuse detections in the last hour (refresh_token_reuse_detected)',
  },
  opsAuthFailures1h: { flag: 'max-ops-auth-failures-1h', default: 20, description: 'refused ops API calls in the last hour (ops_auth_failed)' },
  chainBroken: {
    flag: 'max-chain-breaks',
    default: undefined,
    description: 'security-event chain broken (1) or intact (0); checked with --verify-chain',
  },
};

/** The CLI's default drain window (`--drain-window-hours`). */
export const DEFAULT_DRAIN_WINDOW_HOURS = 24;
/** The CLI looks at this many publishes of the window at most. */
export const MAX_PUBLISHES_CHECKED = 500;

export const adminActions = [
  'release.policy.create',
  'release.policy.activate',
  'release.publish',
  'sessions.revoke',
  'sessions.revoke_all',
  'user.role',
  'user.force_password_reset',
  'mfa.reseal',
];

export const releasePlatforms = ['ios', 'android', 'windows', 'macos', 'linux', 'web'];

/**
 * The guardrail values of a metrics answer, the drains of the window and (optionally) a chain
 * verification — computed exactly as `karaxas-ops guardrails` does.
 * @param {object} metrics `GET /ops/release/metrics`
 * @param {Array<{status: string, deadlineAt: string}>} windowDrains the drains published in the window
 * @param {{ok: boolean} | undefined} chain `GET /ops/release/security-audit/verify`, when checked
 * @param {number} now milliseconds since the epoch
 */
export const guardrailValues = (metrics, windowDrains, chain, now) => ({
  drainFailures: windowDrains.filter((drain) => drain.status === 'failed').length,
  stuckDrains: windowDrains.filter((drain) => drain.status === 'running' && Date.parse(drain.deadlineAt) < now).length,
  drainFailuresTotal: metrics.drains.failed,
  loginFailures1h: metrics.auth.loginFailures1h,
  lockouts1h: metrics.auth.lockouts1h,
  rateLimited1h: metrics.auth.rateLimited1h,
  reuseDetected1h: metrics.securityEvents.refresh_token_reuse_detected?.last1h ?? 0,
  opsAuthFailures1h: metrics.securityEvents.ops_auth_failed?.last1h ?? 0,
  chainBroken: chain === undefined ? undefined : chain.ok ? 0 : 1,
});

/**
 * The checks with their default thresholds (a value above its threshold breaches). As with
 * `--verify-chain`, a chain verification that was run is checked against 0 breaks.
 */
export const evaluateGuardrails = (values) => {
  const checks = [];
  for (const [name, spec] of Object.entries(guardrailThresholds)) {
    const threshold = name === 'chainBroken' && values.chainBroken !== undefined ? (spec.default ?? 0) : spec.default;
    const value = values[name];
    if (threshold === undefined || value === undefined) continue;
    checks.push({ name, flag: spec.flag, description: spec.description, value, threshold, breached: value > threshold });
  }
  return checks;
};

/**
 * Counts of `items` (each with an ISO `createdAt`) per hour, for the `hours` hours ending with the
 * hour of `now` (UTC hour boundaries). Items outside the range are ignored.
 * @returns {{starts: number[], counts: Map<string, number[]>}} bucket start times, and per key the counts
 */
export const bucketByHour = (items, keyOf, now, hours = 24) => {
  const HOUR = 3_600_000;
  const last = Math.floor(now / HOUR) * HOUR;
  const first = last - (hours - 1) * HOUR;
  const starts = Array.from({ length: hours }, (_, index) => first + index * HOUR);
  const counts = new Map();
  for (const item of items) {
    const time = Date.parse(item.createdAt);
    if (Number.isNaN(time) || time < first || time >= last + HOUR) continue;
    const key = keyOf(item);
    let series = counts.get(key);
    if (series === undefined) {
      series = new Array(hours).fill(0);
      counts.set(key, series);
    }
    series[Math.floor((time - first) / HOUR)] += 1;
  }
  return { starts, counts };
};
