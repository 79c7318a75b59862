/**
 * `karaxas-ops` through the real binary (`node bin/karaxas-ops.js …` as a child process) against
 * a real service on real PostgreSQL: a subcommand for every §7 call, authentication failures,
 * `revoke-sessions --all` closing live sockets, the guardrails (calm → 0, burst → 1 naming the
 * threshold, unreadable → 2) directly and through scripts/check_ops_metrics_guardrails.sh, the
 * token never accepted as a flag, rotate-secret against a fake Pulumi CLI — and the typed API
 * client the CLI is built on, in process.
 *
 * The tests run serially, in order: the guardrail baseline needs a quiet database and the bulk
 * revocation must not race other tests' sessions; and each CLI run is a fresh Node process, which
 * on a small machine is better not multiplied.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { createOpsClient, OpsApiError } from '../app/cli/api-client.js';
import { drainResponseSchema, metricsResponseSchema, publishResponseSchema, securityAuditPageSchema } from '../app/ops/schemas.js';
import { createApi, type Api } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { openSocket, signedInPlayer } from './support/realtime.js';
import { useSharedService, type TestService } from './support/service.js';

const shared = useSharedService({ AUTH_LOCKOUT_THRESHOLD: '100' });
const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'karaxas-ops.js');
const guardrailScript = join(root, 'scripts', 'check_ops_metrics_guardrails.sh');

const scratch: string[] = [];
test.after.always(async () => {
  for (const directory of scratch) await rm(directory, { recursive: true, force: true });
});
const tempDir = async () => {
  const directory = await mkdtemp(join(tmpdir(), 'karaxas-ops-cli-'));
  scratch.push(directory);
  return directory;
};

type Run = { code: number; stdout: string; stderr: string };

/** Runs `file args` with only the given environment (plus PATH/HOME). */
const spawn = (file: string, args: string[], env: Record<string, string | undefined>) =>
  new Promise<Run>((resolve) => {
    execFile(
      file,
      args,
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } as NodeJS.ProcessEnv, timeout: 90_000 },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
    );
  });

const cli = (args: string[], env: Record<string, string | undefined> = {}) => spawn(process.execPath, [bin, ...args], env);

/** The CLI against `service` with its ops token in OPS_API_TOKEN. */
const ops = (service: TestService, args: string[], env: Record<string, string | undefined> = {}) =>
  cli(args, { KARAXAS_URL: service.url, OPS_API_TOKEN: service.config.secrets.opsApiToken, ...env });

const query = async <R extends Record<string, unknown>>(service: TestService, text: string, values: unknown[] = []) =>
  withAdminClient(async (client) => (await client.query<R>(text, values)).rows, service.database.name);

const clientFor = (service: TestService) => createOpsClient({ baseUrl: service.url, token: service.config.secrets.opsApiToken });

const failLogins = async (api: Api, email: string, n: number) => {
  for (let i = 0; i < n; i += 1) {
    const response = await api.post('/auth/login', { email, password: `wrong-${randomBytes(6).toString('hex')}` });
    if (response.status !== 401 && response.status !== 429) throw new Error(`unexpected ${response.status}`);
  }
};

// ---------------------------------------------------------------------------------------------
// Guardrails (serial, first: the system is calm until the burst)

test.serial('guardrails: exit 0 with a table on a calm system, directly and through the CI wrapper script', async (t) => {
  const service = await shared();
  const direct = await ops(service, ['guardrails']);
  t.is(direct.code, 0, direct.stderr);
  t.regex(direct.stdout, /status\s+threshold\s+value\s+max/);
  t.regex(direct.stdout, /ok\s+max-login-failures-1h\s+0\s+500/);
  t.regex(direct.stdout, /all \d+ guardrails within their thresholds/);

  const json = await ops(service, ['guardrails', '--json', '--verify-chain']);
  t.is(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as { ok: boolean; checks: Array<{ name: string; breached: boolean; value: number }> };
  t.true(report.ok);
  t.true(report.checks.some((check) => check.name === 'chainBroken' && check.value === 0));
  t.true(report.checks.every((check) => !check.breached));

  // deploy.yml: `bash scripts/check_ops_metrics_guardrails.sh --url "$KARAXAS_URL"` with OPS_API_TOKEN exported.
  const token = service.config.secrets.opsApiToken;
  const script = await spawn('bash', [guardrailScript, '--url', service.url], { OPS_API_TOKEN: token });
  t.is(script.code, 0, script.stderr);
  t.regex(script.stdout, /all \d+ guardrails within/);
  // The URL may also come from KARAXAS_URL or a first positional argument.
  t.is((await spawn('bash', [guardrailScript], { OPS_API_TOKEN: token, KARAXAS_URL: service.url })).code, 0);
  t.is((await spawn('bash', [guardrailScript, service.url], { OPS_API_TOKEN: token })).code, 0);
});

test.serial('guardrails: exit 1 after a burst of failed logins, naming the breached threshold; 2 when the metrics cannot be read', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const account = await api.register();
  await failLogins(api, account.email, 6);

  const breached = await ops(service, ['guardrails', '--max-login-failures-1h', '3']);
  t.is(breached.code, 1, breached.stderr);
  t.regex(breached.stdout, /BREACHED\s+max-login-failures-1h\s+6\s+3/);
  t.regex(breached.stdout, /1 guardrail\(s\) breached:\n\s+max-login-failures-1h: failed logins in the last hour \(auth\.loginFailures1h\) = 6 > 3/);
  t.regex(breached.stdout, /ok\s+max-lockouts-1h/, 'the other thresholds still hold');

  const json = await ops(service, ['guardrails', '--json', '--max-login-failures-1h', '3']);
  t.is(json.code, 1);
  const report = JSON.parse(json.stdout) as { ok: boolean; checks: Array<{ name: string; breached: boolean; value: number; threshold: number }> };
  t.false(report.ok);
  t.deepEqual(
    report.checks.filter((check) => check.breached).map(({ name, value, threshold }) => ({ name, value, threshold })),
    [{ name: 'loginFailures1h', value: 6, threshold: 3 }],
  );

  // Thresholds from the environment, through the wrapper script (as CI would set them).
  const script = await spawn('bash', [guardrailScript, '--url', service.url], {
    OPS_API_TOKEN: service.config.secrets.opsApiToken,
    GUARDRAIL_MAX_LOGIN_FAILURES_1H: '5',
  });
  t.is(script.code, 1);
  t.regex(script.stdout, /max-login-failures-1h: .* = 6 > 5 \(raise with --max-login-failures-1h or GUARDRAIL_MAX_LOGIN_FAILURES_1H\)/);
  // A flag beats the environment; the defaults are calm at this volume.
  t.is((await ops(service, ['guardrails', '--max-login-failures-1h', '6'], { GUARDRAIL_MAX_LOGIN_FAILURES_1H: '5' })).code, 0);
  t.is((await ops(service, ['guardrails'])).code, 0);

  // Could not check: wrong token, unreachable, no URL → 2 (never 0, never confused with a breach).
  const wrongToken = await ops(service, ['guardrails'], { OPS_API_TOKEN: randomBytes(32).toString('base64url') });
  t.is(wrongToken.code, 2);
  t.regex(wrongToken.stderr, /authentication failed \(401 unauthorized\)/);
  const unreachable = await ops(service, ['guardrails', '--url', 'http://127.0.0.1:9', '--timeout', '5']);
  t.is(unreachable.code, 2);
  t.regex(unreachable.stderr, /Could not reach http:\/\/127\.0\.0\.1:9/);
  const noUrl = await spawn('bash', [guardrailScript], { OPS_API_TOKEN: 'x'.repeat(40) });
  t.is(noUrl.code, 2);
  t.regex(noUrl.stderr, /no URL/);
  t.is((await ops(service, ['guardrails', '--max-login-failures-1h', 'lots'])).code, 2);
});

test.serial('revoke-sessions --all revokes every session and every live socket closes', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const players = await Promise.all([signedInPlayer(api, 'A'), signedInPlayer(api, 'B'), signedInPlayer(api, 'C')]);
  const sockets = await Promise.all(players.map((player) => openSocket(api, service.url, player.token)));
  t.true(sockets.every((socket) => socket.isOpen));
  const [counted] = await query<{ active: number }>(service, 'SELECT count(*)::int AS active FROM user_sessions WHERE revoked_at IS NULL');
  const active = counted!.active;

  const result = await ops(service, ['revoke-sessions', '--all', '--reason', 'drill: leaked signing key']);
  t.is(result.code, 0, result.stderr);
  t.regex(result.stdout, new RegExp(`revoked ${active} session\\(s\\) \\(all users\\)`));
  t.true(active >= 3);

  for (const socket of sockets) {
    const closed = await socket.closedWithin(10_000);
    t.is(closed.code, 4001, 'closed as revoked');
  }
  t.deepEqual(await query(service, 'SELECT id FROM user_sessions WHERE revoked_at IS NULL'), []);
  for (const player of players) t.is((await api.get('/auth/me', player.token)).status, 401);

  // The runbook's confirmation: the admin action and the session_bulk_revocation event.
  const audit = await ops(service, ['admin-audit', '--action', 'sessions.revoke_all', '--json']);
  const [row] = (JSON.parse(audit.stdout) as { items: Array<{ actor: string; target: string; details: Record<string, unknown> }> }).items;
  t.like(row, { actor: 'ops-token', target: '*', details: { reason: 'drill: leaked signing key', revoked: active } });
  const events = securityAuditPageSchema.parse(JSON.parse((await ops(service, ['security-audit', '--event-type', 'session_bulk_revocation', '--json'])).stdout));
  t.true(events.items.some((event) => event.details.reason === 'ops_revoked_all' && event.details.revoked === active));
});

// ---------------------------------------------------------------------------------------------
// Every §7 call

test.serial('every ops call has a subcommand that works and prints', async (t) => {
  const service = await shared();
  const api = createApi(service.url);
  const client = clientFor(service);

  // metrics
  const metrics = await ops(service, ['metrics']);
  t.is(metrics.code, 0, metrics.stderr);
  t.regex(metrics.stdout, /sessions\.active\s+\d+/);
  t.regex(metrics.stdout, /auth\.loginFailures1h\s+\d+/);

  // policy create / activate / show
  const created = await ops(service, ['policy', 'create', '--platform', 'windows', '--min-supported', '1.0.0', '--latest', '1.2.0', '--json']);
  t.is(created.code, 0, created.stderr);
  const policy = (JSON.parse(created.stdout) as { policy: { id: string; active: boolean; loginGate: boolean } }).policy;
  t.false(policy.active);
  t.false(policy.loginGate);
  const createdHuman = await ops(service, ['policy', 'create', '--platform', 'windows', '--min-supported', '1.0.0', '--latest', '1.1.0']);
  t.regex(createdHuman.stdout, /created policy [0-9a-f-]{36} \(inactive\): activate with {2}karaxas-ops policy activate/);

  const activated = await ops(service, ['policy', 'activate', policy.id]);
  t.is(activated.code, 0, activated.stderr);
  t.regex(activated.stdout, new RegExp(`policy ${policy.id} is now the active windows policy`));
  // The public read needs no token.
  const shown = await cli(['policy', 'show', '--platform', 'windows', '--client-version', '0.9.0', '--url', service.url]);
  t.is(shown.code, 0, shown.stderr);
  t.regex(shown.stdout, /minSupportedVersion\s+1\.0\.0/);
  t.regex(shown.stdout, /updateRequired: true/);

  // publish --wait → drain completed; drain <id>
  const published = await ops(service, ['publish', '--platform', 'windows', '--version', '1.3.0', '--min-supported', '1.1.0', '--grace-seconds', '0', '--wait', '--json']);
  t.is(published.code, 0, published.stderr);
  const publishResult = JSON.parse(published.stdout) as { drainId: string; policyId: string; drain: unknown };
  t.notThrows(() => publishResponseSchema.parse({ drainId: publishResult.drainId, policyId: publishResult.policyId }));
  const drainAfterWait = drainResponseSchema.shape.drain.parse(publishResult.drain);
  t.is(drainAfterWait.status, 'completed');
  const drain = await ops(service, ['drain', publishResult.drainId]);
  t.is(drain.code, 0, drain.stderr);
  t.regex(drain.stdout, /status\s+completed/);
  t.regex(drain.stdout, /minSupportedVersion\s+1\.1\.0/);
  const publishedNoWait = await ops(service, ['publish', '--platform', 'web', '--version', '2.0.0', '--min-supported', '2.0.0', '--grace-seconds', '0']);
  t.regex(publishedNoWait.stdout, /drain [0-9a-f-]{36} started \(policy [0-9a-f-]{36}\); follow it with {2}karaxas-ops drain/);

  // admin-audit shows what the calls left
  const adminAudit = await ops(service, ['admin-audit', '--action', 'release.publish']);
  t.is(adminAudit.code, 0, adminAudit.stderr);
  t.regex(adminAudit.stdout, /createdAt\s+actor\s+action\s+target/);
  t.true(adminAudit.stdout.includes(publishResult.drainId));
  const actions = (await client.adminAudit({ actor: 'ops-token', limit: 100 })).items.map((item) => item.action);
  for (const action of ['release.policy.create', 'release.policy.activate', 'release.publish']) t.true(actions.includes(action), action);

  // incident actions on a player
  const player = await signedInPlayer(api, 'Target');
  const revoke = await ops(service, ['revoke-sessions', '--user', player.userId, '--reason', 'suspicious activity']);
  t.is(revoke.code, 0, revoke.stderr);
  t.regex(revoke.stdout, new RegExp(`revoked 1 session\\(s\\) of user ${player.userId}`));
  t.is((await api.get('/auth/me', player.token)).status, 401);
  const bulk = await ops(service, ['security-audit', '--event-type', 'session_bulk_revocation', '--user', player.userId]);
  t.is(bulk.code, 0, bulk.stderr);
  t.regex(bulk.stdout, /session_bulk_revocation/);
  t.regex(bulk.stdout, /1 row\(s\)/);

  const promoted = await ops(service, ['set-role', player.userId, 'admin']);
  t.is(promoted.code, 0, promoted.stderr);
  t.regex(promoted.stdout, new RegExp(`user ${player.userId} \\(.*\\) is admin`));
  t.is((await query<{ role: string }>(service, 'SELECT role FROM users WHERE id = $1', [player.userId]))[0]!.role, 'admin');
  t.is((await ops(service, ['set-role', player.userId, 'player', '--json'])).code, 0);

  const reset = await ops(service, ['force-password-reset', player.userId]);
  t.is(reset.code, 0, reset.stderr);
  t.regex(reset.stdout, /must reset the password/);
  const login = await api.post<{ error: { code: string } }>('/auth/login', { email: player.account.email, password: player.account.password });
  t.is(login.status, 403);
  t.is(login.body.error.code, 'password_reset_required');

  // security-audit, verify-chain
  const events = await ops(service, ['security-audit', '--event-type', 'password_reset_forced', '--user', player.userId, '--json']);
  t.is(securityAuditPageSchema.parse(JSON.parse(events.stdout)).items.length, 1);
  const all = await ops(service, ['security-audit', '--all', '--limit', '2', '--json']);
  t.is(all.code, 0, all.stderr);
  t.true((JSON.parse(all.stdout) as { items: unknown[] }).items.length > 2, '--all follows the cursor past the first page');
  const verify = await ops(service, ['verify-chain']);
  t.is(verify.code, 0, verify.stderr);
  t.regex(verify.stdout, /chain ok: \d+ row\(s\) checked/);

  // The adminAudit rows of the incident actions, by the client the CLI uses.
  const byTarget = (await client.adminAudit({ limit: 100 })).items.filter((item) => item.target === player.userId).map((item) => item.action);
  t.deepEqual([...new Set(byTarget)].sort(), ['sessions.revoke', 'user.force_password_reset', 'user.role']);
});

test.serial('metrics --json is the contract body', async (t) => {
  const service = await shared();
  const result = await ops(service, ['metrics', '--json']);
  t.is(result.code, 0, result.stderr);
  const metrics = metricsResponseSchema.parse(JSON.parse(result.stdout));
  t.true(metrics.sessions.active >= 0);
  t.truthy(metrics.securityEvents.login_failed);
});

// ---------------------------------------------------------------------------------------------
// Authentication and the token

test.serial('authentication failures are reported with the code, the request id and what to check', async (t) => {
  const service = await shared();
  const api = createApi(service.url);

  const noToken = await cli(['metrics', '--url', service.url]);
  t.is(noToken.code, 2);
  t.regex(noToken.stderr, /no ops token: set OPS_API_TOKEN or pass --token-file <path>/);

  const wrong = await ops(service, ['admin-audit'], { OPS_API_TOKEN: randomBytes(32).toString('base64url') });
  t.is(wrong.code, 1);
  t.regex(wrong.stderr, /authentication failed \(401 unauthorized\) on GET \/ops\/release\/admin-audit: Authentication is required\. \[request id karaxas-ops-[^\]]+\] — check OPS_API_TOKEN/);
  const requestId = /\[request id ([^\]]+)\]/.exec(wrong.stderr)![1]!;
  const recorded = await query<{ event_type: string; details: { reason: string } }>(service, 'SELECT event_type, details FROM security_event_audit WHERE request_id = $1', [requestId]);
  t.deepEqual(recorded.map((row) => [row.event_type, row.details.reason]), [['ops_auth_failed', 'invalid_token']]);

  // A player's access token through --token-file: 403 forbidden.
  const player = await signedInPlayer(api, 'Not an admin');
  const directory = await tempDir();
  const playerFile = join(directory, 'player-token');
  await writeFile(playerFile, `${player.token}\n`, { mode: 0o600 });
  const forbidden = await cli(['revoke-sessions', '--all', '--reason', 'x', '--url', service.url, '--token-file', playerFile]);
  t.is(forbidden.code, 1);
  t.regex(forbidden.stderr, /not allowed \(403 forbidden\) on POST \/ops\/sessions\/revoke/);
  t.is((await api.get('/auth/me', player.token)).status, 200, 'nothing was revoked');

  // The real token from a file works; an unreadable file is a usage error.
  const tokenFile = join(directory, 'ops-token');
  await writeFile(tokenFile, `${service.config.secrets.opsApiToken}\n`, { mode: 0o600 });
  t.is((await cli(['verify-chain', '--url', service.url, '--token-file', tokenFile])).code, 0);
  const missing = await cli(['verify-chain', '--url', service.url, '--token-file', join(directory, 'nope')]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /--token-file .* cannot be read/);

  // Server-side validation and not-found come back as the envelope.
  const notFound = await ops(service, ['force-password-reset', randomUUID()]);
  t.is(notFound.code, 1);
  t.regex(notFound.stderr, /POST \/ops\/users\/[0-9a-f-]{36}\/force-password-reset failed: 404 not_found: Not found\. \[request id/);
  // Invalid input is refused locally, before anything is sent.
  const invalid = await ops(service, ['set-role', 'not-a-uuid', 'admin']);
  t.is(invalid.code, 1);
  t.regex(invalid.stderr, /The id must be a UUID/);

  t.false(service.logs.lines.some((line) => line.includes(service.config.secrets.opsApiToken)), 'the token is never logged');
});

test.serial('the token is never accepted as a flag value, and is never echoed', async (t) => {
  const service = await shared();
  const token = service.config.secrets.opsApiToken;
  // A listener that counts requests: a refused command line must send nothing at all.
  let requests = 0;
  const listener = createServer((_request, response) => {
    requests += 1;
    response.writeHead(500);
    response.end();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => listener.close(() => resolve())));
  const url = `http://127.0.0.1:${(listener.address() as { port: number }).port}`;
  for (const args of [
    ['metrics', '--token', token],
    ['metrics', `--token=${token}`],
    ['metrics', '--ops-api-token', token],
    ['metrics', '--ops-token', token],
    ['metrics', '-t', token],
    ['revoke-sessions', '--all', '--reason', 'x', '--token', token],
  ]) {
    const result = await cli([...args, '--url', url]);
    t.is(result.code, 2, args.join(' '));
    t.regex(result.stderr, /is refused: the ops token is never accepted as a command-line flag/);
    t.false(result.stderr.includes(token) || result.stdout.includes(token), 'the value is not echoed');
    t.is(result.stdout, '');
  }
  t.is(requests, 0, 'nothing was sent');
});

// ---------------------------------------------------------------------------------------------
// Usage, help and connection errors

test.serial('--help per command, usage errors exit 2, connection errors exit 2', async (t) => {
  const service = await shared();
  const help = await cli(['--help']);
  t.is(help.code, 0);
  for (const name of ['metrics', 'admin-audit', 'security-audit', 'verify-chain', 'policy', 'publish', 'drain', 'revoke-sessions', 'set-role', 'force-password-reset', 'guardrails', 'archive-security-audit', 'verify-archive', 'rotate-secret', 'pentest']) {
    t.regex(help.stdout, new RegExp(`\\n  ${name} `), name);
    const commandHelp = await cli([name, '--help']);
    t.is(commandHelp.code, 0, name);
    t.regex(commandHelp.stdout, new RegExp(`Usage: karaxas-ops ${name}`), name);
  }
  t.regex((await cli(['guardrails', '--help'])).stdout, /--max-reuse-detected-1h\s+GUARDRAIL_MAX_REUSE_DETECTED_1H\s+5/);

  const unknown = await cli(['bogus']);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown command "bogus"/);
  const badFlag = await ops(service, ['metrics', '--bogus']);
  t.is(badFlag.code, 2);
  t.regex(badFlag.stderr, /Unknown option '--bogus'/);
  const badRole = await ops(service, ['set-role', randomUUID(), 'root']);
  t.is(badRole.code, 2);
  t.regex(badRole.stderr, /the role must be player or admin/);
  const both = await ops(service, ['revoke-sessions', '--all', '--user', randomUUID(), '--reason', 'x']);
  t.is(both.code, 2);
  t.regex(both.stderr, /exactly one of --user <userId> or --all/);
  const noReason = await ops(service, ['revoke-sessions', '--all']);
  t.is(noReason.code, 2);
  t.regex(noReason.stderr, /--reason is required/);
  const badPlatform = await ops(service, ['publish', '--platform', 'amiga', '--version', '1.0.0', '--min-supported', '1.0.0']);
  t.is(badPlatform.code, 2);

  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const { port } = closed.address() as { port: number };
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const unreachable = await ops(service, ['metrics', '--url', `http://127.0.0.1:${port}`]);
  t.is(unreachable.code, 2);
  t.regex(unreachable.stderr, new RegExp(`Could not reach http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
});

// ---------------------------------------------------------------------------------------------
// rotate-secret against a fake Pulumi CLI (config get/set --path on a small file)

const fakePulumi = async () => {
  const directory = await tempDir();
  const store = join(directory, 'config');
  const log = join(directory, 'calls');
  await writeFile(store, '');
  const script = join(directory, 'pulumi');
  await writeFile(
    script,
    `#!/usr/bin/env bash
set -euo pipefail
echo "$*" >> ${JSON.stringify(log)}
[[ "$1" == config ]] || exit 3
op="$2"; key="$4"
case "$op" in
  get)
    line="$(grep -F "$key=" ${JSON.stringify(store)} || true)"
    if [[ -z "$line" ]]; then echo "error: configuration key '$key' not found for stack '$6'" >&2; exit 255; fi
    echo "\${line#*=}" ;;
  set)
    grep -vF "$key=" ${JSON.stringify(store)} > ${JSON.stringify(store)}.new || true
    echo "$key=$5" >> ${JSON.stringify(store)}.new
    mv ${JSON.stringify(store)}.new ${JSON.stringify(store)} ;;
  *) exit 4 ;;
esac
`,
  );
  await chmod(script, 0o755);
  return { script, store, log };
};

test.serial('rotate-secret drives secretRotation.<secret> through pulumi config: begin, refuse a second begin, confirm, emergency', async (t) => {
  const pulumi = await fakePulumi();
  const env = { PULUMI_BIN: pulumi.script };

  const status = await cli(['rotate-secret', 'jwtSecret', '--stack', 'staging'], env);
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, /jwtSecret on staging: rotation 1, confirmed 1/);

  const begin = await cli(['rotate-secret', 'jwtSecret', '--stack', 'staging', '--begin'], env);
  t.is(begin.code, 0, begin.stderr);
  t.regex(begin.stdout, /ran: pulumi config set --path secretRotation\.jwtSecret\.rotation 2 --stack staging/);
  t.regex(begin.stdout, /karaxas-ops rotate-secret jwtSecret --stack staging --confirm/);
  t.regex(await readFile(pulumi.store, 'utf8'), /secretRotation\.jwtSecret\.rotation=2/);

  const again = await cli(['rotate-secret', 'jwtSecret', '--stack', 'staging', '--begin'], env);
  t.is(again.code, 2);
  t.regex(again.stderr, /rotation 2 of jwtSecret is not confirmed yet/);

  const confirm = await cli(['rotate-secret', 'jwtSecret', '--stack', 'staging', '--confirm', '--json'], env);
  t.is(confirm.code, 0, confirm.stderr);
  t.like(JSON.parse(confirm.stdout), { before: { rotation: 2, confirmed: 1 }, after: { rotation: 2, confirmed: 2 } });

  const dry = await cli(['rotate-secret', 'opsApiToken', '--stack', 'prod', '--emergency', '--dry-run'], env);
  t.is(dry.code, 0, dry.stderr);
  t.regex(dry.stdout, /would run: pulumi config set --path secretRotation\.opsApiToken\.rotation 2 --stack prod/);
  t.regex(dry.stdout, /would run: pulumi config set --path secretRotation\.opsApiToken\.confirmed 2 --stack prod/);
  t.regex(dry.stdout, /karaxas-ops revoke-sessions --all/);
  t.notRegex(await readFile(pulumi.store, 'utf8'), /opsApiToken/, 'a dry run changes nothing');

  const emergency = await cli(['rotate-secret', 'opsApiToken', '--stack', 'prod', '--emergency'], env);
  t.is(emergency.code, 0, emergency.stderr);
  t.regex(await readFile(pulumi.store, 'utf8'), /secretRotation\.opsApiToken\.rotation=2\n[^]*secretRotation\.opsApiToken\.confirmed=2/);

  t.is((await cli(['rotate-secret', 'sshKey', '--stack', 'prod'], env)).code, 2);
  const noPulumi = await cli(['rotate-secret', 'jwtSecret', '--stack', 'prod'], { PULUMI_BIN: join(await tempDir(), 'missing-pulumi') });
  t.is(noPulumi.code, 2);
  t.regex(noPulumi.stderr, /could not run ".*missing-pulumi" \(install the Pulumi CLI or set PULUMI_BIN\)/);
});

// ---------------------------------------------------------------------------------------------
// The typed client, in process

test.serial('the API client surfaces error envelopes, local validation, contract mismatches and network failures as OpsApiError', async (t) => {
  const service = await shared();
  const good = clientFor(service);
  t.true((await good.verifySecurityAudit()).ok);
  t.is((await good.releasePolicy({ platform: 'ios' })).policy, null);

  const wrong = createOpsClient({ baseUrl: service.url, token: 'nope', requestId: () => 'client-test-1' });
  const unauthorized = await t.throwsAsync(wrong.metrics(), { instanceOf: OpsApiError });
  t.like(unauthorized, { code: 'unauthorized', status: 401, requestId: 'client-test-1', source: 'server', method: 'GET', path: '/ops/release/metrics' });
  t.true(unauthorized!.isAuthError);
  t.false(unauthorized!.message.includes('nope'));

  const invalid = await t.throwsAsync(good.publish({ platform: 'ios', version: '1.0.0', minSupportedVersion: '2.0.0', forceUpdate: false, graceSeconds: 0 }), {
    instanceOf: OpsApiError,
  });
  t.like(invalid, { code: 'validation_failed', status: 0, source: 'client' });
  t.deepEqual(invalid!.details, [{ path: 'body.minSupportedVersion', message: 'must not be greater than version' }]);

  // A server that is not the Karaxas API (or answers off-contract).
  const impostor = createServer((request, response) => {
    if (request.url?.startsWith('/ops/release/metrics')) {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ generatedAt: 'yesterday' }));
    } else {
      response.writeHead(502, { 'content-type': 'text/html' });
      response.end('<html>bad gateway</html>');
    }
  });
  await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => impostor.close(() => resolve())));
  const impostorUrl = `http://127.0.0.1:${(impostor.address() as { port: number }).port}`;
  const offContract = createOpsClient({ baseUrl: impostorUrl, token: 't' });
  t.like(await t.throwsAsync(offContract.metrics(), { instanceOf: OpsApiError }), { code: 'invalid_response', status: 200, source: 'response' });
  t.like(await t.throwsAsync(offContract.verifySecurityAudit(), { instanceOf: OpsApiError }), { code: 'http_502', status: 502, source: 'server' });

  const unreachable = createOpsClient({ baseUrl: 'http://127.0.0.1:9', token: 't', timeoutMs: 5_000 });
  const network = await t.throwsAsync(unreachable.metrics(), { instanceOf: OpsApiError });
  t.true(network!.isConnectionError);
  t.is(network!.status, 0);

  t.throws(() => createOpsClient({ baseUrl: 'ftp://example.com' }), { instanceOf: OpsApiError });

  // Pages: the generator follows nextCursor until the end.
  const items = [];
  for await (const item of good.securityAuditAll({ limit: 1 }, 3)) items.push(item);
  t.is(items.length, 3);
});
