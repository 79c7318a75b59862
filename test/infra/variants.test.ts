/**
 * Stack settings that change the shape of the program: verify-ca with the
 * server CA mounted as a file, required client certificates, cross-stack
 * image pulls (one program run with all of them).
 */
import test from 'ava';
import { T, cloudRunEnv, get, ofType, only, planJson, type PlanJson } from './helpers.js';
import { readStackFile } from './invariants.js';

const prod = readStackFile('prod');
const reader = 'serviceAccount:service-123456789012@serverless-robot-prod.iam.gserviceaccount.com';
let run: PlanJson;

test.before(async () => {
  run = await planJson('prod', {
    config: {
      database: { ...(prod['karaxas-backend:database'] as object), clientSslMode: 'verify-ca', requireClientCertificates: true },
      service: { ...(prod['karaxas-backend:service'] as object), registryReaders: [reader] },
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
