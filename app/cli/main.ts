/**
 * `karaxas-ops`: the operator's command line (contract §10) — one subcommand per ops API call
 * (contract §7) on the typed client of ./api-client.ts, plus `guardrails` (CI's metric gate),
 * `archive-security-audit` / `verify-archive` (audit retention, straight to the database and cold
 * storage), `rotate-secret` (the stack-config rotation of docs/infra.md) and `pentest`.
 *
 * This is a CLI entry point: it is one of the two places allowed to read the process
 * environment (the other is app/config). Everything below {@link main} takes the environment as
 * a plain record, so the tests can run it in-process too.
 *
 * Exit codes: 0 success; 1 the command ran and the answer is bad (API error, breached guardrail,
 * broken chain, failed drain, refused archive); 2 usage, configuration or connection problems
 * (and, for `guardrails`, anything that prevents evaluating the thresholds).
 *
 * The ops token comes from `OPS_API_TOKEN` or `--token-file <path>`, never from a flag value
 * (flags end up in shell history, `ps` output and CI logs).
 */
import { execFile } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
// The archive (slonik, zlib, Cloud Storage) and the pentest runner are loaded by their commands only.
import type { ArchiveError as ArchiveErrorType } from '../audit/archive.js';
import { securityEventTypes } from '../audit/types.js';
import { ConfigError, processEnvironment } from '../config/index.js';
import { releasePlatforms, type Drain, type OpsMetrics } from '../ops/schemas.js';
import { createOpsClient, OpsApiError, type OpsClient } from './api-client.js';

export type CliIo = {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
};

type Env = Record<string, string | undefined>;

/** A problem with how the command was called; exit 2. */
class UsageError extends Error {
  override name = 'UsageError';
}

// ---------------------------------------------------------------------------------------------
// Option tables

type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };
type Options = Record<string, OptionSpec>;

const globalOptions = {
  url: { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  timeout: { type: 'string' },
} as const satisfies Options;

type Parsed = { values: Record<string, string | boolean | undefined>; positionals: string[] };

type Context = {
  env: Env;
  io: CliIo;
  parsed: Parsed;
  json: boolean;
  /** The API client (URL and token resolved; `{ public: true }`: the token is optional); created on first use. */
  client: (options?: { public?: boolean }) => Promise<OpsClient>;
};

type Command = {
  name: string;
  summary: string;
  usage: string;
  /** Extra help text (flags, env, examples). */
  help: string;
  options: Options;
  /** The API command needs --url and a token. */
  run: (context: Context) => Promise<number>;
};

// ---------------------------------------------------------------------------------------------
// Output helpers

const table = (headers: string[], rows: Array<Array<string | number | boolean | null | undefined>>): string => {
  const cells = rows.map((row) => row.map((cell) => (cell === null || cell === undefined ? '-' : String(cell))));
  const widths = headers.map((header, index) => Math.max(header.length, ...cells.map((row) => (row[index] ?? '').length)));
  const line = (row: string[]) =>
    row
      .map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n') + '\n';
};

const compact = (value: unknown, max = 80) => {
  const text = JSON.stringify(value) ?? '';
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
};

const printJson = (io: CliIo, value: unknown) => io.stdout(`${JSON.stringify(value, null, 2)}\n`);

// ---------------------------------------------------------------------------------------------
// Flag helpers

const str = (parsed: Parsed, name: string): string | undefined => {
  const value = parsed.values[name];
  return typeof value === 'string' ? value : undefined;
};
const bool = (parsed: Parsed, name: string): boolean => parsed.values[name] === true;

const requireString = (parsed: Parsed, name: string): string => {
  const value = str(parsed, name);
  if (value === undefined || value.trim() === '') throw new UsageError(`--${name} is required`);
  return value;
};

const intFrom = (text: string | undefined, what: string, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}): number | undefined => {
  if (text === undefined || text.trim() === '') return undefined;
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`${what} must be a whole number`);
  const value = Number(text.trim());
  if (value < min || value > max) throw new UsageError(`${what} must be between ${min} and ${max}`);
  return value;
};

const isoFrom = (text: string | undefined, what: string): string | undefined => {
  if (text === undefined) return undefined;
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw new UsageError(`${what} must be an ISO-8601 timestamp (e.g. 2025-01-31T00:00:00Z)`);
  return date.toISOString();
};

const positional = (parsed: Parsed, index: number, what: string): string => {
  const value = parsed.positionals[index];
  if (value === undefined) throw new UsageError(`${what} is required`);
  return value;
};

const noExtraPositionals = (parsed: Parsed, count: number) => {
  if (parsed.positionals.length > count) throw new UsageError(`unexpected argument: ${parsed.positionals[count]}`);
};

const platformFrom = (parsed: Parsed) => {
  const platform = requireString(parsed, 'platform');
  if (!(releasePlatforms as readonly string[]).includes(platform)) {
    throw new UsageError(`--platform must be one of: ${releasePlatforms.join(', ')}`);
  }
  return platform as (typeof releasePlatforms)[number];
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Commands: reads

const printMetrics = (io: CliIo, metrics: OpsMetrics) => {
  const running = metrics.drains.started - metrics.drains.completed - metrics.drains.failed;
  io.stdout(`Metrics at ${metrics.generatedAt}\n\n`);
  io.stdout(
    table(
      ['counter', 'value'],
      [
        ['auth.loginFailures1h', metrics.auth.loginFailures1h],
        ['auth.lockouts1h', metrics.auth.lockouts1h],
        ['auth.rateLimited1h', metrics.auth.rateLimited1h],
        ['drains.started', metrics.drains.started],
        ['drains.completed', metrics.drains.completed],
        ['drains.failed', metrics.drains.failed],
        ['drains.running', running],
        ['sessions.active', metrics.sessions.active],
      ],
    ),
  );
  const events = Object.entries(metrics.securityEvents)
    .filter(([, counts]) => counts.total > 0 || counts.last24h > 0)
    .sort(([a], [b]) => a.localeCompare(b));
  io.stdout('\nSecurity events (types that occurred)\n');
  io.stdout(
    events.length === 0
      ? 'none\n'
      : table(
          ['event_type', 'last1h', 'last24h', 'total'],
          events.map(([type, counts]) => [type, counts.last1h, counts.last24h, counts.total]),
        ),
  );
};

const metricsCommand: Command = {
  name: 'metrics',
  summary: 'GET /ops/release/metrics: security-event, auth, drain and session counters',
  usage: 'karaxas-ops metrics [--json]',
  help: '',
  options: {},
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 0);
    const metrics = await (await client()).metrics();
    if (json) printJson(io, metrics);
    else printMetrics(io, metrics);
    return 0;
  },
};

const pageOptions = {
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
  all: { type: 'boolean' },
  'max-items': { type: 'string' },
} as const satisfies Options;

/**
 * One page (`--cursor`), or with `--all` every page up to `--max-items` (default 10,000): the
 * shape both audit listings share.
 */
const onePageOrAll = async <T>(
  parsed: Parsed,
  all: (maxItems: number) => AsyncIterable<T>,
  page: (cursor: string | undefined) => Promise<{ items: T[]; nextCursor: string | null }>,
): Promise<{ items: T[]; nextCursor: string | null }> => {
  if (!bool(parsed, 'all')) return page(str(parsed, 'cursor'));
  const items: T[] = [];
  for await (const item of all(intFrom(str(parsed, 'max-items'), '--max-items', { min: 1 }) ?? 10_000)) items.push(item);
  return { items, nextCursor: null };
};

const adminAuditCommand: Command = {
  name: 'admin-audit',
  summary: 'GET /ops/release/admin-audit: admin actions, newest first',
  usage: 'karaxas-ops admin-audit [--action <a>] [--actor <ops-token|userId|archive-job>] [--since <iso>] [--until <iso>] [--limit <n>] [--cursor <c> | --all]',
  help: `  --all             follow nextCursor through every page (at most --max-items, default 10000)
  --since/--until   created_at bounds (since inclusive, until exclusive)
Examples:
  karaxas-ops admin-audit --action sessions.revoke_all --since 2025-01-01T00:00:00Z
  karaxas-ops admin-audit --action security_audit.archive --limit 5
`,
  options: { action: { type: 'string' }, actor: { type: 'string' }, ...pageOptions },
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 0);
    const query = {
      action: str(parsed, 'action'),
      actor: str(parsed, 'actor'),
      since: isoFrom(str(parsed, 'since'), '--since'),
      until: isoFrom(str(parsed, 'until'), '--until'),
      limit: intFrom(str(parsed, 'limit'), '--limit', { min: 1, max: 500 }),
    };
    const api = await client();
    const { items, nextCursor } = await onePageOrAll(
      parsed,
      (maxItems) => api.adminAuditAll(query, maxItems),
      (cursor) => api.adminAudit({ ...query, cursor }),
    );
    if (json) {
      printJson(io, { items, nextCursor });
      return 0;
    }
    io.stdout(
      table(
        ['createdAt', 'actor', 'action', 'target', 'requestId', 'details'],
        items.map((item) => [item.createdAt, item.actor, item.action, item.target, item.requestId, compact(item.details)]),
      ),
    );
    io.stdout(`${items.length} row(s)${nextCursor ? `; more: --cursor ${nextCursor}` : ''}\n`);
    return 0;
  },
};

const securityAuditCommand: Command = {
  name: 'security-audit',
  summary: 'GET /ops/release/security-audit: security events, newest first',
  usage:
    'karaxas-ops security-audit [--event-type <type>] [--user <userId>] [--since <iso>] [--until <iso>] [--limit <n>] [--cursor <c> | --all]',
  help: `  --event-type      one of: ${securityEventTypes.join(', ')}
  --user            only events of this user id (alias --user-id)
  --all             follow nextCursor through every page (at most --max-items, default 10000)
Examples:
  karaxas-ops security-audit --event-type refresh_token_reuse_detected --since 2025-01-01T00:00:00Z
  karaxas-ops security-audit --event-type session_bulk_revocation --user <userId>
`,
  options: { 'event-type': { type: 'string' }, user: { type: 'string' }, 'user-id': { type: 'string' }, ...pageOptions },
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 0);
    const eventType = str(parsed, 'event-type');
    if (eventType !== undefined && !(securityEventTypes as readonly string[]).includes(eventType)) {
      throw new UsageError(`--event-type must be one of: ${securityEventTypes.join(', ')}`);
    }
    const query = {
      event_type: eventType as (typeof securityEventTypes)[number] | undefined,
      user_id: str(parsed, 'user') ?? str(parsed, 'user-id'),
      since: isoFrom(str(parsed, 'since'), '--since'),
      until: isoFrom(str(parsed, 'until'), '--until'),
      limit: intFrom(str(parsed, 'limit'), '--limit', { min: 1, max: 500 }),
    };
    const api = await client();
    const { items, nextCursor } = await onePageOrAll(
      parsed,
      (maxItems) => api.securityAuditAll(query, maxItems),
      (cursor) => api.securityAudit({ ...query, cursor }),
    );
    if (json) {
      printJson(io, { items, nextCursor });
      return 0;
    }
    io.stdout(
      table(
        ['createdAt', 'eventType', 'userId', 'sessionId', 'ip', 'requestId', 'details'],
        items.map((item) => [item.createdAt, item.eventType, item.userId, item.sessionId, item.ip, item.requestId, compact(item.details)]),
      ),
    );
    io.stdout(`${items.length} row(s)${nextCursor ? `; more: --cursor ${nextCursor}` : ''}\n`);
    return 0;
  },
};

const verifyChainCommand: Command = {
  name: 'verify-chain',
  summary: "GET /ops/release/security-audit/verify: verify the security-event trail's hash chain (exit 1 when broken)",
  usage: 'karaxas-ops verify-chain [--json]',
  help: '',
  options: {},
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 0);
    const result = await (await client()).verifySecurityAudit();
    if (json) printJson(io, result);
    else if (result.ok) io.stdout(`chain ok: ${result.checked} row(s) checked from the archive anchor to the head\n`);
    else io.stdout(`chain BROKEN at row ${result.firstBrokenId} (${result.checked} row(s) walked) — treat as an incident\n`);
    return result.ok ? 0 : 1;
  },
};

// ---------------------------------------------------------------------------------------------
// Commands: release

const printPolicy = (io: CliIo, policy: Record<string, unknown>) =>
  io.stdout(table(['field', 'value'], Object.entries(policy).map(([key, value]) => [key, value === null ? 'null' : String(value)])));

const policyCommand: Command = {
  name: 'policy',
  summary: 'release policies: show (public GET /release/policy), create, activate',
  usage: `karaxas-ops policy show --platform <p> [--client-version <v>]
       karaxas-ops policy create --platform <p> --min-supported <v> --latest <v> [--force-update] [--login-gate]
       karaxas-ops policy activate <policyId>`,
  help: `  show      GET /release/policy (public; no token needed): the active policy and whether --client-version must update
  create    POST /ops/release/policies: a new, INACTIVE policy (prints its id)
  activate  POST /ops/release/policies/:id/activate: makes it the platform's one active policy;
            with loginGate, logins/refreshes below minSupportedVersion get 426 client_update_required
  --platform  one of: ${releasePlatforms.join(', ')}
`,
  options: {
    platform: { type: 'string' },
    'client-version': { type: 'string' },
    'min-supported': { type: 'string' },
    latest: { type: 'string' },
    'force-update': { type: 'boolean' },
    'login-gate': { type: 'boolean' },
  },
  run: async ({ client, io, json, parsed }) => {
    const action = positional(parsed, 0, 'a policy action (show, create or activate)');
    const api = await client({ public: action === 'show' });
    if (action === 'show') {
      noExtraPositionals(parsed, 1);
      const result = await api.releasePolicy({ platform: platformFrom(parsed), version: str(parsed, 'client-version') });
      if (json) printJson(io, result);
      else if (result.policy === null) io.stdout(`no active policy; updateRequired: ${result.updateRequired}\n`);
      else {
        printPolicy(io, result.policy);
        io.stdout(`updateRequired: ${result.updateRequired}\n`);
      }
      return 0;
    }
    if (action === 'create') {
      noExtraPositionals(parsed, 1);
      const { policy } = await api.createPolicy({
        platform: platformFrom(parsed),
        minSupportedVersion: requireString(parsed, 'min-supported'),
        latestVersion: requireString(parsed, 'latest'),
        forceUpdate: bool(parsed, 'force-update'),
        loginGate: bool(parsed, 'login-gate'),
      });
      if (json) printJson(io, { policy });
      else {
        printPolicy(io, policy);
        io.stdout(`created policy ${policy.id} (inactive): activate with  karaxas-ops policy activate ${policy.id}\n`);
      }
      return 0;
    }
    if (action === 'activate') {
      noExtraPositionals(parsed, 2);
      const { policy } = await api.activatePolicy(positional(parsed, 1, 'the policy id'));
      if (json) printJson(io, { policy });
      else {
        printPolicy(io, policy);
        io.stdout(`policy ${policy.id} is now the active ${policy.platform} policy\n`);
      }
      return 0;
    }
    throw new UsageError(`unknown policy action "${action}" (show, create or activate)`);
  },
};

const printDrain = (io: CliIo, drain: Drain) => {
  io.stdout(
    table(
      ['field', 'value'],
      [
        ['id', drain.id],
        ['status', drain.status],
        ['platform', drain.platform],
        ['version', drain.version],
        ['minSupportedVersion', drain.minSupportedVersion],
        ['forceUpdate', drain.forceUpdate],
        ['graceSeconds', drain.graceSeconds],
        ['requestedBy', drain.requestedBy],
        ['requestedAt', drain.requestedAt],
        ['deadlineAt', drain.deadlineAt],
        ['finishedAt', drain.finishedAt],
        ['failureReason', drain.failureReason],
        ['instances (completed/failed)', `${drain.counts.instances} (${drain.counts.instancesCompleted}/${drain.counts.instancesFailed})`],
        ['sockets notified/closed/skipped', `${drain.counts.notified}/${drain.counts.closed}/${drain.counts.skipped}`],
      ],
    ),
  );
  if (drain.instances.length > 0) {
    io.stdout('\n');
    io.stdout(
      table(
        ['instance', 'status', 'notified', 'closed', 'skipped', 'startedAt', 'completedAt'],
        drain.instances.map((instance) => [
          instance.instanceId,
          instance.status,
          instance.notified,
          instance.closed,
          instance.skipped,
          instance.startedAt,
          instance.completedAt,
        ]),
      ),
    );
  }
};

/** Polls a drain until it leaves `running` or `timeoutSeconds` pass. */
const waitForDrain = async (api: OpsClient, id: string, timeoutSeconds: number, io: CliIo, quiet: boolean): Promise<Drain> => {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let drain = (await api.drain(id)).drain;
  while (drain.status === 'running' && Date.now() < deadline) {
    if (!quiet) io.stderr(`drain ${id}: running (${drain.counts.notified} notified, ${drain.counts.closed} closed)…\n`);
    await sleep(Math.min(2_000, Math.max(200, deadline - Date.now())));
    drain = (await api.drain(id)).drain;
  }
  return drain;
};

const drainExit = (drain: Drain) => (drain.status === 'failed' ? 1 : 0);

const publishCommand: Command = {
  name: 'publish',
  summary: "POST /ops/release/publish: record a release, activate its policy and drain old clients' sockets",
  usage:
    'karaxas-ops publish --platform <p> --version <v> --min-supported <v> [--force-update] [--grace-seconds <n>] [--login-gate | --no-login-gate] [--wait [--wait-timeout <s>]]',
  help: `  --grace-seconds   seconds between release.drain and the 4000 close (default 60, max 3600)
  --login-gate      gate logins below --min-supported (default: same as --force-update)
  --wait            poll GET /ops/release/drains/:id until completed/failed (exit 1 when failed)
`,
  options: {
    platform: { type: 'string' },
    version: { type: 'string' },
    'min-supported': { type: 'string' },
    'force-update': { type: 'boolean' },
    'grace-seconds': { type: 'string' },
    'login-gate': { type: 'boolean' },
    'no-login-gate': { type: 'boolean' },
    wait: { type: 'boolean' },
    'wait-timeout': { type: 'string' },
  },
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 0);
    if (bool(parsed, 'login-gate') && bool(parsed, 'no-login-gate')) throw new UsageError('--login-gate and --no-login-gate exclude each other');
    const api = await client();
    const result = await api.publish({
      platform: platformFrom(parsed),
      version: requireString(parsed, 'version'),
      minSupportedVersion: requireString(parsed, 'min-supported'),
      forceUpdate: bool(parsed, 'force-update'),
      graceSeconds: intFrom(str(parsed, 'grace-seconds'), '--grace-seconds', { min: 0, max: 3_600 }) ?? 60,
      ...(bool(parsed, 'login-gate') ? { loginGate: true } : bool(parsed, 'no-login-gate') ? { loginGate: false } : {}),
    });
    if (!bool(parsed, 'wait')) {
      if (json) printJson(io, result);
      else io.stdout(`drain ${result.drainId} started (policy ${result.policyId}); follow it with  karaxas-ops drain ${result.drainId} --wait\n`);
      return 0;
    }
    const drain = await waitForDrain(api, result.drainId, intFrom(str(parsed, 'wait-timeout'), '--wait-timeout', { min: 1 }) ?? 3_900, io, json);
    if (json) printJson(io, { ...result, drain });
    else printDrain(io, drain);
    return drainExit(drain);
  },
};

const drainCommand: Command = {
  name: 'drain',
  summary: 'GET /ops/release/drains/:id: a publish drain with its counts per instance (exit 1 when failed)',
  usage: 'karaxas-ops drain <drainId> [--wait [--wait-timeout <s>]] [--json]',
  help: '',
  options: { wait: { type: 'boolean' }, 'wait-timeout': { type: 'string' } },
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 1);
    const id = positional(parsed, 0, 'the drain id');
    const api = await client();
    const drain = bool(parsed, 'wait')
      ? await waitForDrain(api, id, intFrom(str(parsed, 'wait-timeout'), '--wait-timeout', { min: 1 }) ?? 3_900, io, json)
      : (await api.drain(id)).drain;
    if (json) printJson(io, { drain });
    else printDrain(io, drain);
    return drainExit(drain);
  },
};

// ---------------------------------------------------------------------------------------------
// Commands: incident actions

const revokeSessionsCommand: Command = {
  name: 'revoke-sessions',
  summary: "POST /ops/sessions/revoke: revoke one user's sessions, or every session (token leak)",
  usage: 'karaxas-ops revoke-sessions --user <userId> --reason <text>\n       karaxas-ops revoke-sessions --all --reason <text>',
  help: `  Revoked sessions' access and refresh tokens stop working at once and their websockets close on
  every instance. Records session_bulk_revocation and an admin_action_audit row
  (sessions.revoke / sessions.revoke_all).
`,
  options: { user: { type: 'string' }, all: { type: 'boolean' }, reason: { type: 'string' } },
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 0);
    const user = str(parsed, 'user');
    const all = bool(parsed, 'all');
    if ((user === undefined) === !all) throw new UsageError('give exactly one of --user <userId> or --all');
    const reason = requireString(parsed, 'reason');
    const api = await client();
    const result = await api.revokeSessions(all ? { all: true, reason } : { userId: user!, reason });
    if (json) printJson(io, result);
    else io.stdout(`revoked ${result.revoked} session(s)${all ? ' (all users)' : ` of user ${user}`}\n`);
    return 0;
  },
};

const setRoleCommand: Command = {
  name: 'set-role',
  summary: "POST /ops/users/:id/role: set a user's role (player or admin); revokes the user's sessions when it changes",
  usage: 'karaxas-ops set-role <userId> <player|admin>',
  help: '',
  options: {},
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 2);
    const userId = positional(parsed, 0, 'the user id');
    const role = positional(parsed, 1, 'the role (player or admin)');
    if (role !== 'player' && role !== 'admin') throw new UsageError('the role must be player or admin');
    const result = await (await client()).setRole(userId, role);
    if (json) printJson(io, result);
    else io.stdout(`user ${result.user.id} (${result.user.email}) is ${result.user.role}; ${result.revoked} session(s) revoked\n`);
    return 0;
  },
};

const forcePasswordResetCommand: Command = {
  name: 'force-password-reset',
  summary: "POST /ops/users/:id/force-password-reset: revoke the user's sessions and require a password reset",
  usage: 'karaxas-ops force-password-reset <userId>',
  help: `  The next login answers 403 password_reset_required until POST /auth/password/reset succeeds.
`,
  options: {},
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 1);
    const result = await (await client()).forcePasswordReset(positional(parsed, 0, 'the user id'));
    if (json) printJson(io, result);
    else io.stdout(`user ${result.user.id} (${result.user.email}) must reset the password; ${result.revoked} session(s) revoked\n`);
    return 0;
  },
};

// ---------------------------------------------------------------------------------------------
// Commands: TOTP key rotation

const mfaKeysCommand: Command = {
  name: 'mfa-keys',
  summary: 'GET /ops/mfa/keys: TOTP secrets per sealing key id and how many still await a reseal',
  usage: 'karaxas-ops mfa-keys [--json]',
  help: `  During a totpEncryptionKey rotation, confirm (drop the previous key) only once this shows
  pendingReseal 0 — run karaxas-ops mfa-reseal first. Key ids are key fingerprints, not key material.
`,
  options: {},
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 0);
    const keys = await (await client()).mfaKeys();
    if (json) {
      printJson(io, keys);
      return 0;
    }
    io.stdout(table(['keyId', 'count', 'current'], keys.byKey.map((entry) => [entry.keyId, entry.count, entry.current ? 'yes' : ''])));
    io.stdout(`current key ${keys.currentKeyId}: ${keys.underCurrentKey} of ${keys.total} secret(s); pendingReseal ${keys.pendingReseal}\n`);
    return 0;
  },
};

/** Calls of `mfa-reseal` at most, each a few seconds of server time. */
const MAX_RESEAL_CALLS = 1_000;

const mfaResealCommand: Command = {
  name: 'mfa-reseal',
  summary: 'POST /ops/mfa/reseal until nothing is pending: re-seal every TOTP secret under the current key (exit 1 if any is left)',
  usage: 'karaxas-ops mfa-reseal [--batch-size <1-5000>] [--json]',
  help: `  Repeats the call (each one re-seals batches for a few seconds) until pendingReseal is 0 or a call
  makes no progress. Exit 0 when nothing is pending and nothing was unreadable; 1 otherwise (secrets
  that no configured key opens, or rows that stayed locked: run it again, then check mfa-keys).
  Each call writes one admin_action_audit row (mfa.reseal).
`,
  options: { 'batch-size': { type: 'string' } },
  run: async ({ client, io, json, parsed }) => {
    noExtraPositionals(parsed, 0);
    const batchSize = intFrom(str(parsed, 'batch-size'), '--batch-size', { min: 1, max: 5_000 });
    const api = await client();
    const totals = { calls: 0, resealed: 0, batches: 0 };
    let last: Awaited<ReturnType<OpsClient['mfaReseal']>> | undefined;
    for (;;) {
      const before = last?.pendingReseal;
      last = await api.mfaReseal(batchSize === undefined ? {} : { batchSize });
      totals.calls += 1;
      totals.resealed += last.resealed;
      totals.batches += last.batches;
      if (!json) {
        io.stdout(`call ${totals.calls}: resealed ${last.resealed}, pendingReseal ${last.pendingReseal}, unreadable ${last.unreadable}\n`);
      }
      const progressed = last.resealed > 0 && (before === undefined || last.pendingReseal < before);
      if (last.pendingReseal === 0 || !progressed || totals.calls >= MAX_RESEAL_CALLS) break;
    }
    const ok = last.pendingReseal === 0 && last.unreadable === 0;
    if (json) {
      printJson(io, { ...totals, currentKeyId: last.currentKeyId, pendingReseal: last.pendingReseal, unreadable: last.unreadable, ok });
    } else if (ok) {
      io.stdout(`done: ${totals.resealed} secret(s) re-sealed under key ${last.currentKeyId}; pendingReseal 0 — the previous key may be dropped\n`);
    } else {
      io.stdout(
        `NOT DONE: pendingReseal ${last.pendingReseal}, unreadable ${last.unreadable} (${totals.resealed} re-sealed under key ${last.currentKeyId}) — do not drop the previous key; ` +
          `unreadable secrets are sealed under a key that is not configured (user ids in the server log)\n`,
      );
    }
    return ok ? 0 : 1;
  },
};

// ---------------------------------------------------------------------------------------------
// guardrails

type Threshold = {
  flag: string;
  env: string;
  default: number | undefined;
  description: string;
};

/** Every threshold: flag, environment variable and default (none: not checked unless given). */
export const guardrailThresholds = {
  drainFailures: {
    flag: 'max-drain-failures',
    env: 'GUARDRAIL_MAX_DRAIN_FAILURES',
    default: 0,
    description: 'drains published in the window that ended failed',
  },
  stuckDrains: {
    flag: 'max-stuck-drains',
    env: 'GUARDRAIL_MAX_STUCK_DRAINS',
    default: 0,
    description: 'drains published in the window still running after their deadline',
  },
  drainFailuresTotal: {
    flag: 'max-drain-failures-total',
    env: 'GUARDRAIL_MAX_DRAIN_FAILURES_TOTAL',
    default: undefined,
    description: 'drains that ever failed (metrics drains.failed)',
  },
  loginFailures1h: {
    flag: 'max-login-failures-1h',
    env: 'GUARDRAIL_MAX_LOGIN_FAILURES_1H',
    default: 500,
    description: 'failed logins in the last hour (auth.loginFailures1h)',
  },
  lockouts1h: {
    flag: 'max-lockouts-1h',
    env: 'GUARDRAIL_MAX_LOCKOUTS_1H',
    default: 50,
    description: 'account lockouts in the last hour (auth.lockouts1h)',
  },
  rateLimited1h: {
    flag: 'max-rate-limited-1h',
    env: 'GUARDRAIL_MAX_RATE_LIMITED_1H',
    default: 500,
    description: 'rate-limited auth requests in the last hour (auth.rateLimited1h)',
  },
  reuseDetected1h: {
    flag: 'max-reuse-detected-1h',
    env: 'GUARDRAIL_MAX_REUSE_DETECTED_1H',
    default: 5,
    description: 'refresh-token reuse detections in the last hour (refresh_token_reuse_detected)',
  },
  opsAuthFailures1h: {
    flag: 'max-ops-auth-failures-1h',
    env: 'GUARDRAIL_MAX_OPS_AUTH_FAILURES_1H',
    default: 20,
    description: 'refused ops API calls in the last hour (ops_auth_failed)',
  },
  chainBroken: {
    flag: 'max-chain-breaks',
    env: 'GUARDRAIL_MAX_CHAIN_BREAKS',
    default: undefined,
    description: 'security-event chain broken (1) or intact (0); checked with --verify-chain',
  },
} as const satisfies Record<string, Threshold>;

type GuardrailCheck = {
  name: keyof typeof guardrailThresholds;
  flag: string;
  env: string;
  description: string;
  value: number;
  threshold: number;
  breached: boolean;
};

const guardrailOptions: Options = {
  ...Object.fromEntries(Object.values(guardrailThresholds).map((threshold) => [threshold.flag, { type: 'string' }])),
  'drain-window-hours': { type: 'string' },
  'verify-chain': { type: 'boolean' },
};

const guardrailsCommand: Command = {
  name: 'guardrails',
  summary: 'check /ops/release/metrics against thresholds: exit 0 calm, 1 breached (named), 2 could not check',
  usage: 'karaxas-ops guardrails [--max-<threshold> <n> …] [--drain-window-hours <h>] [--verify-chain] [--json]',
  help: `Thresholds (flag, environment variable, default; a value above the threshold breaches):
${Object.values(guardrailThresholds)
  .map((threshold) => `  --${threshold.flag.padEnd(26)} ${threshold.env.padEnd(36)} ${String(threshold.default ?? 'off').padEnd(4)} ${threshold.description}`)
  .join('\n')}
  --drain-window-hours <h>     GUARDRAIL_DRAIN_WINDOW_HOURS         24   window of the drain checks (publishes since then)
  --verify-chain               GUARDRAIL_VERIFY_CHAIN=true               also verify the security-event chain (breaches when broken)
`,
  options: guardrailOptions,
  run: async ({ client, io, json, parsed, env }) => {
    noExtraPositionals(parsed, 0);
    const thresholdOf = (name: keyof typeof guardrailThresholds): number | undefined => {
      const spec = guardrailThresholds[name];
      const fromFlag = intFrom(str(parsed, spec.flag), `--${spec.flag}`);
      if (fromFlag !== undefined) return fromFlag;
      const fromEnv = intFrom(env[spec.env], spec.env);
      return fromEnv ?? spec.default;
    };
    const windowHours =
      intFrom(str(parsed, 'drain-window-hours'), '--drain-window-hours', { min: 1, max: 24 * 90 }) ??
      intFrom(env.GUARDRAIL_DRAIN_WINDOW_HOURS, 'GUARDRAIL_DRAIN_WINDOW_HOURS', { min: 1, max: 24 * 90 }) ??
      24;
    const verifyChain = bool(parsed, 'verify-chain') || /^(1|true|yes)$/i.test(env.GUARDRAIL_VERIFY_CHAIN ?? '');
    const thresholds = Object.fromEntries(Object.keys(guardrailThresholds).map((name) => [name, thresholdOf(name as keyof typeof guardrailThresholds)]));

    const api = await client();
    const metrics = await api.metrics();
    // Drains of the window: the publishes in admin_action_audit (target = drain id), then each drain.
    const since = new Date(Date.now() - windowHours * 3_600_000).toISOString();
    let failedInWindow = 0;
    let stuckInWindow = 0;
    const now = Date.now();
    for await (const publish of api.adminAuditAll({ action: 'release.publish', since }, 500)) {
      if (publish.target === null) continue;
      const drain = await api.drain(publish.target).then(
        (response) => response.drain,
        (error: unknown) => {
          if (error instanceof OpsApiError && error.status === 404) return null;
          throw error;
        },
      );
      if (drain === null) continue;
      if (drain.status === 'failed') failedInWindow += 1;
      if (drain.status === 'running' && Date.parse(drain.deadlineAt) < now) stuckInWindow += 1;
    }
    const chain = verifyChain ? await api.verifySecurityAudit() : undefined;

    const values: Record<keyof typeof guardrailThresholds, number | undefined> = {
      drainFailures: failedInWindow,
      stuckDrains: stuckInWindow,
      drainFailuresTotal: metrics.drains.failed,
      loginFailures1h: metrics.auth.loginFailures1h,
      lockouts1h: metrics.auth.lockouts1h,
      rateLimited1h: metrics.auth.rateLimited1h,
      reuseDetected1h: metrics.securityEvents.refresh_token_reuse_detected?.last1h ?? 0,
      opsAuthFailures1h: metrics.securityEvents.ops_auth_failed?.last1h ?? 0,
      chainBroken: chain === undefined ? undefined : chain.ok ? 0 : 1,
    };
    if (chain !== undefined && thresholds.chainBroken === undefined) thresholds.chainBroken = 0;

    const checks: GuardrailCheck[] = [];
    for (const name of Object.keys(guardrailThresholds) as Array<keyof typeof guardrailThresholds>) {
      const threshold = thresholds[name];
      const value = values[name];
      if (threshold === undefined || value === undefined) continue;
      const spec = guardrailThresholds[name];
      checks.push({ name, flag: `--${spec.flag}`, env: spec.env, description: spec.description, value, threshold, breached: value > threshold });
    }
    const breached = checks.filter((check) => check.breached);
    if (json) {
      printJson(io, { ok: breached.length === 0, generatedAt: metrics.generatedAt, drainWindowHours: windowHours, checks });
    } else {
      io.stdout(`Guardrails for ${api.baseUrl} at ${metrics.generatedAt} (drain window ${windowHours} h)\n\n`);
      io.stdout(
        table(
          ['status', 'threshold', 'value', 'max', 'what'],
          checks.map((check) => [check.breached ? 'BREACHED' : 'ok', check.flag.slice(2), check.value, check.threshold, check.description]),
        ),
      );
      if (breached.length === 0) io.stdout(`\nall ${checks.length} guardrails within their thresholds\n`);
      else {
        io.stdout(`\n${breached.length} guardrail(s) breached:\n`);
        for (const check of breached) {
          io.stdout(`  ${check.flag.slice(2)}: ${check.description} = ${check.value} > ${check.threshold} (raise with ${check.flag} or ${check.env})\n`);
        }
      }
    }
    return breached.length === 0 ? 0 : 1;
  },
};

// ---------------------------------------------------------------------------------------------
// Archive

const archiveCommand: Command = {
  name: 'archive-security-audit',
  summary: 'export security_event_audit rows older than the hot window to gzip JSON Lines, verify, then cut them (database direct)',
  usage:
    'karaxas-ops archive-security-audit --to <dir | gs://bucket/prefix/> [--hot-days <n> | --before <iso>] [--batch-size <n>] [--max-batches <n>] [--dry-run] [--json]',
  help: `  Talks to the DATABASE (not the API): DATABASE_URL, or DB_HOST/DB_PORT/DB_NAME/DB_USER with
  DB_PASSWORD_SECRET_REF (or DB_PASSWORD with ALLOW_PLAIN_ENV_SECRETS=true); DB_SSLMODE and
  DB_SSL_ROOT_CERT as for the service. The role must be allowed to EXECUTE
  archive_security_events() (the migrating role is).
  --to <uri>        local directory, or gs://bucket/prefix/ (Application Default Credentials);
                    alias --destination; env SECURITY_AUDIT_ARCHIVE_URI
  --hot-days <n>    keep rows younger than n days (default SECURITY_AUDIT_HOT_DAYS, 180)
  --before <iso>    archive rows created strictly before this instant instead
  --batch-size <n>  rows per file and per delete transaction (default 50000)
  --dry-run         export and verify, delete nothing
  Each file is verified (SHA-256, row count, seqs, hash chain from the anchor) before
  archive_security_events() deletes its rows; the cut and its admin_action_audit row
  (actor archive-job, action security_audit.archive) commit together. Nothing is deleted unless
  the export verified.
`,
  options: {
    to: { type: 'string' },
    destination: { type: 'string' },
    'hot-days': { type: 'string' },
    before: { type: 'string' },
    'batch-size': { type: 'string' },
    'max-batches': { type: 'string' },
    'dry-run': { type: 'boolean' },
  },
  run: async ({ io, json, parsed, env }) => {
    noExtraPositionals(parsed, 0);
    if (str(parsed, 'to') !== undefined && str(parsed, 'destination') !== undefined) throw new UsageError('--to and --destination are the same flag; give one');
    const destination = str(parsed, 'to') ?? str(parsed, 'destination') ?? env.SECURITY_AUDIT_ARCHIVE_URI;
    if (destination === undefined || destination.trim() === '') {
      throw new UsageError('--to <dir | gs://bucket/prefix/> is required (alias --destination; or SECURITY_AUDIT_ARCHIVE_URI)');
    }
    const hotDaysFlag = intFrom(str(parsed, 'hot-days'), '--hot-days', { min: 0, max: 3_650 });
    const before = isoFrom(str(parsed, 'before'), '--before');
    if (hotDaysFlag !== undefined && before !== undefined) throw new UsageError('--hot-days and --before exclude each other');
    const { archiveDatabaseConfig, archiveSecurityEvents } = await import('../audit/archive.js');
    const { createDatabasePool } = await import('../db/pool.js');
    const { createOpsStore } = await import('../ops/store.js');
    const { database, hotDays } = await archiveDatabaseConfig(env);
    const cutoff = before !== undefined ? new Date(before) : new Date(Date.now() - (hotDaysFlag ?? hotDays) * 86_400_000);
    const pool = await createDatabasePool(database);
    try {
      const result = await archiveSecurityEvents({
        pool,
        recordAdminAction: createOpsStore(pool).insertAdminAction,
        destination,
        cutoff,
        batchSize: intFrom(str(parsed, 'batch-size'), '--batch-size', { min: 1, max: 500_000 }),
        maxBatches: intFrom(str(parsed, 'max-batches'), '--max-batches', { min: 1 }),
        dryRun: bool(parsed, 'dry-run'),
        log: json ? undefined : (line) => io.stderr(`${line}\n`),
      });
      if (json) {
        printJson(io, result);
      } else {
        io.stdout(`cut-off ${result.cutoff}${result.dryRun ? ' (dry run: nothing deleted)' : ''}\n`);
        if (result.batches.length > 0) {
          io.stdout(
            table(
              ['file', 'rows', 'seqs', 'sha256', 'deleted'],
              result.batches.map((batch) => [
                batch.uri,
                batch.manifest.rowCount,
                `${batch.manifest.firstSeq}..${batch.manifest.lastSeq}`,
                batch.manifest.sha256.slice(0, 16),
                batch.deleted,
              ]),
            ),
          );
        }
        io.stdout(
          result.dryRun
            ? `verified ${result.batches.reduce((sum, batch) => sum + batch.manifest.rowCount, 0)} row(s) in ${result.batches.length} file(s); nothing deleted\n`
            : `archived ${result.archived} row(s) in ${result.batches.length} file(s)${result.more ? '; more rows remain (--max-batches)' : ''}\n`,
        );
        if (result.chainAfter) {
          io.stdout(
            result.chainAfter.ok
              ? `chain after the cut: ok (${result.chainAfter.checked} row(s) from the new anchor)\n`
              : `chain after the cut: BROKEN at ${result.chainAfter.firstBrokenId}\n`,
          );
        }
      }
      return result.chainAfter && !result.chainAfter.ok ? 1 : 0;
    } finally {
      await pool.end();
    }
  },
};

const verifyArchiveCommand: Command = {
  name: 'verify-archive',
  summary: 'verify an archive file against its manifest: SHA-256, row count, seqs and the hash chain',
  usage: 'karaxas-ops verify-archive <file.jsonl.gz | gs://bucket/prefix/file.jsonl.gz> [--json]',
  help: '  Reads <file>.manifest.json beside the file. Exit 1 when the file does not verify.\n',
  options: {},
  run: async ({ io, json, parsed }) => {
    noExtraPositionals(parsed, 1);
    const uri = positional(parsed, 0, 'the archive file');
    const { verifyArchivedFile } = await import('../audit/archive.js');
    const { manifest, rows } = await verifyArchivedFile(uri);
    if (json) printJson(io, { ok: true, rows, manifest });
    else io.stdout(`ok: ${uri} holds ${rows} row(s), seq ${manifest.firstSeq}..${manifest.lastSeq}, chained from ${manifest.anchorBefore.hash.slice(0, 16)}…\n`);
    return 0;
  },
};

// ---------------------------------------------------------------------------------------------
// rotate-secret (docs/infra.md "Secret rotation through stack config")

const rotatableSecrets = ['jwtSecret', 'opsApiToken', 'dbPassword', 'totpEncryptionKey'] as const;

const runPulumi = (pulumi: string, args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string; missing: boolean }>((resolve) => {
    execFile(pulumi, args, { timeout: 120_000, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({
        code: error ? (typeof error.code === 'number' ? error.code : 127) : 0,
        stdout,
        stderr,
        missing: error?.code === 'ENOENT' || error?.code === 'EACCES',
      }),
    );
  });

const rotateSecretCommand: Command = {
  name: 'rotate-secret',
  summary: 'the stack-config secret rotation of docs/infra.md: status, begin (N→N+1), confirm, emergency',
  usage: `karaxas-ops rotate-secret <${rotatableSecrets.join('|')}> --stack <staging|prod> [--status | --begin | --confirm | --emergency] [--dry-run]`,
  help: `  --status     print secretRotation.<secret>.{rotation,confirmed} (default)
  --begin      runbook steps 1+2: rotation N → N+1 (creates version N+1 and pins Cloud Run to it at the
               next pulumi up; version N stays enabled, JWT/TOTP keep it as *_PREVIOUS_SECRET_REF)
  --confirm    runbook step 4, after validating: confirmed = rotation (drops and DISABLES version N)
  --emergency  leaked secret: rotation and confirmed = N+1 in one change (old version disabled at once)
  --dry-run    print the pulumi commands instead of running them
  Runs \`pulumi config get/set --path secretRotation.<secret>.… --stack <stack>\` (PULUMI_BIN or
  "pulumi" on PATH); commit the stack file and let the deploy run \`pulumi up\`.
`,
  options: {
    stack: { type: 'string' },
    status: { type: 'boolean' },
    begin: { type: 'boolean' },
    confirm: { type: 'boolean' },
    emergency: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
  },
  run: async ({ io, json, parsed, env }) => {
    noExtraPositionals(parsed, 1);
    const secret = positional(parsed, 0, `the secret (${rotatableSecrets.join(', ')})`);
    if (!(rotatableSecrets as readonly string[]).includes(secret)) throw new UsageError(`the secret must be one of: ${rotatableSecrets.join(', ')}`);
    const stack = requireString(parsed, 'stack');
    if (!/^[A-Za-z0-9_.-]{1,100}$/.test(stack)) throw new UsageError('--stack must be a stack name');
    const modes = (['begin', 'confirm', 'emergency', 'status'] as const).filter((mode) => bool(parsed, mode));
    if (modes.length > 1) throw new UsageError('give one of --status, --begin, --confirm, --emergency');
    const mode = modes[0] ?? 'status';
    const pulumi = env.PULUMI_BIN ?? 'pulumi';
    const key = (field: 'rotation' | 'confirmed') => `secretRotation.${secret}.${field}`;

    const read = async (field: 'rotation' | 'confirmed') => {
      const result = await runPulumi(pulumi, ['config', 'get', '--path', key(field), '--stack', stack]);
      if (result.missing) throw new UsageError(`could not run "${pulumi}" (install the Pulumi CLI or set PULUMI_BIN)`);
      if (result.code !== 0) {
        // An unset key: the program's default (generation 1).
        if (/not found|does not exist|configuration key .* not found/i.test(result.stderr)) return 1;
        throw new UsageError(`pulumi config get ${key(field)} failed: ${result.stderr.trim().split('\n')[0] || `exit ${result.code}`}`);
      }
      const value = Number(result.stdout.trim());
      if (!Number.isInteger(value) || value < 1) throw new UsageError(`${key(field)} is not a positive integer in stack ${stack}`);
      return value;
    };

    const rotation = await read('rotation');
    const confirmed = await read('confirmed');
    let next: { rotation: number; confirmed: number } | undefined;
    if (mode === 'begin') {
      if (confirmed !== rotation) {
        throw new UsageError(`rotation ${rotation} of ${secret} is not confirmed yet (confirmed ${confirmed}): validate, then --confirm first`);
      }
      next = { rotation: rotation + 1, confirmed };
    } else if (mode === 'confirm') {
      if (confirmed === rotation) throw new UsageError(`nothing to confirm: ${secret} rotation ${rotation} is already confirmed`);
      next = { rotation, confirmed: rotation };
    } else if (mode === 'emergency') {
      next = { rotation: rotation + 1, confirmed: rotation + 1 };
    }

    const commands: string[][] = [];
    if (next && next.rotation !== rotation) commands.push(['config', 'set', '--path', key('rotation'), String(next.rotation), '--stack', stack]);
    if (next && next.confirmed !== confirmed) commands.push(['config', 'set', '--path', key('confirmed'), String(next.confirmed), '--stack', stack]);
    const dryRun = bool(parsed, 'dry-run');
    if (!dryRun) {
      for (const args of commands) {
        const result = await runPulumi(pulumi, args);
        if (result.code !== 0) {
          io.stderr(`pulumi ${args.join(' ')} failed: ${result.stderr.trim().split('\n')[0] || `exit ${result.code}`}\n`);
          return 1;
        }
      }
    }
    const after = next ?? { rotation, confirmed };
    const nextSteps =
      mode === 'begin'
        ? [
            `git commit -am "rotate the ${stack} ${secret} (generation ${after.rotation})"  # PR → merge → deploy runs pulumi up`,
            `validate: curl -fsS <url>/readyz; OPS_API_TOKEN=… bash scripts/check_ops_metrics_guardrails.sh --url <url>; log in, refresh, open a websocket`,
            `then: karaxas-ops rotate-secret ${secret} --stack ${stack} --confirm`,
          ]
        : mode === 'confirm'
          ? [`git commit -am "confirm the ${stack} ${secret} rotation"  # PR → merge → deploy disables generation ${rotation - 1}`]
          : mode === 'emergency'
            ? [
                `git commit -am "emergency rotation of the ${stack} ${secret}"  # merge → deploy (old version disabled)`,
                ...(secret === 'jwtSecret' || secret === 'opsApiToken' ? ['karaxas-ops revoke-sessions --all --reason "<incident id>: leaked secret"'] : []),
              ]
            : [];
    if (json) {
      printJson(io, { secret, stack, mode, before: { rotation, confirmed }, after, dryRun, commands: commands.map((args) => ['pulumi', ...args].join(' ')), nextSteps });
      return 0;
    }
    io.stdout(`${secret} on ${stack}: rotation ${rotation}, confirmed ${confirmed}\n`);
    for (const args of commands) io.stdout(`${dryRun ? 'would run' : 'ran'}: pulumi ${args.join(' ')}\n`);
    if (next) io.stdout(`now: rotation ${after.rotation}, confirmed ${after.confirmed}\n`);
    if (nextSteps.length > 0) io.stdout(`next:\n${nextSteps.map((step) => `  ${step}`).join('\n')}\n`);
    return 0;
  },
};

// ---------------------------------------------------------------------------------------------
// pentest (delegates to app/pentest/run.ts)

const pentestCommand: Command = {
  name: 'pentest',
  summary: 'the penetration-test checklist (auth, websocket, rate limit, replay, error leakage) against --url; exit 1 on findings',
  usage: 'karaxas-ops pentest --url <url> [--only <ids>] [--skip <ids>] [--max-wait <s>] [--timing-samples <n>] [--headers-timeout <s>] [--email-domain <d>] [--report <file>] [--list] [--json]',
  help: `  Runs runPentest of app/pentest/run.ts (the same checklist as \`npm run pentest\`). It creates its
  own throwaway accounts; safe against staging. The ops token (OPS_API_TOKEN / --token-file) is
  optional: with it the ops-auth check also confirms the ops API answers it.
  --report <file>   also write the report as JSON
  --list            list the checks and exit
`,
  options: {
    only: { type: 'string' },
    skip: { type: 'string' },
    'max-wait': { type: 'string' },
    'timing-samples': { type: 'string' },
    'headers-timeout': { type: 'string' },
    'email-domain': { type: 'string' },
    report: { type: 'string' },
    list: { type: 'boolean' },
  },
  run: async ({ io, env, parsed, json }) => {
    noExtraPositionals(parsed, 0);
    const { checkDefinitions, formatReport, runPentest } = await import('../pentest/run.js');
    if (bool(parsed, 'list')) {
      if (json) printJson(io, checkDefinitions.map(({ id, category, title }) => ({ id, category, title })));
      else io.stdout(table(['id', 'category', 'title'], checkDefinitions.map((check) => [check.id, check.category, check.title])));
      return 0;
    }
    const url = str(parsed, 'url') ?? env.KARAXAS_URL;
    if (url === undefined || url.trim() === '') throw new UsageError('--url <url> (or KARAXAS_URL) is required');
    let base: URL;
    try {
      base = new URL(url);
      if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('protocol');
    } catch {
      throw new UsageError('--url must be an http:// or https:// URL');
    }
    const list = (value: string | undefined) => value?.split(',').map((id) => id.trim()).filter(Boolean);
    const options = {
      ...(str(parsed, 'max-wait') === undefined ? {} : { maxWaitSeconds: intFrom(str(parsed, 'max-wait'), '--max-wait', { min: 1 }) }),
      ...(str(parsed, 'timing-samples') === undefined ? {} : { timingSamples: intFrom(str(parsed, 'timing-samples'), '--timing-samples', { min: 30 }) }),
      ...(str(parsed, 'headers-timeout') === undefined
        ? {}
        : { headersTimeoutSeconds: intFrom(str(parsed, 'headers-timeout'), '--headers-timeout', { min: 1 }) }),
      ...(str(parsed, 'email-domain') === undefined ? {} : { emailDomain: str(parsed, 'email-domain') }),
    };
    let report;
    try {
      report = await runPentest({
        baseUrl: base.origin,
        opsToken: await resolveToken(parsed, env, false),
        only: list(str(parsed, 'only')),
        skip: list(str(parsed, 'skip')),
        options,
        log: json ? undefined : (line) => io.stderr(`${line}\n`),
      });
    } catch (error) {
      // Unknown check ids or an unreachable target.
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
    const reportFile = str(parsed, 'report');
    if (reportFile !== undefined) await writeFile(reportFile, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
    if (json) printJson(io, report);
    else io.stdout(`${formatReport(report)}\n`);
    return report.ok ? 0 : 1;
  },
};

// ---------------------------------------------------------------------------------------------
// Dispatch

export const commands: readonly Command[] = [
  metricsCommand,
  adminAuditCommand,
  securityAuditCommand,
  verifyChainCommand,
  policyCommand,
  publishCommand,
  drainCommand,
  revokeSessionsCommand,
  setRoleCommand,
  forcePasswordResetCommand,
  mfaKeysCommand,
  mfaResealCommand,
  guardrailsCommand,
  archiveCommand,
  verifyArchiveCommand,
  rotateSecretCommand,
  pentestCommand,
];

const globalHelp = () => `karaxas-ops — the Karaxas operator CLI (docs/runbook.md)

Usage: karaxas-ops <command> [flags]    karaxas-ops <command> --help

Commands:
${commands.map((command) => `  ${command.name.padEnd(24)} ${command.summary}`).join('\n')}

Global flags:
  --url <url>           API base URL (or KARAXAS_URL)
  --token-file <path>   read the ops token from a file (else OPS_API_TOKEN); never pass it as a flag
  --json                machine-readable output
  --timeout <seconds>   per-request timeout (default 30)
  -h, --help            help

Exit codes: 0 ok, 1 the answer is bad (API error, breach, broken chain, failed drain), 2 usage/config/connection.
`;

const commandHelp = (command: Command) =>
  `${command.summary}\n\nUsage: ${command.usage}\n${command.help ? `\n${command.help}` : ''}\nGlobal flags: --url <url> (KARAXAS_URL), --token-file <path> (else OPS_API_TOKEN), --json, --timeout <s>, --help\n`;

/** Flags that would carry the token itself: refused before anything else is parsed, without echoing a value. */
const tokenFlagPattern = /^(--?(ops-?api-?)?token|--ops-token|--bearer|--auth(orization)?|-t)(=.*)?$/i;

const resolveToken = async (parsed: Parsed, env: Env, required: boolean): Promise<string | undefined> => {
  const file = str(parsed, 'token-file');
  let token: string | undefined;
  if (file !== undefined) {
    let text: string;
    try {
      const info = await stat(file);
      if (!info.isFile()) throw new Error('not a file');
      text = await readFile(file, 'utf8');
    } catch {
      throw new UsageError(`--token-file ${file} cannot be read`);
    }
    token = text.replace(/\r?\n$/, '');
    if (token.trim() === '' || /[\r\n]/.test(token)) throw new UsageError(`--token-file ${file} must hold the token on one line`);
  } else if (env.OPS_API_TOKEN !== undefined && env.OPS_API_TOKEN !== '') {
    token = env.OPS_API_TOKEN;
  }
  if (token === undefined && required) {
    throw new UsageError('no ops token: set OPS_API_TOKEN or pass --token-file <path> (the token is never accepted as a flag)');
  }
  return token;
};

const isArchiveError = (error: unknown): error is ArchiveErrorType => error instanceof Error && error.name === 'ArchiveError';

const describeApiError = (error: OpsApiError): string => {
  const where = `${error.method} ${error.path}`;
  const request = error.requestId ? ` [request id ${error.requestId}]` : '';
  if (error.source === 'network') return `${error.message}`;
  if (error.source === 'client') {
    return `${error.message}`;
  }
  if (error.status === 401) {
    return `authentication failed (401 ${error.code}) on ${where}: ${error.message}${request} — check OPS_API_TOKEN / --token-file`;
  }
  if (error.status === 403) {
    return `not allowed (403 ${error.code}) on ${where}: ${error.message}${request} — use the ops token or an admin session with MFA (otp)`;
  }
  const details = error.details?.length ? ` (${error.details.map((detail) => `${detail.path}: ${detail.message}`).join('; ')})` : '';
  return `${where} failed: ${error.status} ${error.code}: ${error.message}${details}${request}`;
};

/**
 * Runs one command line. Never throws: returns the exit code after printing results to
 * `io.stdout` and problems to `io.stderr`.
 */
export const runCli = async (argv: readonly string[], env: Env, io: CliIo): Promise<number> => {
  const tokenFlag = argv.find((arg) => tokenFlagPattern.test(arg));
  if (tokenFlag !== undefined) {
    io.stderr(
      `karaxas-ops: ${tokenFlag.replace(/=.*$/, '')} is refused: the ops token is never accepted as a command-line flag (it would land in shell history, process listings and CI logs). Set OPS_API_TOKEN or use --token-file <path>.\n`,
    );
    return 2;
  }
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const topic = name === 'help' ? commands.find((command) => command.name === rest[0]) : undefined;
    io.stdout(topic ? commandHelp(topic) : globalHelp());
    return name === undefined ? 2 : 0;
  }
  const command = commands.find((candidate) => candidate.name === name);
  if (command === undefined) {
    io.stderr(`karaxas-ops: unknown command "${name}". Run karaxas-ops --help for the list.\n`);
    return 2;
  }

  let parsed: Parsed;
  try {
    const result = parseArgs({
      args: [...rest],
      options: { ...globalOptions, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    parsed = { values: result.values as Parsed['values'], positionals: result.positionals };
  } catch (error) {
    // Node's message names the flag; drop any `=value` part all the same.
    const message = (error instanceof Error ? error.message : String(error)).replace(/=[^\s']*/g, '');
    io.stderr(`karaxas-ops ${command.name}: ${message}\nRun karaxas-ops ${command.name} --help.\n`);
    return 2;
  }
  if (bool(parsed, 'help')) {
    io.stdout(commandHelp(command));
    return 0;
  }

  const json = bool(parsed, 'json');
  let cached: OpsClient | undefined;
  const client = async (options: { public?: boolean } = {}) => {
    if (cached) return cached;
    const url = str(parsed, 'url') ?? env.KARAXAS_URL;
    if (url === undefined || url.trim() === '') throw new UsageError('--url <url> (or KARAXAS_URL) is required');
    const token = await resolveToken(parsed, env, options.public !== true);
    const timeoutSeconds = intFrom(str(parsed, 'timeout'), '--timeout', { min: 1, max: 600 }) ?? 30;
    cached = createOpsClient({
      baseUrl: url,
      token,
      timeoutMs: timeoutSeconds * 1000,
      headers: { 'user-agent': 'karaxas-ops' },
      requestId: () => `karaxas-ops-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`,
    });
    return cached;
  };

  try {
    return await command.run({ env, io, parsed, json, client });
  } catch (error) {
    const prefix = `karaxas-ops ${command.name}`;
    if (error instanceof UsageError) {
      io.stderr(`${prefix}: ${error.message}\nRun karaxas-ops ${command.name} --help.\n`);
      return 2;
    }
    if (error instanceof ConfigError) {
      io.stderr(`${prefix}: ${error.message}\n`);
      return 2;
    }
    if (error instanceof OpsApiError) {
      io.stderr(`${prefix}: ${describeApiError(error)}\n`);
      if (command.name === 'guardrails') return 2;
      return error.source === 'network' || error.code === 'invalid_url' ? 2 : 1;
    }
    if (isArchiveError(error)) {
      io.stderr(`${prefix}: ${error.message}\n`);
      return error.code === 'invalid_destination' || error.code === 'invalid_options' || error.code === 'busy' ? 2 : 1;
    }
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    io.stderr(`${prefix}: ${message}\n`);
    return command.name === 'guardrails' ? 2 : 1;
  }
};

/** The process entry: argv, environment and exit code of the real process. */
export const main = async (): Promise<void> => {
  const code = await runCli(process.argv.slice(2), processEnvironment(), {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
  });
  process.exitCode = code;
};

// `node dist/app/cli/main.js …` (the container has no bin/ shim) runs it directly.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
