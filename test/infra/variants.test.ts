/**
 * Stack settings that change the shape of the program: verify-ca with the
 * server CA mounted as a file, required client certificates, cross-stack
 * image pulls, IAP in front of /ops (one program run with all of them).
 */
import test from 'ava';
import { T, armorRules, cloudRunEnv, get, named, ofType, only, planJson, type PlanJson } from './helpers.js';
import { readStackFile } from './invariants.js';

const prod = readStackFile('prod');
const reader = 'serviceAccount:service-123456789012@serverless-robot-prod.iam.gserviceaccount.com';
const IAP_MEMBER = 'group:oncall@karaxas.example';
let run: PlanJson;

test.before(async () => {
  run = await planJson('prod', {
    config: {
      database: { ...(prod['karaxas-backend:database'] as object), clientSslMode: 'verify-ca', requireClientCertificates: true },
      service: { ...(prod['karaxas-backend:service'] as object), registryReaders: [reader] },
      opsAccess: { allowedSourceRanges: [], iap: { enabled: true, members: [IAP_MEMBER] } },
      monitoring: { ...(prod['karaxas-backend:monitoring'] as object), adminAuditUptimeCheck: false },
    },
  });
});

test('the variant still passes every policy', (t) => {
  t.deepEqual(run.violations, []);
});

test('DB_SSLMODE=verify-ca mounts the server CA bundle from a pinned secret version', (t) => {
  const env = cloudRunEnv(run.resources);
  t.is(env.DB_SSLMODE, 'verify-ca');
  t.is(env.DB_SSL_ROOT_CERT, '/var/run/karaxas/db-ca/server-ca.pem');
  const svc = only(run.resources, T.cloudRun).inputs;
  t.deepEqual(get(svc, 'template.volumes'), [
    { name: 'db-ca', secret: { secret: 'karaxas-prod-db-server-ca', defaultMode: 0o444, items: [{ path: 'server-ca.pem', version: '1' }] } },
  ]);
  t.deepEqual(get(svc, 'template.containers.0.volumeMounts'), [{ name: 'db-ca', mountPath: '/var/run/karaxas/db-ca' }]);
  t.truthy(ofType(run.resources, T.secret).find((s) => s.inputs.secretId === 'karaxas-prod-db-server-ca'));
  const grants = ofType(run.resources, T.secretIam).map((g) => g.inputs.secretId);
  t.true(grants.includes('karaxas-prod-db-server-ca'), 'the runtime account may read the CA bundle');
});

test('client certificates can be required on Cloud SQL', (t) => {
  t.is(get(only(run.resources, T.sqlInstance).inputs, 'settings.ipConfiguration.sslMode'), 'TRUSTED_CLIENT_CERTIFICATE_REQUIRED');
});

test('another project may pull images from the stack registry (one digest promoted across stacks)', (t) => {
  const grants = ofType(run.resources, 'gcp:artifactregistry/repositoryIamMember:RepositoryIamMember').filter(
    (g) => g.inputs.role === 'roles/artifactregistry.reader',
  );
  t.deepEqual(grants.map((g) => g.inputs.member), [reader]);
});

test('the archive job reaches the database the same way (CA bundle mounted, CA secret readable)', (t) => {
  const task = get(only(run.resources, T.job).inputs, 'template.template') as Record<string, unknown>;
  const env = Object.fromEntries((get(task, 'containers.0.envs') as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]));
  t.is(env.DB_SSLMODE, 'verify-ca');
  t.is(env.DB_SSL_ROOT_CERT, '/var/run/karaxas/db-ca/server-ca.pem');
  t.deepEqual(get(task, 'containers.0.volumeMounts'), [{ name: 'db-ca', mountPath: '/var/run/karaxas/db-ca' }]);
  const jobMember = `serviceAccount:${String(get(task, 'serviceAccount'))}`;
  const reads = ofType(run.resources, T.secretIam).filter((g) => g.inputs.member === jobMember).map((g) => g.inputs.secretId);
  t.deepEqual(reads.sort(), ['karaxas-prod-db-password', 'karaxas-prod-db-server-ca']);
});

test('IAP in front of /ops: the ops backend requires it, only the listed principals pass, no admin-audit uptime check', (t) => {
  const ops = named(run.resources, 'karaxas-prod-ops-backend').inputs;
  t.deepEqual(ops.iap, { enabled: true });
  t.falsy(named(run.resources, 'karaxas-prod-backend').inputs.iap, 'the public routes stay without IAP');
  t.deepEqual(
    ofType(run.resources, T.iapMember).map((m) => [m.inputs.webBackendService, m.inputs.role, m.inputs.member]),
    [['karaxas-prod-ops-backend', 'roles/iap.httpsResourceAccessor', IAP_MEMBER]],
  );
  // No source list: the ops policy keeps the baseline and lets IAP decide.
  const rules = armorRules(run.resources, 'karaxas-prod-ops-armor');
  t.is(rules.find((r) => r.priority === 2147483647)?.action, 'allow');
  t.deepEqual(rules.filter((r) => r.action === 'allow' && r.priority !== 2147483647), []);
  t.deepEqual(ofType(run.resources, T.uptimeCheck).map((c) => get(c.inputs, 'httpCheck.path')), ['/readyz']);
  t.false((run.outputs.alertPolicies as string[]).includes('uptime-admin-audit'));
  t.true(ofType(run.resources, 'gcp:projects/service:Service').some((s) => s.inputs.service === 'iap.googleapis.com'));
  t.true(ofType(run.resources, T.projectIam).some((r) => r.inputs.role === 'roles/iap.admin' && String(r.inputs.member).includes('karaxas-prod-deploy@')));
});
