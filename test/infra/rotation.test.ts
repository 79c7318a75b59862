/**
 * Secret rotation through stack config (the runbook's four steps), shown on
 * fresh program runs (one child process per configuration):
 *
 *   settled (1/1) → rotate (2/1): new version, Cloud Run pinned to it, previous JWT kept verify-only
 *                 → confirm (2/2): previous reference dropped, previous version disabled
 *                 → next rotation (3/2): generation 1 leaves the program (deletionPolicy DISABLE)
 */
import test from 'ava';
import { T, cloudRunEnv, ofType, planJson, runPlan, type PlanJson, type Res } from './helpers.js';

const STACK = 'prod';
const rotation = (jwt: [number, number], others: Record<string, [number, number]> = {}) => ({
  secretRotation: {
    jwtSecret: { rotation: jwt[0], confirmed: jwt[1] },
    ...Object.fromEntries(Object.entries(others).map(([k, [r, c]]) => [k, { rotation: r, confirmed: c }])),
  },
});

const versionsOf = (resources: Res[], secretSuffix: string) =>
  ofType(resources, T.secretVersion)
    .filter((v) => String(v.inputs.secret).endsWith(`/secrets/karaxas-${STACK}-${secretSuffix}`))
    .map((v) => ({ name: v.name, ref: String(v.outputs.name), enabled: v.inputs.enabled, policy: v.inputs.deletionPolicy }))
    .sort((a, b) => a.name.localeCompare(b.name));

let settled: PlanJson;
let rotating: PlanJson;
let confirmed: PlanJson;
let next: PlanJson;

test.before(async () => {
  [settled, rotating, confirmed, next] = await Promise.all([
    planJson(STACK, { config: rotation([1, 1]) }),
    planJson(STACK, { config: rotation([2, 1]) }),
    planJson(STACK, { config: rotation([2, 2]) }),
    planJson(STACK, { config: rotation([3, 2]) }),
  ]);
});

test('settled: one enabled JWT version, the service pinned to it, no previous reference', (t) => {
  const versions = versionsOf(settled.resources, 'jwt-secret');
  t.deepEqual(versions.map((v) => [v.name, v.enabled]), [[`karaxas-${STACK}-jwt-secret-g1`, true]]);
  const env = cloudRunEnv(settled.resources);
  t.is(env.JWT_SECRET_SECRET_REF, versions[0]!.ref);
  t.regex(env.JWT_SECRET_SECRET_REF ?? '', /\/versions\/1$/);
  t.false('JWT_SECRET_PREVIOUS_SECRET_REF' in env);
});

test('steps 1+2 — bumping the rotation creates a new version and pins Cloud Run to it, keeping the previous JWT verify-only', (t) => {
  const versions = versionsOf(rotating.resources, 'jwt-secret');
  t.deepEqual(
    versions.map((v) => [v.name, v.enabled]),
    [
      [`karaxas-${STACK}-jwt-secret-g1`, true],
      [`karaxas-${STACK}-jwt-secret-g2`, true],
    ],
  );
  const [g1, g2] = versions;
  t.regex(g2!.ref, /^projects\/[^/]+\/secrets\/karaxas-prod-jwt-secret\/versions\/2$/);
  // A new value was generated for the new generation.
  t.truthy(rotating.resources.find((r) => r.type === T.randomPassword && r.name === `karaxas-${STACK}-jwt-secret-g2-value`));
  const env = cloudRunEnv(rotating.resources);
  t.is(env.JWT_SECRET_SECRET_REF, g2!.ref);
  t.is(env.JWT_SECRET_PREVIOUS_SECRET_REF, g1!.ref);
  t.not(env.JWT_SECRET_SECRET_REF, cloudRunEnv(settled.resources).JWT_SECRET_SECRET_REF, 'a new revision (env changed)');
  // Other secrets are untouched.
  t.is(env.OPS_API_TOKEN_SECRET_REF, cloudRunEnv(settled.resources).OPS_API_TOKEN_SECRET_REF);
  t.deepEqual(rotating.violations, []);
  t.deepEqual((rotating.outputs.secretRefsInUse as Record<string, string>).JWT_SECRET_PREVIOUS_SECRET_REF, g1!.ref);
});

test('step 4 — confirming drops the previous reference and disables the previous version', (t) => {
  const versions = versionsOf(confirmed.resources, 'jwt-secret');
  t.deepEqual(
    versions.map((v) => [v.name, v.enabled, v.policy]),
    [
      [`karaxas-${STACK}-jwt-secret-g1`, false, 'DISABLE'],
      [`karaxas-${STACK}-jwt-secret-g2`, true, 'DISABLE'],
    ],
  );
  const env = cloudRunEnv(confirmed.resources);
  t.is(env.JWT_SECRET_SECRET_REF, versions[1]!.ref);
  t.false('JWT_SECRET_PREVIOUS_SECRET_REF' in env);
  t.deepEqual(confirmed.violations, []);
});

test('the next rotation keeps one previous generation; older ones leave the program (disabled, never destroyed)', (t) => {
  const versions = versionsOf(next.resources, 'jwt-secret');
  t.deepEqual(
    versions.map((v) => [v.name, v.enabled]),
    [
      [`karaxas-${STACK}-jwt-secret-g2`, true],
      [`karaxas-${STACK}-jwt-secret-g3`, true],
    ],
  );
  const env = cloudRunEnv(next.resources);
  t.is(env.JWT_SECRET_PREVIOUS_SECRET_REF, versions[0]!.ref);
  t.is(env.JWT_SECRET_SECRET_REF, versions[1]!.ref);
});

test('an emergency rotation (leaked secret) bumps and confirms at once: the old version is disabled immediately', async (t) => {
  const run = await planJson(STACK, { config: rotation([2, 2]), secrets: { jwtSecret: 'a-new-jwt-secret-set-by-the-operator-0123456789abcdef' } });
  const versions = versionsOf(run.resources, 'jwt-secret');
  t.deepEqual(versions.map((v) => v.enabled), [false, true]);
  const env = cloudRunEnv(run.resources);
  t.false('JWT_SECRET_PREVIOUS_SECRET_REF' in env);
  // The supplied value is used for the new generation (no generator), as a secret input.
  const g2 = run.resources.find((r) => r.name === `karaxas-${STACK}-jwt-secret-g2`)!;
  t.deepEqual(g2.secretPaths, ['secretData']);
  t.is(g2.inputs.secretData, '[secret]');
  t.falsy(run.resources.find((r) => r.name === `karaxas-${STACK}-jwt-secret-g2-value`));
});

test('other secrets rotate the same way: TOTP keeps a previous (decrypt-only) reference, the ops token and DB password do not', async (t) => {
  const run = await planJson(STACK, { config: rotation([1, 1], { totpEncryptionKey: [2, 1], opsApiToken: [2, 1], dbPassword: [2, 1] }) });
  const env = cloudRunEnv(run.resources);
  const totp = versionsOf(run.resources, 'totp-encryption-key');
  t.is(env.TOTP_ENCRYPTION_KEY_SECRET_REF, totp[1]!.ref);
  t.is(env.TOTP_ENCRYPTION_KEY_PREVIOUS_SECRET_REF, totp[0]!.ref);
  const ops = versionsOf(run.resources, 'ops-api-token');
  t.deepEqual(ops.map((v) => v.enabled), [true, true], 'the old ops token stays valid until confirmed');
  t.is(env.OPS_API_TOKEN_SECRET_REF, ops[1]!.ref);
  t.false(Object.keys(env).some((k) => k.startsWith('OPS_API_TOKEN_PREVIOUS') || k.startsWith('DB_PASSWORD_PREVIOUS')));
  // The DB password: the user's password input and the service reference move together.
  const db = versionsOf(run.resources, 'db-password');
  t.is(env.DB_PASSWORD_SECRET_REF, db[1]!.ref);
  t.deepEqual(run.resources.find((r) => r.type === T.sqlUser)!.secretPaths, ['password']);
  t.is(env.JWT_SECRET_SECRET_REF, cloudRunEnv(settled.resources).JWT_SECRET_SECRET_REF);
  t.deepEqual(run.violations, []);
});

test('skipping a confirmation is refused with the key named', async (t) => {
  const run = await runPlan(STACK, { config: rotation([3, 1]) });
  t.is(run.code, 1);
  t.regex(run.stderr, /karaxas-backend:secretRotation\.jwtSecret\.confirmed: confirm rotation 2 before starting rotation 3/);
  const ahead = await runPlan(STACK, { config: rotation([1, 2]) });
  t.is(ahead.code, 1);
  t.regex(ahead.stderr, /karaxas-backend:secretRotation\.jwtSecret\.confirmed/);
});
