/**
 * The ops console (issue #11) in a real browser: Chromium (Debian's, or the one @sparticuz/chromium
 * ships in its npm package) driven by playwright-core against the real server on real PostgreSQL.
 *
 * - Serving: the console's CSP on the HTML and assets, content types, caching (HTML no-store,
 *   content-addressed assets immutable, ETag revalidation), gzip, and no path traversal — every
 *   path outside the boot-time allowlist gets the platform's 404 envelope.
 * - Sign-in with the ops token and with an admin account + TOTP; credentials kept in memory
 *   only (no localStorage, sessionStorage or cookies); sign-out revokes the admin session.
 * - The security-event charts render with data (one Chart.js chart per event type), the
 *   security audit filters by event_type and pages through keyset pages, the admin audit, the
 *   chain verification, the release policies and drains, and the guardrails (equal to what
 *   `karaxas-ops guardrails --verify-chain` computes).
 * - A user registered with the display name and user agent `<img src=x onerror=alert(1)>` shows
 *   up as literal text: no dialog, no console error, no request for `x`, no <img> element.
 *
 * Screenshots of every page go to test-artifacts/console/.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import test, { type ExecutionContext } from 'ava';
import packagedChromium from '@sparticuz/chromium';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { guardrailThresholds, runCli } from '../app/cli/main.js';
import { ASSET_CACHE_CONTROL, CONSOLE_PATH, HTML_CACHE_CONTROL, consoleContentSecurityPolicy } from '../app/ops/console/routes.js';
import { adminActions, releasePlatforms } from '../app/ops/schemas.js';
import { createApi, type Api, type TokenPair } from './support/api.js';
import { useSharedService, type TestService } from './support/service.js';
import { settledStep, totpForStep } from './support/totp.js';

/**
 * The browser: CHROMIUM_PATH when set, else Debian's chromium when installed, else the headless
 * Chromium that the @sparticuz/chromium dev dependency ships inside its npm package (unpacked to
 * the temp folder on first use) — so `npm ci && npm test` needs no system package. Only the binary
 * is borrowed: its recommended flags turn web security off, which would blind the CSP checks here.
 */
const resolveChromium = async (): Promise<string> => {
  if (process.env.CHROMIUM_PATH) {
    if (!existsSync(process.env.CHROMIUM_PATH)) throw new Error(`CHROMIUM_PATH=${process.env.CHROMIUM_PATH} does not exist`);
    return process.env.CHROMIUM_PATH;
  }
  if (existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  return packagedChromium.executablePath();
};
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const root = fileURLToPath(new URL('..', import.meta.url));
const ARTIFACTS = join(root, 'test-artifacts', 'console');

/** The hostile display name and user agent. */
const XSS = '<img src=x onerror=alert(1)>';
/** A hostile revocation reason (lands in admin_action_audit.details). */
const XSS_REASON = '<script>alert(3)</script> incident #7';
const FAILED_LOGINS = 30;

// TRUST_PROXY: the guardrail-breach test sends ops calls from many client addresses (X-Forwarded-For).
const shared = useSharedService({ TRUST_PROXY: 'true' });

// ---------------------------------------------------------------------------------------------
// Seed data (once per file)

type Seed = {
  service: TestService;
  api: Api;
  opsToken: string;
  admin: { id: string; email: string; password: string; secret: string };
};

let seeding: Promise<Seed> | undefined;

const seed = () =>
  (seeding ??= (async () => {
    const service = await shared();
    const api = createApi(service.url);
    const opsToken = service.config.secrets.opsApiToken;
    const hostile = { 'user-agent': XSS };
    const expect = (label: string, response: { status: number; body: unknown }, status: number) => {
      if (response.status !== status) throw new Error(`seed: ${label} answered ${response.status} ${JSON.stringify(response.body)}`);
    };

    // The hostile user: registered and signed in with the hostile user agent, TOTP enrolled, made an admin.
    const account = { email: `console-${randomBytes(4).toString('hex')}@example.test`, password: `pw-${randomBytes(12).toString('base64url')}` };
    const registered = await api.request<{ user: { id: string } }>('POST', '/auth/register', {
      body: { ...account, displayName: XSS },
      headers: hostile,
    });
    expect('register', registered, 201);
    const first = await api.login(account, hostile);
    const enrolled = await api.post<{ secret: string }>('/auth/mfa/totp/enroll', undefined, first.accessToken, hostile);
    expect('enroll', enrolled, 200);
    const activated = await api.post('/auth/mfa/totp/activate', { code: totpForStep(enrolled.body.secret, (await settledStep()) - 1) }, first.accessToken, hostile);
    expect('activate', activated, 200);
    expect('promote', await api.post(`/ops/users/${registered.body.user.id}/role`, { role: 'admin' }, opsToken), 200);

    // More than one page of failed logins (unknown accounts: no lockout).
    await Promise.all(
      Array.from({ length: FAILED_LOGINS }, async (_, index) => {
        const response = await api.post('/auth/login', { email: `nobody-${index}-${randomBytes(3).toString('hex')}@example.test`, password: 'wrong-password' });
        expect('failed login', response, 401);
      }),
    );

    // A victim whose sessions are revoked with a hostile reason (admin audit details).
    const victim = await api.register({ displayName: 'Victim' });
    await api.login(victim);
    expect('revoke', await api.post('/ops/sessions/revoke', { userId: victim.id, reason: XSS_REASON }, opsToken), 200);

    // Release policies (no login gate: the admin must still be able to sign in) and a drain.
    const policy = await api.post<{ policy: { id: string } }>(
      '/ops/release/policies',
      { platform: 'ios', minSupportedVersion: '1.0.0', latestVersion: '1.2.0', forceUpdate: false, loginGate: false },
      opsToken,
    );
    expect('create policy', policy, 201);
    expect('activate policy', await api.post(`/ops/release/policies/${policy.body.policy.id}/activate`, undefined, opsToken), 200);
    expect(
      'publish',
      await api.post('/ops/release/publish', { platform: 'android', version: '2.0.0', minSupportedVersion: '1.5.0', forceUpdate: false, graceSeconds: 0 }, opsToken),
      202,
    );

    return { service, api, opsToken, admin: { id: registered.body.user.id, ...account, secret: enrolled.body.secret } };
  })());

// ---------------------------------------------------------------------------------------------
// The browser

let context: BrowserContext | undefined;
let userDataDir: string | undefined;

test.before(async () => {
  const executablePath = await resolveChromium();
  await mkdir(ARTIFACTS, { recursive: true });
  userDataDir = await mkdtemp(join(tmpdir(), 'karaxas-console-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1440, height: 900 },
    timeout: 60_000,
  });
});

test.after.always(async () => {
  await context?.close().catch(() => undefined);
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
});

type Watched = { page: Page; problems: string[] };

/**
 * A fresh tab on the console, recording everything that would betray executed markup: dialogs
 * (alert), page errors, console errors (CSP violations included) and requests for `x`.
 */
const openConsole = async (service: TestService, options: { allowHttpErrors?: boolean } = {}): Promise<Watched> => {
  const page = await context!.newPage();
  const problems: string[] = [];
  page.on('dialog', (dialog) => {
    problems.push(`dialog: ${dialog.type()} ${dialog.message()}`);
    void dialog.dismiss().catch(() => undefined);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    if (options.allowHttpErrors && /Failed to load resource: the server responded with a status of 4\d\d/.test(message.text())) return;
    problems.push(`console error: ${message.text()}`);
  });
  page.on('request', (request) => {
    if (/\/x$/.test(new URL(request.url()).pathname)) problems.push(`request for ${request.url()}`);
  });
  const response = await page.goto(`${service.url}${CONSOLE_PATH}`);
  if (response?.status() !== 200) throw new Error(`the console answered ${response?.status()}`);
  await page.locator('#sign-in-view').waitFor({ state: 'visible' });
  return { page, problems };
};

const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

/** Evaluates a browser-side expression (a string: the test's TypeScript knows no DOM types). */
const inPage = <T>(page: Page, expression: string) => page.evaluate(expression) as Promise<T>;

const signInWithToken = async (page: Page, token: string) => {
  await page.fill('#token-input', token);
  await page.click('#token-form button[type=submit]');
};

const openTab = async (page: Page, id: string) => {
  await page.click(`#tabs a[data-page="${id}"]`);
  await page.locator(`section[data-page="${id}"]`).waitFor({ state: 'visible' });
};

/** Submits the audit filters and waits for the answer to be rendered. */
const waitForResults = (page: Page, id: string) => page.locator(`#${id}-results[data-state="ready"]`).waitFor({ timeout: 20_000 });

const rowIds = (page: Page, id: string) => page.locator(`#${id}-table tbody tr`).evaluateAll((rows) => rows.map((row) => (row as unknown as { dataset: { id: string } }).dataset.id));

type ChartInfo = { type: string; datasets: number; sum: number; width: number; height: number };
const chartsOf = (page: Page) =>
  inPage<ChartInfo[]>(
    page,
    `[...document.querySelectorAll('#event-charts canvas')].map((canvas) => {
      const chart = window.Chart.getChart(canvas);
      return {
        type: canvas.dataset.eventType,
        datasets: chart ? chart.data.datasets.length : 0,
        sum: chart ? chart.data.datasets.reduce((sum, dataset) => sum + dataset.data.reduce((a, b) => a + Number(b), 0), 0) : 0,
        width: canvas.width,
        height: canvas.height,
      };
    })`,
  );

const assertNothingExecuted = async (t: ExecutionContext, watched: Watched) => {
  const { page, problems } = watched;
  t.deepEqual(problems, [], 'no dialog, page error, console error or request for x');
  t.is(await inPage<number>(page, `document.querySelectorAll('img, script:not([src]), [onerror]').length`), 0, 'no <img>, inline script or onerror attribute in the DOM');
  t.is(await inPage<number>(page, 'localStorage.length + sessionStorage.length'), 0, 'nothing in web storage');
  t.deepEqual(await context!.cookies(), [], 'no cookies');
};

// ---------------------------------------------------------------------------------------------
// Serving

type RawResponse = { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer };

/** A request with the path sent exactly as given (fetch would normalise `..` and `%2e`). */
const raw = (service: TestService, method: string, path: string, headers: Record<string, string> = {}) =>
  new Promise<RawResponse>((resolve, reject) => {
    const url = new URL(service.url);
    const request = httpRequest({ host: url.hostname, port: url.port, method, path, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
    });
    request.on('error', reject);
    request.end();
  });

test.serial('the console is served with its CSP, content types and caching; nothing outside the allowlist is reachable', async (t) => {
  const service = await shared();
  const page = await raw(service, 'GET', CONSOLE_PATH);
  t.is(page.status, 200);
  t.is(page.headers['content-type'], 'text/html; charset=utf-8');
  t.is(page.headers['content-security-policy'], consoleContentSecurityPolicy);
  for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'", "connect-src 'self'"]) {
    t.true(consoleContentSecurityPolicy.split('; ').includes(directive), directive);
  }
  t.false(consoleContentSecurityPolicy.includes('unsafe'), 'no unsafe-inline / unsafe-eval');
  t.is(page.headers['cache-control'], HTML_CACHE_CONTROL);
  t.is(page.headers['x-frame-options'], 'DENY');
  t.is(page.headers['x-content-type-options'], 'nosniff');
  t.is(page.headers['referrer-policy'], 'no-referrer');
  t.truthy(page.headers['x-request-id']);
  const html = page.body.toString('utf8');
  t.notRegex(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
  t.notRegex(html, /<style|\sstyle=|\son[a-z]+=/i, 'no inline style or handler');

  const assetPaths = [...html.matchAll(/(?:src|href)="(\/ops\/console\/assets\/[^"]+)"/g)].map((match) => match[1]!);
  t.true(assetPaths.some((path) => path.endsWith('/vendor/chart.umd.min.js')), 'Chart.js is served by the app');
  t.true(assetPaths.some((path) => path.endsWith('/app.js')));
  t.true(assetPaths.some((path) => path.endsWith('/console.css')));
  const build = /\/ops\/console\/assets\/([0-9a-f]{16})\//.exec(assetPaths[0]!)?.[1];
  t.truthy(build, 'assets live under a content-addressed build folder');
  const base = `${CONSOLE_PATH}/assets/${build}`;
  const expectedTypes: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
  for (const path of [...assetPaths, `${base}/api.js`, `${base}/dom.js`, `${base}/events.js`, `${base}/audit.js`, `${base}/contract.js`]) {
    const asset = await raw(service, 'GET', path);
    t.is(asset.status, 200, path);
    t.is(asset.headers['content-type'], expectedTypes[path.slice(path.lastIndexOf('.'))], path);
    t.is(asset.headers['cache-control'], ASSET_CACHE_CONTROL, path);
    t.is(asset.headers['content-security-policy'], consoleContentSecurityPolicy, path);
    t.is(asset.headers['x-content-type-options'], 'nosniff', path);
    const etag = String(asset.headers.etag);
    t.regex(etag, /^"[0-9a-f]{32}"$/, path);
    t.is((await raw(service, 'GET', path, { 'if-none-match': etag })).status, 304, `${path} revalidates`);
  }
  const chart = await raw(service, 'GET', `${base}/vendor/chart.umd.min.js`, { 'accept-encoding': 'gzip' });
  t.is(chart.headers['content-encoding'], 'gzip');
  t.regex(gunzipSync(chart.body).toString('utf8').slice(0, 400), /Chart\.js v4/);
  const head = await raw(service, 'HEAD', CONSOLE_PATH);
  t.is(head.status, 200);
  t.is(head.body.length, 0);

  // Anything else — traversal in every spelling, source files, other builds — is the platform's 404.
  for (const path of [
    `${base}/../routes.ts`,
    `${base}/%2e%2e/routes.ts`,
    `${base}/..%2froutes.ts`,
    `${base}/vendor/../../../../../package.json`,
    `${base}/vendor/chart.js`,
    `${base}/vendor/%2e%2e%2f%2e%2e%2f%2e%2e%2fpackage.json`,
    `${CONSOLE_PATH}/../../package.json`,
    `${CONSOLE_PATH}/index.html`,
    `${CONSOLE_PATH}/routes.ts`,
    `${CONSOLE_PATH}/assets/app.js`,
    `${CONSOLE_PATH}/assets/0000000000000000/app.js`,
    `${base}/app.js/`,
    `${base}/APP.JS`,
    `${base}//app.js`,
    `${base}/app.js%00.css`,
  ]) {
    const response = await raw(service, 'GET', path);
    t.is(response.status, 404, path);
    const body = JSON.parse(response.body.toString('utf8')) as { error: { code: string; requestId: string } };
    t.is(body.error.code, 'not_found', path);
    t.is(body.error.requestId, String(response.headers['x-request-id']), path);
    t.is(response.headers['content-security-policy'], "default-src 'none';frame-ancestors 'none'", `${path}: the API's CSP`);
  }
  const post = await raw(service, 'POST', CONSOLE_PATH, { 'content-type': 'application/json', 'content-length': '0' });
  t.is(post.status, 405);
  t.is((JSON.parse(post.body.toString('utf8')) as { error: { code: string } }).error.code, 'method_not_allowed');
});

test.serial("the console's copy of the guardrail thresholds, admin actions and platforms matches the server's", async (t) => {
  type Contract = {
    guardrailThresholds: Record<string, { flag: string; default: number | undefined; description: string }>;
    adminActions: string[];
    releasePlatforms: string[];
    bucketByHour: (items: Array<{ createdAt: string; type: string }>, keyOf: (item: { type: string }) => string, now: number, hours?: number) => { starts: number[]; counts: Map<string, number[]> };
  };
  const contract = (await import(pathToFileURL(join(root, 'app/ops/console/assets/contract.js')).href)) as Contract;
  t.deepEqual(
    contract.guardrailThresholds,
    Object.fromEntries(Object.entries(guardrailThresholds).map(([name, spec]) => [name, { flag: spec.flag, default: spec.default, description: spec.description }])),
  );
  t.deepEqual(contract.adminActions, [...adminActions]);
  t.deepEqual(contract.releasePlatforms, [...releasePlatforms]);

  const now = Date.parse('2026-03-01T12:34:56Z');
  const { starts, counts } = contract.bucketByHour(
    [
      { createdAt: '2026-03-01T12:00:00.000Z', type: 'a' },
      { createdAt: '2026-03-01T12:59:59.999Z', type: 'a' },
      { createdAt: '2026-03-01T11:59:59.999Z', type: 'a' },
      { createdAt: '2026-02-28T13:00:00.000Z', type: 'b' },
      { createdAt: '2026-02-28T12:59:59.999Z', type: 'b' },
      { createdAt: '2026-03-01T13:00:00.000Z', type: 'b' },
    ],
    (item) => item.type,
    now,
  );
  t.is(starts.length, 24);
  t.is(new Date(starts[0]!).toISOString(), '2026-02-28T13:00:00.000Z');
  t.is(new Date(starts[23]!).toISOString(), '2026-03-01T12:00:00.000Z');
  t.is(counts.get('a')![23], 2);
  t.is(counts.get('a')![22], 1);
  t.deepEqual(counts.get('b'), [1, ...new Array(23).fill(0)]);
});

// ---------------------------------------------------------------------------------------------
// In the browser

test.serial('ops token: charts with data, filtered and paged security audit, hostile values as text, every page', async (t) => {
  const { service, opsToken, admin } = await seed();
  const watched = await openConsole(service);
  const { page } = watched;
  await shot(page, 'sign-in');

  // The document itself carries the console's CSP.
  const documentResponse = await page.request.get(`${service.url}${CONSOLE_PATH}`);
  t.is(documentResponse.headers()['content-security-policy'], consoleContentSecurityPolicy);

  await signInWithToken(page, opsToken);
  await page.locator('#console-view').waitFor({ state: 'visible' });
  t.is(await page.locator('#identity-name').textContent(), 'ops token');
  t.is(await page.inputValue('#token-input'), '', 'the token does not linger in the form');

  // Security events: one chart per event type with data.
  await page.locator('#event-charts canvas').first().waitFor();
  const charts = await chartsOf(page);
  t.true(charts.length >= 4, JSON.stringify(charts));
  for (const chart of charts) {
    t.is(chart.datasets, 1, chart.type);
    t.true(chart.sum > 0, `${chart.type} has data`);
    t.true(chart.width > 100 && chart.height > 50, `${chart.type} is drawn (${chart.width}×${chart.height})`);
  }
  t.is(new Set(charts.map((chart) => chart.type)).size, charts.length, 'one chart per event type');
  const failures = charts.find((chart) => chart.type === 'login_failed');
  t.is(failures?.sum, FAILED_LOGINS);
  t.truthy(charts.find((chart) => chart.type === 'user_registered'));
  await shot(page, 'events');

  // Security audit: filter by event_type.
  await openTab(page, 'security-audit');
  await waitForResults(page, 'security-audit');
  await page.selectOption('#security-audit-event_type', 'user_registered');
  await page.click('#security-audit-filters button[type=submit]');
  await waitForResults(page, 'security-audit');
  const types = await page.locator('#security-audit-table tbody td.col-event').allTextContents();
  t.true(types.length >= 2, 'the hostile user and the victim registered');
  t.true(types.every((type) => type === 'user_registered'), types.join());
  t.regex((await page.locator('#security-audit-page-info').textContent()) ?? '', /event_type=user_registered/);

  // The hostile user agent is literal text in its row.
  const hostileRow = page.locator('#security-audit-table tbody tr', { has: page.locator('td.col-id', { hasText: admin.id.slice(0, 8) }) });
  t.is(await hostileRow.count(), 1);
  t.is(await hostileRow.locator('td.col-ua').textContent(), XSS);
  await shot(page, 'security-audit');

  // Paging: more failed logins than one page.
  await page.selectOption('#security-audit-event_type', 'login_failed');
  await page.selectOption('#security-audit-limit', '25');
  await page.click('#security-audit-filters button[type=submit]');
  await waitForResults(page, 'security-audit');
  const first = await rowIds(page, 'security-audit');
  t.is(first.length, 25);
  t.true(await page.locator('section[data-page="security-audit"] [data-pager=newer]').isDisabled());
  t.false(await page.locator('section[data-page="security-audit"] [data-pager=older]').isDisabled());
  await page.locator('section[data-page="security-audit"] [data-pager=older]').click();
  await waitForResults(page, 'security-audit');
  const second = await rowIds(page, 'security-audit');
  t.is(second.length, FAILED_LOGINS - 25);
  t.deepEqual(
    first.filter((id) => second.includes(id)),
    [],
    'pages do not overlap',
  );
  t.regex((await page.locator('#security-audit-page-info').textContent()) ?? '', /^Page 2 · 5 events/);
  t.true(await page.locator('section[data-page="security-audit"] [data-pager=older]').isDisabled(), 'the last page');
  await shot(page, 'security-audit-page-2');
  await page.locator('section[data-page="security-audit"] [data-pager=newer]').click();
  await waitForResults(page, 'security-audit');
  t.deepEqual(await rowIds(page, 'security-audit'), first, 'back to the first page');

  // Clicking a user id filters by it: every event of the hostile user shows its user agent as text.
  await page.selectOption('#security-audit-limit', '500');
  await page.click('#security-audit-filters button:has-text("Clear")');
  await waitForResults(page, 'security-audit');
  await page.locator('#security-audit-table td.col-id button', { hasText: admin.id.slice(0, 8) }).first().click();
  await waitForResults(page, 'security-audit');
  t.is(await page.inputValue('#security-audit-user_id'), admin.id);
  const agents = await page.locator('#security-audit-table tbody td.col-ua').allTextContents();
  t.true(agents.length >= 4, agents.join(' | '));
  t.true(agents.filter((agent) => agent === XSS).length >= 4, 'registration, login, enrolment and activation carry the hostile user agent');

  // Admin audit: the role change, the revocation (hostile reason as text), the release actions.
  await openTab(page, 'admin-audit');
  await waitForResults(page, 'admin-audit');
  const actions = await page.locator('#admin-audit-table tbody tr td:nth-child(3)').allTextContents();
  for (const action of ['user.role', 'sessions.revoke', 'release.policy.create', 'release.policy.activate', 'release.publish']) {
    t.true(actions.includes(action), `${action} in ${actions.join()}`);
  }
  const details = await page.locator('#admin-audit-table td.col-details').allTextContents();
  t.true(details.some((text) => text.includes(JSON.stringify(XSS_REASON).slice(1, -1))), details.join(' | '));
  await shot(page, 'admin-audit');
  await page.fill('#admin-audit-action', 'user.role');
  await page.click('#admin-audit-filters button[type=submit]');
  await waitForResults(page, 'admin-audit');
  t.deepEqual(await page.locator('#admin-audit-table tbody tr td:nth-child(3)').allTextContents(), ['user.role']);

  // Chain verification.
  await openTab(page, 'chain');
  await page.locator('#chain-result .verdict').waitFor();
  t.is(await page.getAttribute('#chain-result .verdict', 'data-ok'), 'true');
  t.regex((await page.locator('#chain-result').textContent()) ?? '', /Chain intact/);
  await shot(page, 'chain');

  // Releases: the active policies of every platform and the drain.
  await openTab(page, 'releases');
  await page.locator('#release-drains table').waitFor();
  t.is(await page.locator('#release-policies tbody tr').count(), releasePlatforms.length);
  t.regex((await page.locator('#release-policies tr[data-platform="ios"]').textContent()) ?? '', /active.*1\.0\.0.*1\.2\.0/);
  t.regex((await page.locator('#release-policies tr[data-platform="android"]').textContent()) ?? '', /active.*1\.5\.0.*2\.0\.0/);
  t.regex((await page.locator('#release-policies tr[data-platform="web"]').textContent()) ?? '', /no active policy/);
  t.regex((await page.locator('#release-drains tbody tr').first().textContent()) ?? '', /android.*2\.0\.0.*1\.5\.0/);
  await shot(page, 'releases');

  // Guardrails: what `karaxas-ops guardrails --verify-chain` says.
  await openTab(page, 'guardrails');
  await page.locator('#guardrail-checks table').waitFor();
  let cliOut = '';
  const code = await runCli(['guardrails', '--verify-chain', '--json'], { KARAXAS_URL: service.url, OPS_API_TOKEN: opsToken }, {
    stdout: (text) => void (cliOut += text),
    stderr: () => undefined,
  });
  t.is(code, 0);
  const cli = JSON.parse(cliOut) as { checks: Array<{ flag: string; value: number; threshold: number; breached: boolean }> };
  const rows = await page.locator('#guardrail-checks tbody tr').evaluateAll((elements) =>
    elements.map((row) => (row as unknown as { innerText: string }).innerText.split('\t').map((cell) => cell.trim())),
  );
  t.deepEqual(
    rows.map(([status, flag, value, max]) => ({ flag, value: Number(value), threshold: Number(max), breached: status === 'BREACHED' })),
    cli.checks.map((check) => ({ flag: check.flag, value: check.value, threshold: check.threshold, breached: check.breached })),
  );
  t.is(await page.getAttribute('#guardrail-summary .verdict', 'data-breached'), '0');
  await shot(page, 'guardrails');

  await assertNothingExecuted(t, watched);

  // Signing out drops the data from the page.
  await page.click('#sign-out');
  await page.locator('#sign-in-view').waitFor({ state: 'visible' });
  t.is(await page.locator('#page').innerHTML(), '');
  await page.close();
});

test.serial('admin with TOTP: e-mail, password, code; the hostile display name is literal text; sign-out revokes the session', async (t) => {
  const { service, api, admin } = await seed();
  const watched = await openConsole(service);
  const { page } = watched;

  await page.click('#mode-admin');
  await page.fill('#email-input', admin.email);
  await page.fill('#password-input', admin.password);
  await page.click('#admin-form button[type=submit]');
  await page.locator('#totp-form').waitFor({ state: 'visible' });
  t.is(await page.inputValue('#password-input'), '', 'the password does not linger in the form');
  await shot(page, 'sign-in-totp');

  await page.fill('#totp-input', totpForStep(admin.secret, await settledStep(3_000)));
  const verified = page.waitForResponse((response) => response.url().endsWith('/auth/mfa/verify'));
  await page.click('#totp-form button[type=submit]');
  const pair = (await (await verified).json()) as TokenPair;
  t.truthy(pair.accessToken);
  await page.locator('#console-view').waitFor({ state: 'visible' });

  t.is(await page.locator('#identity-name').textContent(), XSS, 'the display name is shown as text');
  t.is(await page.getAttribute('#identity', 'data-kind'), 'admin');
  t.regex((await page.locator('#identity').textContent()) ?? '', new RegExp(`${admin.email.replace(/[.]/g, '\\.')} · admin, TOTP`));
  // The ops API accepts the admin session: the charts render.
  await page.locator('#event-charts canvas').first().waitFor();
  t.true((await chartsOf(page)).every((chart) => chart.sum > 0));
  await shot(page, 'admin-events');

  await openTab(page, 'security-audit');
  await waitForResults(page, 'security-audit');
  await page.fill('#security-audit-user_id', admin.id);
  await page.click('#security-audit-filters button[type=submit]');
  await waitForResults(page, 'security-audit');
  const types = await page.locator('#security-audit-table tbody td.col-event').allTextContents();
  t.true(types.includes('login_succeeded') && types.includes('role_changed'), types.join());
  await shot(page, 'admin-security-audit');

  await assertNothingExecuted(t, watched);

  await page.click('#sign-out');
  await page.locator('#sign-in-view').waitFor({ state: 'visible' });
  t.regex((await page.locator('#sign-in-notice').textContent()) ?? '', /Signed out/);
  t.is((await api.get('/auth/me', pair.accessToken)).status, 401, 'sign-out revoked the admin session');
  await page.close();
});

test.serial('a wrong ops token is refused on the sign-in page; a player cannot sign in', async (t) => {
  const { service, api } = await seed();
  const watched = await openConsole(service, { allowHttpErrors: true });
  const { page } = watched;

  await signInWithToken(page, `wrong-${randomUUID()}`);
  await page.locator('#sign-in-error .alert').waitFor();
  t.regex((await page.locator('#sign-in-error').textContent()) ?? '', /The token was refused.*unauthorized, HTTP 401/);
  t.true(await page.locator('#console-view').isHidden());
  await shot(page, 'sign-in-refused');

  // A player without a second factor gets a token pair, which the console ends at once.
  const player = await api.register({ displayName: 'Player' });
  await page.click('#mode-admin');
  await page.fill('#email-input', player.email);
  await page.fill('#password-input', player.password);
  await page.click('#admin-form button[type=submit]');
  await page.locator('#sign-in-error .alert').waitFor();
  t.regex((await page.locator('#sign-in-error').textContent()) ?? '', /no second factor/);
  t.true(await page.locator('#console-view').isHidden());
  t.deepEqual(
    watched.problems.filter((problem) => !problem.startsWith('console error')),
    [],
  );
  await page.close();
});

test.serial('a breached guardrail is shown as breached, as the CLI reports it', async (t) => {
  const { service, api, opsToken } = await seed();
  // More refused ops calls in the hour than --max-ops-auth-failures-1h (20) allows, from distinct
  // client addresses (the guard records at most 20 per address per minute).
  const before = (await api.get<{ securityEvents: Record<string, { last1h: number }> }>('/ops/release/metrics', opsToken)).body.securityEvents.ops_auth_failed!.last1h;
  const extra = guardrailThresholds.opsAuthFailures1h.default + 5 - before;
  for (let index = 0; index < extra; index += 1) {
    const refused = await api.get('/ops/release/metrics', `wrong-${index}`, { 'x-forwarded-for': `203.0.113.${index + 1}, 10.0.0.1` });
    t.is(refused.status, 401);
  }
  const watched = await openConsole(service);
  const { page } = watched;
  await signInWithToken(page, opsToken);
  await page.locator('#event-charts canvas').first().waitFor();
  t.truthy((await chartsOf(page)).find((chart) => chart.type === 'ops_auth_failed' && chart.sum >= 25));
  await openTab(page, 'guardrails');
  await page.locator('#guardrail-checks table').waitFor();
  t.is(await page.getAttribute('#guardrail-summary .verdict', 'data-breached'), '1');
  t.is(await page.getAttribute('#guardrail-checks tr[data-guardrail="opsAuthFailures1h"]', 'data-breached'), 'true');
  t.regex((await page.locator('#guardrail-summary').textContent()) ?? '', /1 of 8 guardrails breached.*max-ops-auth-failures-1h/);
  let cliOut = '';
  const code = await runCli(['guardrails', '--verify-chain', '--json'], { KARAXAS_URL: service.url, OPS_API_TOKEN: opsToken }, {
    stdout: (text) => void (cliOut += text),
    stderr: () => undefined,
  });
  t.is(code, 1);
  const cli = JSON.parse(cliOut) as { checks: Array<{ name: string; breached: boolean }> };
  t.deepEqual(
    cli.checks.filter((check) => check.breached).map((check) => check.name),
    ['opsAuthFailures1h'],
  );
  await shot(page, 'guardrails-breached');
  await openTab(page, 'events');
  await shot(page, 'events-breached');
  t.deepEqual(watched.problems, []);
  await page.close();
});
