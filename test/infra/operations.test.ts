/**
 * Operations as code (issue 12) on the prod stack with an incident's worth of stack config:
 * tightened app tunables, a deny list and per-path throttles. One program run under mocks.
 */
import test from 'ava';
import { runOffline, type OfflineRunResult } from '../../infra/offline/run.js';
import { evaluatePolicies } from '../../infra/policy/evaluate.js';
import { policies } from '../../infra/policy/policies.js';
import { TEST_IMAGE, armorRules, cloudRunEnv, ruleKey } from './helpers.js';
import { readStackFile } from './invariants.js';

const prod = readStackFile('prod');
const DENY = Array.from({ length: 12 }, (_, i) => `198.51.100.${i * 8}/29`);
let run: OfflineRunResult;

test.before(async () => {
  run = await runOffline({
    stack: 'prod',
    overrides: {
      'karaxas-backend:image': TEST_IMAGE,
      // The compromise-wave and abuse-burst playbooks (docs/runbook.md):
      'karaxas-backend:authLockoutThreshold': '3',
      'karaxas-backend:authRateLimitMax': '10',
      'karaxas-backend:chatRateLimitMax': '2',
      'karaxas-backend:chatMuteBaseSeconds': '120',
      'karaxas-backend:maxRequestBodyBytes': '32768',
      'karaxas-backend:armor': {
        ...(prod['karaxas-backend:armor'] as object),
        denySourceRanges: [...DENY, '2001:db8:bad::/48'],
        pathThrottles: [
          { path: '/chat', count: 200, intervalSec: 60 },
          { path: '/auth/login', match: 'exact', method: 'POST', count: 10, intervalSec: 60, banDurationSec: 600 },
        ],
      },
    },
  });
});

test('tunables set in stack config reach the Cloud Run env (a new revision), unset ones keep the app default', (t) => {
  const env = cloudRunEnv(run.resources);
  t.is(env.AUTH_LOCKOUT_THRESHOLD, '3');
  t.is(env.AUTH_RATE_LIMIT_MAX, '10');
  t.is(env.CHAT_RATE_LIMIT_MAX, '2');
  t.is(env.CHAT_MUTE_BASE_SECONDS, '120');
  t.is(env.MAX_REQUEST_BODY_BYTES, '32768');
  t.false('AUTH_LOCKOUT_BASE_SECONDS' in env, 'not set in the stack: the app default applies');
  t.false('WS_TICKET_TTL_SECONDS' in env);
  t.is(env.CORS_ALLOWED_ORIGINS, 'https://play.karaxas.example');
  t.deepEqual(run.outputs.tunables, {
    AUTH_LOCKOUT_THRESHOLD: '3',
    AUTH_RATE_LIMIT_MAX: '10',
    CHAT_RATE_LIMIT_MAX: '2',
    CHAT_MUTE_BASE_SECONDS: '120',
    MAX_REQUEST_BODY_BYTES: '32768',
    CORS_ALLOWED_ORIGINS: 'https://play.karaxas.example',
  });
});

test('the deny list becomes deny rules in the 100–499 band of both policies, 10 ranges per rule, before everything', (t) => {
  for (const policy of ['karaxas-prod-armor', 'karaxas-prod-ops-armor']) {
    const rules = armorRules(run.resources, policy);
    const deny = rules.filter((r) => ruleKey(r).startsWith('deny-list-'));
    t.deepEqual(
      deny.map((r) => [ruleKey(r), r.priority, r.action, r.match?.versionedExpr, r.match?.config?.srcIpRanges]),
      [
        ['deny-list-1', 100, 'deny(403)', 'SRC_IPS_V1', DENY.slice(0, 10)],
        ['deny-list-2', 101, 'deny(403)', 'SRC_IPS_V1', [...DENY.slice(10), '2001:db8:bad::/48']],
      ],
      policy,
    );
    t.true(deny.every((r) => !r.preview), 'a deny list is never a preview');
    const others = rules.filter((r) => !ruleKey(r).startsWith('deny-list-'));
    t.true(others.every((r) => r.priority > 499), `${policy}: the deny list is evaluated first`);
  }
});

test('path throttles become per-IP rules between the WAF and the baseline limits, most specific first', (t) => {
  const rules = armorRules(run.resources, 'karaxas-prod-armor');
  const throttles = rules.filter((r) => ruleKey(r).startsWith('path-throttle-'));
  t.deepEqual(
    throttles.map((r) => [r.priority, r.action, r.match?.expr?.expression, r.rateLimitOptions?.rateLimitThreshold, r.rateLimitOptions?.banDurationSec]),
    [
      [2000, 'rate_based_ban', "request.method == 'POST' && request.path == '/auth/login'", { count: 10, intervalSec: 60 }, 600],
      [2010, 'throttle', "request.path.startsWith('/chat')", { count: 200, intervalSec: 60 }, undefined],
    ],
  );
  for (const r of throttles) t.is(r.rateLimitOptions?.enforceOnKey, 'IP');
  const waf = rules.filter((r) => ruleKey(r).startsWith('waf-')).map((r) => r.priority);
  const authBan = rules.find((r) => ruleKey(r) === 'auth-rate-ban')!.priority;
  for (const r of throttles) t.true(Math.max(...waf) < r.priority && r.priority < authBan, 'after the WAF, before the baseline it overrides');
  // The ops policy never gets them: a throttle's "allow" would bypass its default deny.
  t.deepEqual(armorRules(run.resources, 'karaxas-prod-ops-armor').filter((r) => ruleKey(r).startsWith('path-throttle-')), []);
});

test('the incident config still passes every policy of the pack', async (t) => {
  const inputs = run.resources
    .filter((r) => !r.type.startsWith('karaxas:'))
    .map((r) => ({ type: r.type, name: r.name, props: { ...r.outputs, ...r.inputs, id: r.id } }));
  t.deepEqual(await evaluatePolicies(policies, inputs, 'prod'), []);
});
