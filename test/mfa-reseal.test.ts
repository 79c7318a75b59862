/**
 * The TOTP key rotation through the real server on real PostgreSQL: `GET /ops/mfa/keys` and
 * `POST /ops/mfa/reseal` (app/ops → app/mfa), and `karaxas-ops mfa-keys` / `mfa-reseal` through
 * the real binary.
 *
 * Each test has its own database: users enroll under key A, the service restarts with key B
 * current and A previous (sharing the database), the reseal moves every secret to B, and a
 * service with only key B still verifies their codes. Codes are computed in the test
 * (test/support/totp.ts), always for a step later than the last one the user spent.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { runCli } from '../app/cli/main.js';
import { keyFingerprint, seal, sealingKey } from '../app/crypto/seal.js';
import { opsRoutes, type MfaKeys, type MfaReseal } from '../app/ops/schemas.js';
import { createApi, type Api, type ErrorBody, type TokenPair } from './support/api.js';
import { withAdminClient } from './support/database.js';
import { startTestService, type TestService } from './support/service.js';
import { msUntilNextStep, settledStep, totpForStep } from './support/totp.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'karaxas-ops.js');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const newKey = () => randomBytes(32);
const fingerprint = (key: Buffer) => keyFingerprint(key).toString('hex');
const b64 = (key: Buffer) => key.toString('base64');

const query = <R extends Record<string, unknown>>(service: TestService, text: string, values: unknown[] = []) =>
  withAdminClient(async (client) => (await client.query<R>(text, values)).rows, service.database.name);

type Account = { id: string; email: string; password: string; secret: string; lastStep: number };

/** Registers, enrolls and (unless `pending`) activates TOTP with the code of the previous step. */
const mfaAccount = async (t: ExecutionContext, api: Api, options: { pending?: boolean } = {}): Promise<Account> => {
  const account = await api.register();
  const pair = await api.login(account);
  const enrolled = await api.post<{ secret: string }>('/auth/mfa/totp/enroll', undefined, pair.accessToken);
  t.is(enrolled.status, 200);
  if (options.pending) return { ...account, secret: enrolled.body.secret, lastStep: 0 };
  const step = await settledStep(8_000);
  const activated = await api.post('/auth/mfa/totp/activate', { code: totpForStep(enrolled.body.secret, step - 1) }, pair.accessToken);
  t.is(activated.status, 200, JSON.stringify(activated.body));
  return { ...account, secret: enrolled.body.secret, lastStep: step - 1 };
};

/** A code for a step after the last one the account spent, within the server's ±1 window. */
const nextCode = async (account: Account) => {
  for (;;) {
    const now = await settledStep(5_000);
    const step = Math.max(now, account.lastStep + 1);
    if (step <= now + 1) {
      account.lastStep = step;
      return totpForStep(account.secret, step);
    }
    await sleep(msUntilNextStep() + 50);
  }
};

const challengeFor = async (t: ExecutionContext, api: Api, account: Account) => {
  const response = await api.post<{ mfaRequired: true; mfaToken: string }>('/auth/login', { email: account.email, password: account.password });
  t.is(response.status, 200, JSON.stringify(response.body));
  t.true(response.body.mfaRequired);
  return response.body.mfaToken;
};

const verify = (api: Api, mfaToken: string, code: string) => api.post<TokenPair & ErrorBody>('/auth/mfa/verify', { mfaToken, code });

const rowsOf = (service: TestService) =>
  query<{ user_id: string; key_id: Buffer; secret_sealed: Buffer; last_used_step: string | null }>(
    service,
    'SELECT user_id, key_id, secret_sealed, last_used_step FROM mfa_totp ORDER BY user_id',
  );

const adminRows = (service: TestService, requestId: string) =>
  query<{ actor: string; action: string; target: string | null; details: Record<string, unknown> }>(
    service,
    'SELECT actor, action, target, details FROM admin_action_audit WHERE request_id = $1',
    [requestId],
  );

/** Seals `account`'s secret under `key` (a key the service may not have), as the service would. */
const resealUnder = (service: TestService, account: Account, key: Buffer) =>
  query(service, 'UPDATE mfa_totp SET secret_sealed = $2, key_id = $3 WHERE user_id = $1', [
    account.id,
    seal(sealingKey(key), Buffer.from(account.secret, 'utf8'), Buffer.from(account.id, 'utf8')),
    keyFingerprint(key),
  ]);

const env = (keys: { current: Buffer; previous?: Buffer }) => ({
  TOTP_ENCRYPTION_KEY: b64(keys.current),
  TOTP_ENCRYPTION_KEY_PREVIOUS: keys.previous === undefined ? undefined : b64(keys.previous),
  AUTH_LOCKOUT_THRESHOLD: '100',
});

/** A service sealing with `key`, and `count` accounts enrolled and activated on it. */
const enrolledUnder = async (t: ExecutionContext, key: Buffer, count: number) => {
  const service = await startTestService(t, env({ current: key }));
  const api = createApi(service.url);
  const accounts: Account[] = [];
  for (let i = 0; i < count; i += 1) accounts.push(await mfaAccount(t, api));
  return { service, api, accounts };
};

/** Another service on `on`'s database with other keys: the rotation's next revision. */
const restartedWith = async (t: ExecutionContext, on: TestService, keys: { current: Buffer; previous?: Buffer }) => {
  const service = await startTestService(t, env(keys), { database: on.database });
  return { service, api: createApi(service.url), ops: service.config.secrets.opsApiToken };
};

test('keys → reseal in batches → keys shows nothing pending; only the new key still verifies; one audited row per call', async (t) => {
  const keyA = newKey();
  const keyB = newKey();
  const { service: first, api, accounts } = await enrolledUnder(t, keyA, 5);
  await mfaAccount(t, api, { pending: true });
  const before = await rowsOf(first);
  t.is(before.length, 6);
  t.true(before.every((row) => row.key_id.toString('hex') === fingerprint(keyA)));

  const { service: rotated, api: rotatedApi, ops } = await restartedWith(t, first, { current: keyB, previous: keyA });

  const keys = await rotatedApi.get<MfaKeys>(opsRoutes.mfaKeys.path, ops);
  t.is(keys.status, 200, JSON.stringify(keys.body));
  t.deepEqual(keys.body, {
    currentKeyId: fingerprint(keyB),
    total: 6,
    underCurrentKey: 0,
    pendingReseal: 6,
    byKey: [
      { keyId: fingerprint(keyB), count: 0, current: true },
      { keyId: fingerprint(keyA), count: 6, current: false },
    ],
  });
  // A key id names the key without being (a slice of) it.
  t.false(keyA.toString('hex').includes(fingerprint(keyA)));
  t.false(JSON.stringify(keys.body).includes(keyB.toString('hex').slice(0, 16)));

  // Refused like every ops route: no token, a player's token, a bad body.
  const player = await rotatedApi.login(await rotatedApi.register());
  t.is((await rotatedApi.get<ErrorBody>(opsRoutes.mfaKeys.path)).status, 401);
  t.is((await rotatedApi.post<ErrorBody>(opsRoutes.mfaReseal.path, {})).status, 401);
  t.is((await rotatedApi.get<ErrorBody>(opsRoutes.mfaKeys.path, player.accessToken)).status, 403);
  t.is((await rotatedApi.post<ErrorBody>(opsRoutes.mfaReseal.path, {}, player.accessToken)).status, 403);
  for (const body of [{ batchSize: 0 }, { batchSize: 5_001 }, { batchSize: 1.5 }, { batchSize: '10' }, { extra: true }]) {
    const refused = await rotatedApi.post<ErrorBody>(opsRoutes.mfaReseal.path, body, ops);
    t.is(refused.status, 400, JSON.stringify(body));
    t.is(refused.body.error.code, 'validation_failed');
  }
  t.is((await rowsOf(rotated)).filter((row) => row.key_id.toString('hex') === fingerprint(keyB)).length, 0, 'refused calls changed nothing');

  const requestId = `reseal-${randomUUID()}`;
  const resealed = await rotatedApi.post<MfaReseal>(opsRoutes.mfaReseal.path, { batchSize: 2 }, ops, { 'x-request-id': requestId });
  t.is(resealed.status, 200, JSON.stringify(resealed.body));
  t.like(resealed.body, { resealed: 6, pendingReseal: 0, unreadable: 0, currentKeyId: fingerprint(keyB) });
  t.true(resealed.body.batches >= 3, `several batches (${resealed.body.batches})`);

  const after = await rowsOf(rotated);
  t.true(after.every((row) => row.key_id.toString('hex') === fingerprint(keyB)));
  t.deepEqual(
    after.map((row) => row.last_used_step),
    before.map((row) => row.last_used_step),
    'last_used_step untouched',
  );
  t.true(after.every((row, index) => !row.secret_sealed.equals(before[index]!.secret_sealed)));

  const [audit, ...more] = await adminRows(rotated, requestId);
  t.is(more.length, 0, 'one admin_action_audit row per call');
  t.like(audit, { actor: 'ops-token', action: 'mfa.reseal', target: fingerprint(keyB) });
  t.like(audit!.details, { resealed: 6, pendingReseal: 0, unreadable: 0, batchSize: 2 });
  t.deepEqual(audit!.details.resealedFrom, { [fingerprint(keyA)]: 6 });

  const done = await rotatedApi.get<MfaKeys>(opsRoutes.mfaKeys.path, ops);
  t.like(done.body, { total: 6, underCurrentKey: 6, pendingReseal: 0 });
  t.deepEqual(done.body.byKey, [{ keyId: fingerprint(keyB), count: 6, current: true }]);

  // Again, with no body: nothing left, still one audited row.
  const againId = `reseal-${randomUUID()}`;
  const again = await rotatedApi.request<MfaReseal>('POST', opsRoutes.mfaReseal.path, { token: ops, headers: { 'x-request-id': againId } });
  t.is(again.status, 200, JSON.stringify(again.body));
  t.like(again.body, { resealed: 0, pendingReseal: 0, unreadable: 0, batches: 1 });
  t.is((await adminRows(rotated, againId)).length, 1);

  // The previous key dropped: every activated user still completes MFA.
  const { service: onlyB, api: onlyBApi } = await restartedWith(t, first, { current: keyB });
  for (const account of accounts) {
    const verified = await verify(onlyBApi, await challengeFor(t, onlyBApi, account), await nextCode(account));
    t.is(verified.status, 200, JSON.stringify(verified.body));
  }
  t.false(onlyB.logs.lines.some((line) => line.includes('could not be unsealed')));
});

test('a secret no configured key opens is counted as unreadable, logged by user id only and left untouched', async (t) => {
  const keyA = newKey();
  const keyB = newKey();
  const stranger = newKey();
  const { service: first, accounts } = await enrolledUnder(t, keyA, 2);
  const [readable, lost] = accounts as [Account, Account];
  await resealUnder(first, lost, stranger);
  const lostBefore = (await rowsOf(first)).find((row) => row.user_id === lost.id)!;

  const { service: rotated, api: rotatedApi, ops } = await restartedWith(t, first, { current: keyB, previous: keyA });
  const keys = await rotatedApi.get<MfaKeys>(opsRoutes.mfaKeys.path, ops);
  t.like(keys.body, { total: 2, underCurrentKey: 0, pendingReseal: 2 });
  t.true(keys.body.byKey.some((entry) => entry.keyId === fingerprint(stranger) && entry.count === 1 && !entry.current));

  for (const batchSize of [1, 1000]) {
    const resealed = await rotatedApi.post<MfaReseal>(opsRoutes.mfaReseal.path, { batchSize }, ops);
    t.is(resealed.status, 200, JSON.stringify(resealed.body));
    t.like(resealed.body, { resealed: batchSize === 1 ? 1 : 0, pendingReseal: 1, unreadable: 1 });
  }
  const lostAfter = (await rowsOf(rotated)).find((row) => row.user_id === lost.id)!;
  t.true(lostAfter.secret_sealed.equals(lostBefore.secret_sealed), 'left as it was');
  t.true(lostAfter.key_id.equals(lostBefore.key_id));

  const warnings = rotated.logs.entries().filter((entry) => String(entry.message).includes('no configured key opens'));
  t.is(warnings.length, 2, 'one per call that met it');
  t.true(warnings.every((entry) => entry.severity === 'WARNING'), JSON.stringify(warnings[0]));
  t.true(JSON.stringify(warnings).includes(lost.id));
  t.false(rotated.logs.lines.some((line) => line.includes(lost.secret) || line.includes(readable.secret)), 'no secret is logged');

  // The readable user made it; the lost one is refused safely (no 500).
  const verified = await verify(rotatedApi, await challengeFor(t, rotatedApi, readable), await nextCode(readable));
  t.is(verified.status, 200);
  const refused = await verify(rotatedApi, await challengeFor(t, rotatedApi, lost), await nextCode(lost));
  t.is(refused.status, 401);
});

test('verifies racing the reseal lose nothing, and a code accepted during the reseal cannot be replayed', async (t) => {
  const keyA = newKey();
  const keyB = newKey();
  const { service: first, accounts } = await enrolledUnder(t, keyA, 6);
  const { service: rotated, api: rotatedApi, ops } = await restartedWith(t, first, { current: keyB, previous: keyA });
  const tokens = await Promise.all(accounts.map((account) => challengeFor(t, rotatedApi, account)));
  const codes: string[] = [];
  for (const account of accounts) codes.push(await nextCode(account));

  const [reseal, ...verified] = await Promise.all([
    rotatedApi.post<MfaReseal>(opsRoutes.mfaReseal.path, { batchSize: 1 }, ops),
    ...accounts.map((_, index) => verify(rotatedApi, tokens[index]!, codes[index]!)),
  ]);
  t.is(reseal!.status, 200, JSON.stringify(reseal!.body));
  t.is(reseal!.body.unreadable, 0);
  for (const response of verified) t.is(response.status, 200, JSON.stringify(response.body));

  // Between the reseal and the verifies' lazy re-seal every row ended under key B, with the step
  // each verify consumed.
  const rows = await rowsOf(rotated);
  t.true(rows.every((row) => row.key_id.toString('hex') === fingerprint(keyB)));
  for (const account of accounts) {
    t.is(Number(rows.find((row) => row.user_id === account.id)!.last_used_step), account.lastStep, 'the accepted step is kept');
  }
  t.like((await rotatedApi.get<MfaKeys>(opsRoutes.mfaKeys.path, ops)).body, { pendingReseal: 0, underCurrentKey: 6 });

  // The codes accepted during the reseal are spent.
  for (const [index, account] of accounts.entries()) {
    const replay = await verify(rotatedApi, await challengeFor(t, rotatedApi, account), codes[index]!);
    t.is(replay.status, 401, 'replay refused');
    t.is(replay.body.error.code, 'invalid_mfa_code');
  }

  // And with the previous key gone, the next codes work.
  const { api: onlyBApi } = await restartedWith(t, first, { current: keyB });
  for (const account of accounts) {
    const next = await verify(onlyBApi, await challengeFor(t, onlyBApi, account), await nextCode(account));
    t.is(next.status, 200, JSON.stringify(next.body));
  }
});

test('a row a sign-in holds locked is skipped, not waited for, and picked up by the next call', async (t) => {
  const keyA = newKey();
  const keyB = newKey();
  const { service: first, accounts } = await enrolledUnder(t, keyA, 3);
  const { service: rotated, api: rotatedApi, ops } = await restartedWith(t, first, { current: keyB, previous: keyA });

  const held = accounts[1]!;
  const whileLocked = await withAdminClient(async (client) => {
    await client.query('BEGIN');
    try {
      await client.query('SELECT 1 FROM mfa_totp WHERE user_id = $1 FOR UPDATE', [held.id]);
      const started = Date.now();
      const response = await rotatedApi.post<MfaReseal>(opsRoutes.mfaReseal.path, { batchSize: 1 }, ops);
      return { response, ms: Date.now() - started };
    } finally {
      await client.query('COMMIT');
    }
  }, rotated.database.name);
  t.is(whileLocked.response.status, 200, JSON.stringify(whileLocked.response.body));
  t.like(whileLocked.response.body, { resealed: 2, pendingReseal: 1, unreadable: 0 });
  t.true(whileLocked.ms < 3_000, `not blocked by the lock (${whileLocked.ms} ms)`);
  const heldRow = (await rowsOf(rotated)).find((row) => row.user_id === held.id)!;
  t.is(heldRow.key_id.toString('hex'), fingerprint(keyA));

  const next = await rotatedApi.post<MfaReseal>(opsRoutes.mfaReseal.path, {}, ops);
  t.like(next.body, { resealed: 1, pendingReseal: 0, unreadable: 0 });
});

// ---------------------------------------------------------------------------------------------
// The CLI

type Run = { code: number; stdout: string; stderr: string };

const ops = (service: TestService, args: string[], extra: Record<string, string | undefined> = {}) =>
  new Promise<Run>((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, KARAXAS_URL: service.url, OPS_API_TOKEN: service.config.secrets.opsApiToken, ...extra },
        timeout: 90_000,
      },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
    );
  });

test('karaxas-ops mfa-keys and mfa-reseal through the binary: exit 0 once nothing is pending, 1 with unreadable secrets', async (t) => {
  const keyA = newKey();
  const keyB = newKey();
  const { service: first, accounts } = await enrolledUnder(t, keyA, 3);
  const { service: rotated } = await restartedWith(t, first, { current: keyB, previous: keyA });

  const table = await ops(rotated, ['mfa-keys']);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, new RegExp(`${fingerprint(keyA)}\\s+3`));
  t.regex(table.stdout, new RegExp(`${fingerprint(keyB)}\\s+0\\s+yes`));
  t.regex(table.stdout, /pendingReseal 3/);

  const resealed = await ops(rotated, ['mfa-reseal', '--batch-size', '1']);
  t.is(resealed.code, 0, resealed.stdout + resealed.stderr);
  t.regex(resealed.stdout, /call 1: resealed 3, pendingReseal 0, unreadable 0/);
  t.regex(resealed.stdout, /done: 3 secret\(s\) re-sealed/);

  const json = await ops(rotated, ['mfa-keys', '--json']);
  t.is(json.code, 0);
  t.like(JSON.parse(json.stdout) as MfaKeys, { currentKeyId: fingerprint(keyB), total: 3, underCurrentKey: 3, pendingReseal: 0 });

  await resealUnder(rotated, accounts[0]!, newKey());
  const stuck = await ops(rotated, ['mfa-reseal']);
  t.is(stuck.code, 1, stuck.stdout + stuck.stderr);
  t.regex(stuck.stdout, /NOT DONE: pendingReseal 1, unreadable 1/);
  const stuckJson = await ops(rotated, ['mfa-reseal', '--json']);
  t.is(stuckJson.code, 1);
  t.like(JSON.parse(stuckJson.stdout) as Record<string, unknown>, { ok: false, pendingReseal: 1, unreadable: 1, calls: 1 });

  const usage = await ops(rotated, ['mfa-reseal', '--batch-size', '0']);
  t.is(usage.code, 2);
  t.regex(usage.stderr, /--batch-size must be between 1 and 5000/);
  const noToken = await ops(rotated, ['mfa-keys'], { OPS_API_TOKEN: undefined });
  t.is(noToken.code, 2);
  t.regex(noToken.stderr, /no ops token/);
  const wrongToken = await ops(rotated, ['mfa-reseal'], { OPS_API_TOKEN: 'wrong' });
  t.is(wrongToken.code, 1);
  t.regex(wrongToken.stderr, /authentication failed \(401 unauthorized\)/);
});

test('mfa-reseal repeats the call while it makes progress and stops when it makes none', async (t) => {
  const answers: MfaReseal[] = [];
  const bodies: unknown[] = [];
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    request.on('end', () => {
      bodies.push(text === '' ? undefined : JSON.parse(text));
      const answer = answers.shift();
      response.writeHead(answer ? 200 : 500, { 'content-type': 'application/json' });
      response.end(JSON.stringify(answer ?? { error: { code: 'internal_error', message: 'no more', requestId: 'r' } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const run = async (args: string[]) => {
    const out = { stdout: '', stderr: '' };
    const code = await runCli(args, { KARAXAS_URL: url, OPS_API_TOKEN: 'token' }, {
      stdout: (text) => void (out.stdout += text),
      stderr: (text) => void (out.stderr += text),
    });
    return { code, ...out };
  };
  const currentKeyId = '0123456789abcdef';

  answers.push(
    { resealed: 5000, pendingReseal: 7000, unreadable: 0, batches: 5, currentKeyId },
    { resealed: 5000, pendingReseal: 2000, unreadable: 0, batches: 5, currentKeyId },
    { resealed: 2000, pendingReseal: 0, unreadable: 0, batches: 3, currentKeyId },
  );
  const done = await run(['mfa-reseal', '--batch-size', '1000']);
  t.is(done.code, 0, done.stderr);
  t.deepEqual(bodies.splice(0), [{ batchSize: 1000 }, { batchSize: 1000 }, { batchSize: 1000 }]);
  t.regex(done.stdout, /call 3: resealed 2000, pendingReseal 0/);
  t.regex(done.stdout, /done: 12000 secret\(s\) re-sealed under key 0123456789abcdef/);

  // Rows that stay locked (no progress) end the loop with exit 1 instead of spinning.
  answers.push(
    { resealed: 10, pendingReseal: 2, unreadable: 0, batches: 1, currentKeyId },
    { resealed: 0, pendingReseal: 2, unreadable: 0, batches: 1, currentKeyId },
  );
  const stuck = await run(['mfa-reseal']);
  t.is(stuck.code, 1);
  t.is(bodies.splice(0).length, 2);
  t.regex(stuck.stdout, /NOT DONE: pendingReseal 2, unreadable 0/);

  // An API error is reported like any other command's.
  const failed = await run(['mfa-reseal']);
  t.is(failed.code, 1);
  t.regex(failed.stderr, /POST \/ops\/mfa\/reseal failed: 500 internal_error/);
});
