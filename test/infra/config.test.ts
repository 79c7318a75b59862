/**
 * The typed stack config: both stack files validate, and bad values stop the
 * program with one line naming the key.
 */
import test from 'ava';
import { parseStackSettings, StackConfigError } from '../../infra/config.js';
import { readStackConfig } from '../../infra/offline/run.js';
import { TEST_IMAGE, runPlan } from './helpers.js';

/** The raw config of a stack file as the program sees it (namespace stripped). */
function raw(stack: string, overrides: Record<string, unknown> = {}): Record<string, string | undefined> {
  const { config } = readStackConfig(stack);
  const out: Record<string, string | undefined> = { image: TEST_IMAGE };
  for (const [k, v] of Object.entries(config)) {
    if (k === 'gcp:project') out.project = v;
    else if (k === 'gcp:region') out.region = v;
    else if (k.startsWith('karaxas-backend:')) out[k.slice('karaxas-backend:'.length)] = v;
  }
  for (const [k, v] of Object.entries(overrides)) out[k] = v === undefined ? undefined : typeof v === 'string' ? v : JSON.stringify(v);
  return out;
}

function problems(stack: string, overrides: Record<string, unknown>): string[] {
  try {
    parseStackSettings(raw(stack, overrides));
  } catch (err) {
    if (err instanceof StackConfigError) return err.problems;
    throw err;
  }
  return [];
}

const { config: prodFile } = readStackConfig('prod');
const prodDb = JSON.parse(prodFile['karaxas-backend:database']!) as Record<string, unknown>;
const prodArmor = JSON.parse(prodFile['karaxas-backend:armor']!) as Record<string, unknown>;
const prodGithub = JSON.parse(prodFile['karaxas-backend:github']!) as Record<string, unknown>;

test('both stack files validate', (t) => {
  for (const stack of ['staging', 'prod'] as const) {
    const settings = parseStackSettings(raw(stack));
    t.is(settings.environment, stack);
    t.true(settings.domains.length > 0);
  }
});

test('defaults fill what a stack leaves out (secure ones)', (t) => {
  const settings = parseStackSettings(raw('staging', { edge: undefined, secretRotation: undefined }));
  t.is(settings.edge.minTlsVersion, 'TLS_1_2');
  t.deepEqual(settings.secretRotation.jwtSecret, { rotation: 1, confirmed: 1 });
  t.is(settings.armor.policyName, 'karaxas-backend-policy');
  t.is(settings.armor.jsonParsing, 'STANDARD');
});

test('PostgreSQL older than 17 is refused', (t) => {
  t.deepEqual(problems('prod', { database: { ...prodDb, version: 'POSTGRES_15' } }), [
    'karaxas-backend:database.version: must be POSTGRES_17 or newer',
  ]);
});

test('prod cannot turn deletion protection or the archive lock off', (t) => {
  t.deepEqual(problems('prod', { database: { ...prodDb, deletionProtection: false } }), [
    'karaxas-backend:database.deletionProtection: must stay true in prod',
  ]);
  t.deepEqual(problems('prod', { auditArchive: { lockRetention: false } }), [
    'karaxas-backend:auditArchive.lockRetention: must be true in prod',
  ]);
  t.deepEqual(problems('staging', { database: { ...prodDb, deletionProtection: false } }), []);
});

test('an image by tag is refused', (t) => {
  const [p] = problems('prod', { image: 'europe-west1-docker.pkg.dev/p/r/karaxas-api:latest' });
  t.regex(p ?? '', /^karaxas-backend:image: must be an image reference pinned by digest/);
});

test('a typo in a key is reported instead of ignored', (t) => {
  t.deepEqual(problems('prod', { databse: { tier: 'db-f1-micro' } }), ['karaxas-backend:databse: unknown setting']);
  t.deepEqual(problems('prod', { database: { ...prodDb, tierr: 'x' } }), ['karaxas-backend:database.tierr: unknown setting']);
});

test('repository and owner must be numeric GitHub ids', (t) => {
  const [p] = problems('prod', { github: { ...prodGithub, repositoryId: 'karaxas-games/karaxas-backend' } });
  t.regex(p ?? '', /^karaxas-backend:github\.repositoryId: must be the numeric GitHub id/);
});

test('a stack nobody could deploy is refused', (t) => {
  t.deepEqual(problems('prod', { github: { ...prodGithub, deployBranches: [], deployEnvironments: [] } }), [
    'karaxas-backend:github.deployEnvironments: set deployBranches and/or deployEnvironments: nothing could deploy this stack',
  ]);
});

test('basic roles are refused for the CI accounts', (t) => {
  const [p] = problems('prod', { github: { ...prodGithub, deployerRoles: ['roles/owner'] } });
  t.is(p, 'karaxas-backend:github.deployerRoles: basic roles (owner/editor) are not allowed');
});

test('Armor rate-limit intervals must be values Cloud Armor accepts', (t) => {
  const [p] = problems('prod', {
    armor: { ...prodArmor, authRateLimit: { count: 10, intervalSec: 45, banDurationSec: 600 } },
  });
  t.regex(p ?? '', /^karaxas-backend:armor\.authRateLimit\.intervalSec: must be one of 10, 30, 60/);
});

test('CORS origins must be exact origins, never wildcards', (t) => {
  t.regex(problems('prod', { corsAllowedOrigins: ['*'] })[0] ?? '', /^karaxas-backend:corsAllowedOrigins\.0: must be an exact origin/);
  t.regex(problems('prod', { corsAllowedOrigins: ['https://play.example.com/'] })[0] ?? '', /corsAllowedOrigins\.0/);
  t.deepEqual(problems('prod', { corsAllowedOrigins: ['https://play.example.com', 'https://admin.example.com'] }), []);
});

test('missing required settings name their key, including gcp:project', (t) => {
  const found = problems('prod', { database: undefined, project: undefined });
  t.true(found.includes('gcp:project: Required'));
  t.true(found.includes('karaxas-backend:database: Required'));
});

test('the program itself stops with the key named (plan exits 1, no stack trace)', async (t) => {
  const run = await runPlan('prod', { config: { database: { ...prodDb, version: 'POSTGRES_16' } } });
  t.is(run.code, 1);
  t.regex(run.stderr, /karaxas-backend:database\.version: must be POSTGRES_17 or newer/);
  t.notRegex(run.stderr, /\n\s+at /, 'no stack trace');
});

test('an unknown rule in armor.previewRules is refused with the key named', async (t) => {
  const run = await runPlan('staging', { config: { armor: { ...prodArmor, previewRules: ['waf-sqlii'] } } });
  t.is(run.code, 1);
  t.regex(run.stderr, /karaxas-backend:armor\.previewRules: unknown rule waf-sqlii/);
});
