/**
 * The typed stack config: both stack files validate, and bad values stop the
 * program with one line naming the key.
 */
import test from 'ava';
import { z } from 'zod';
import { tunableSchemas, type TunableName } from '../../app/config/tunables.js';
import { TUNABLE_KEYS, parseStackSettings, StackConfigError, tunableKey } from '../../infra/config.js';
import { readStackConfig } from '../../infra/offline/run.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, TEST_IMAGE, runPlan } from './helpers.js';

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

test('CORS origins are checked by the app schema (exact origins, never wildcards), and https only', (t) => {
  t.deepEqual(problems('prod', { corsAllowedOrigins: ['*'] }), [
    'karaxas-backend:corsAllowedOrigins.0: each origin must be scheme://host[:port] with no path and no wildcard (CORS_ALLOWED_ORIGINS)',
  ]);
  t.regex(problems('prod', { corsAllowedOrigins: ['https://play.example.com/'] })[0] ?? '', /^karaxas-backend:corsAllowedOrigins\.0: /);
  t.deepEqual(problems('prod', { corsAllowedOrigins: ['http://play.example.com'] }), [
    'karaxas-backend:corsAllowedOrigins.0: must be an https origin (http only for localhost)',
  ]);
  t.deepEqual(problems('prod', { corsAllowedOrigins: ['https://play.example.com', 'https://admin.example.com'] }), []);
  // `pulumi config set karaxas-backend:corsAllowedOrigins "https://a.example,https://b.example"` works too.
  const settings = parseStackSettings(raw('prod', { corsAllowedOrigins: 'https://a.example.com, https://b.example.com' }));
  t.is(settings.tunables.CORS_ALLOWED_ORIGINS, 'https://a.example.com,https://b.example.com');
});

/** The inclusive integer bounds the app applies to a tunable, read from app/config/tunables.ts. */
function appBounds(name: TunableName): { min: number; max: number } {
  const number = ((tunableSchemas[name] as unknown as z.ZodDefault<z.ZodPipeline<z.ZodTypeAny, z.ZodNumber>>)._def.innerType._def.out);
  if (!(number instanceof z.ZodNumber) || number.minValue === null || number.maxValue === null) throw new Error(`${name} is not a bounded integer`);
  return { min: number.minValue, max: number.maxValue };
}

test('every operator tunable of the app is a stack key (camelCase of its env name)', (t) => {
  t.is(tunableKey('AUTH_LOCKOUT_THRESHOLD'), 'authLockoutThreshold');
  t.is(tunableKey('WS_TICKET_TTL_SECONDS'), 'wsTicketTtlSeconds');
  t.is(tunableKey('MAX_REQUEST_BODY_BYTES'), 'maxRequestBodyBytes');
  t.deepEqual([...TUNABLE_KEYS.values()].sort(), Object.keys(tunableSchemas).sort());
  for (const prefix of ['AUTH_', 'CHAT_', 'REFRESH_', 'WS_TICKET_']) {
    t.true([...TUNABLE_KEYS.values()].some((n) => n.startsWith(prefix)), prefix);
  }
  for (const name of ['MAX_REQUEST_BODY_BYTES', 'CORS_ALLOWED_ORIGINS'] as const) t.true([...TUNABLE_KEYS.values()].includes(name));
});

test('tunables set in the stack become env values; unset ones keep the app default (not emitted)', (t) => {
  const settings = parseStackSettings(raw('prod', { authLockoutThreshold: '3', chatRateLimitMax: 2, refreshReuseGraceSeconds: '0' }));
  t.deepEqual(settings.tunables, {
    AUTH_LOCKOUT_THRESHOLD: '3',
    CHAT_RATE_LIMIT_MAX: '2',
    REFRESH_REUSE_GRACE_SECONDS: '0',
    CORS_ALLOWED_ORIGINS: 'https://play.karaxas.example',
  });
});

test('an out-of-bounds tunable is refused with the stack key named, at the bound the app enforces', (t) => {
  const { min, max } = appBounds('AUTH_LOCKOUT_THRESHOLD');
  t.deepEqual(problems('prod', { authLockoutThreshold: String(max) }), []);
  t.deepEqual(problems('prod', { authLockoutThreshold: String(max + 1) }), [
    `karaxas-backend:authLockoutThreshold: must be at most ${max} (AUTH_LOCKOUT_THRESHOLD)`,
  ]);
  t.deepEqual(problems('prod', { authLockoutThreshold: String(min - 1) }), [
    `karaxas-backend:authLockoutThreshold: must be at least ${min} (AUTH_LOCKOUT_THRESHOLD)`,
  ]);
  const ws = appBounds('WS_TICKET_TTL_SECONDS');
  t.deepEqual(problems('staging', { wsTicketTtlSeconds: String(ws.max + 1) }), [
    `karaxas-backend:wsTicketTtlSeconds: must be at most ${ws.max} (WS_TICKET_TTL_SECONDS)`,
  ]);
  t.deepEqual(problems('prod', { chatRateLimitMax: '2.5' }), ['karaxas-backend:chatRateLimitMax: must be a whole number (CHAT_RATE_LIMIT_MAX)']);
});

test('docs/infra.md lists every tunable with the bounds of app/config/tunables.ts', (t) => {
  const doc = readFileSync(path.join(ROOT, 'docs/infra.md'), 'utf8');
  const section = doc.slice(doc.indexOf('### App tunables'), doc.indexOf('## First-time bootstrap'));
  const documented = new Map<string, { key: string; bounds?: string }>();
  for (const line of section.split('\n').filter((l) => /^\| `[a-z]/.test(l))) {
    const [keys = '', envs = '', bounds = ''] = line.split('|').slice(1).map((c) => c.trim());
    const keyList = [...keys.matchAll(/`(\w+)`/g)].map((m) => m[1]!);
    const envList = [...envs.matchAll(/`(\w+)`/g)].map((m) => m[1]!);
    const boundList = bounds.split(' / ');
    envList.forEach((env, i) => documented.set(env, { key: keyList[i]!, bounds: boundList[i] }));
  }
  t.deepEqual([...documented.keys()].sort(), Object.keys(tunableSchemas).sort());
  for (const [env, { key, bounds }] of documented) {
    t.is(key, tunableKey(env as TunableName), env);
    if (env === 'CORS_ALLOWED_ORIGINS') continue;
    const { min, max } = appBounds(env as TunableName);
    t.regex(bounds ?? '', new RegExp(`^${min}–${max}\\b`), `${env}: docs say ${bounds}, tunables.ts ${min}–${max}`);
  }
});

test("the app's cross-field rules apply, naming the stack keys", (t) => {
  t.deepEqual(problems('prod', { authLockoutBaseSeconds: '600', authLockoutMaxSeconds: '300' }), [
    'karaxas-backend:authLockoutMaxSeconds: must be at least karaxas-backend:authLockoutBaseSeconds (AUTH_LOCKOUT_MAX_SECONDS)',
  ]);
});

test('perimeter settings: deny-list ranges and path throttles are validated', (t) => {
  const armor = (extra: Record<string, unknown>) => ({ armor: { ...prodArmor, ...extra } });
  t.deepEqual(problems('prod', armor({ denySourceRanges: ['198.51.100.0/24', '2001:db8::/32', '203.0.113.7/32'] })), []);
  t.deepEqual(problems('prod', armor({ denySourceRanges: ['198.51.100.0'] })), [
    'karaxas-backend:armor.denySourceRanges.0: must be an IPv4 or IPv6 range in CIDR notation, e.g. 198.51.100.0/24',
  ]);
  t.is(problems('prod', armor({ denySourceRanges: ['300.1.1.0/24'] })).length, 1);
  const throttle = { path: '/auth/login', count: 10, intervalSec: 60 };
  t.deepEqual(problems('prod', armor({ pathThrottles: [throttle] })), []);
  t.regex(problems('prod', armor({ pathThrottles: [{ ...throttle, path: "/auth/login')||true||('" }] }))[0] ?? '', /^karaxas-backend:armor\.pathThrottles\.0\.path: must be a path/);
  t.regex(problems('prod', armor({ pathThrottles: [{ ...throttle, intervalSec: 45 }] }))[0] ?? '', /pathThrottles\.0\.intervalSec: must be one of/);
  t.deepEqual(problems('prod', armor({ pathThrottles: [throttle, throttle] })), [
    'karaxas-backend:armor.pathThrottles.1: duplicate throttle for prefix * /auth/login',
  ]);
});

test('prod must restrict /ops at the edge and route alerts to someone; IAP rules out the admin-audit uptime check', (t) => {
  t.deepEqual(problems('prod', { opsAccess: { allowedSourceRanges: [] } }), [
    'karaxas-backend:opsAccess.allowedSourceRanges: prod must restrict /ops at the edge: list the allowed source ranges or enable opsAccess.iap',
  ]);
  t.deepEqual(problems('staging', { opsAccess: { allowedSourceRanges: [] } }), [], 'staging may leave /ops open at the edge (CI calls it)');
  t.deepEqual(problems('prod', { monitoring: { emails: [] } }), [
    'karaxas-backend:monitoring.notificationChannels: prod alerts must reach someone: set notificationChannels and/or emails',
  ]);
  const iap = { allowedSourceRanges: [], iap: { enabled: true, members: ['group:oncall@karaxas.example'] } };
  t.deepEqual(problems('prod', { opsAccess: iap }), [
    'karaxas-backend:monitoring.adminAuditUptimeCheck: uptime checks cannot sign in through IAP: set false when opsAccess.iap is enabled',
  ]);
  t.deepEqual(problems('prod', { opsAccess: iap, monitoring: { emails: ['oncall@karaxas.example'], adminAuditUptimeCheck: false } }), []);
  t.deepEqual(problems('prod', { opsAccess: { iap: { enabled: true } }, monitoring: { emails: ['a@b.example'], adminAuditUptimeCheck: false } }), [
    'karaxas-backend:opsAccess.iap.members: IAP without members lets nobody through; list the principals',
  ]);
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

test('an out-of-bounds tunable stops the program itself with the key named', async (t) => {
  const { max } = appBounds('CHAT_RATE_LIMIT_MAX');
  const run = await runPlan('staging', { config: { chatRateLimitMax: String(max + 1) } });
  t.is(run.code, 1);
  t.regex(run.stderr, new RegExp(`karaxas-backend:chatRateLimitMax: must be at most ${max} \\(CHAT_RATE_LIMIT_MAX\\)`));
  t.notRegex(run.stderr, /\n\s+at /, 'no stack trace');
});

test('an unknown rule in armor.previewRules is refused with the key named', async (t) => {
  const run = await runPlan('staging', { config: { armor: { ...prodArmor, previewRules: ['waf-sqlii'] } } });
  t.is(run.code, 1);
  t.regex(run.stderr, /karaxas-backend:armor\.previewRules: unknown rule waf-sqlii/);
});
