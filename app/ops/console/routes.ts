/**
 * The ops console (issue #11): a static single-page app served by the API at `GET /ops/console`.
 * The page signs in with the ops token or an admin account with TOTP and calls the ops API
 * (contract §7) from the browser with `fetch`; this module only serves its files.
 *
 * - Not JSON routes, so not `defineRoute`: one Koa middleware mounted after the router (see
 *   app/server.ts). Requests still pass through the whole platform chain first — request id,
 *   access log, error envelope (an unknown asset path falls through to the envelope's 404),
 *   secure headers, CORS, body size guard.
 * - Path traversal is impossible by construction: the files are read once, at boot, into a map
 *   keyed by their exact URL path; a request path is only ever looked up in that map, never
 *   joined to a directory.
 * - Every console response replaces the API's `default-src 'none'` policy with the console's
 *   CSP ({@link consoleContentSecurityPolicy}): same-origin scripts, styles and fetches only, no
 *   inline script or style, no framing, no form submission. `require-trusted-types-for 'script'`
 *   makes the browser refuse any string assigned to an HTML sink (innerHTML & co.), so user data
 *   can only ever reach the page as text.
 * - The assets live under `/ops/console/assets/<build>/`, where `<build>` is a hash of their
 *   content: they are cached as immutable, and a deploy changes every URL at once. The HTML is
 *   `no-store` and names the current build.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Middleware } from 'koa';
import { AppError } from '../../http/errors.js';
import type { AppState } from '../../http/route.js';

/** Where the console is served. */
export const CONSOLE_PATH = '/ops/console';

/** The console's Content-Security-Policy (every console response, HTML and assets). */
export const consoleContentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

/** Cache-Control of the HTML (it names the current asset build) and of the content-addressed assets. */
export const HTML_CACHE_CONTROL = 'no-store';
export const ASSET_CACHE_CONTROL = 'public, max-age=31536000, immutable';

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Asset file names served from the assets folder (flat: no sub-folders, no dot files). */
const ASSET_NAME = /^[a-z0-9][a-z0-9_-]*\.(?:js|css|svg|png)$/;

type Asset = {
  body: Buffer;
  gzipped: Buffer | undefined;
  type: string;
  etag: string;
  cacheControl: string;
};

const hashOf = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

const makeAsset = (body: Buffer, type: string, cacheControl: string): Asset => {
  const compressible = type.startsWith('text/') || type === 'image/svg+xml';
  const gzipped = compressible && body.length > 1024 ? gzipSync(body, { level: 9 }) : undefined;
  return {
    body,
    gzipped: gzipped !== undefined && gzipped.length < body.length ? gzipped : undefined,
    type,
    etag: `"${hashOf(body).slice(0, 32)}"`,
    cacheControl,
  };
};

export type OpsConsoleOptions = {
  /** The folder holding index.html and assets/ (default: next to this module). */
  directory?: string;
  /** Chart.js's UMD build (default: resolved from the installed `chart.js` package). */
  chartJsFile?: string;
};

/** The files of the console by URL path, and the current build id. Read once; throws when a file is missing. */
export const loadConsoleAssets = (options: OpsConsoleOptions = {}) => {
  const directory = options.directory ?? dirname(fileURLToPath(import.meta.url));
  const chartJsFile = options.chartJsFile ?? join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js');

  const files = new Map<string, Buffer>();
  const assetsDirectory = join(directory, 'assets');
  for (const entry of readdirSync(assetsDirectory, { withFileTypes: true })) {
    if (entry.isFile() && ASSET_NAME.test(entry.name)) files.set(entry.name, readFileSync(join(assetsDirectory, entry.name)));
  }
  files.set('vendor/chart.umd.min.js', readFileSync(chartJsFile));

  const build = hashOf(
    [...files.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, body]) => `${name}\0${hashOf(body)}`)
      .join('\n'),
  ).slice(0, 16);
  const assetBase = `${CONSOLE_PATH}/assets/${build}`;

  const assets = new Map<string, Asset>();
  for (const [name, body] of files) {
    const type = contentTypes[extname(name)];
    if (type === undefined) throw new Error(`ops console: no content type for ${name}`);
    assets.set(`${assetBase}/${name}`, makeAsset(body, type, ASSET_CACHE_CONTROL));
  }
  const html = readFileSync(join(directory, 'index.html'), 'utf8').replaceAll('%ASSET_BASE%', assetBase);
  if (html.includes('%')) {
    // A placeholder left over would be a typo in index.html; fail at boot rather than serve a broken page.
    const leftover = /%[A-Z_]+%/.exec(html);
    if (leftover) throw new Error(`ops console: unknown placeholder ${leftover[0]} in index.html`);
  }
  const page = makeAsset(Buffer.from(html, 'utf8'), contentTypes['.html']!, HTML_CACHE_CONTROL);
  assets.set(CONSOLE_PATH, page);
  assets.set(`${CONSOLE_PATH}/`, page);
  return { assets, build, assetBase };
};

/**
 * The console's middleware: answers GET/HEAD for the known paths, 405 for other methods on
 * them, and passes every other request on (to the platform's 404 envelope).
 */
export const createOpsConsole = (options: OpsConsoleOptions = {}): Middleware<AppState> => {
  const { assets } = loadConsoleAssets(options);
  return async (ctx, next) => {
    const asset = assets.get(ctx.path);
    if (asset === undefined) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      throw new AppError('method_not_allowed', { headers: { Allow: 'GET, HEAD' } });
    }
    ctx.set('Content-Security-Policy', consoleContentSecurityPolicy);
    ctx.set('Cache-Control', asset.cacheControl);
    ctx.set('Cross-Origin-Resource-Policy', 'same-origin');
    ctx.vary('Accept-Encoding');
    ctx.set('ETag', asset.etag);
    ctx.status = 200;
    if (ctx.fresh) {
      ctx.status = 304;
      return;
    }
    ctx.type = asset.type;
    if (asset.gzipped !== undefined && ctx.acceptsEncodings('gzip', 'identity') === 'gzip') {
      ctx.set('Content-Encoding', 'gzip');
      ctx.body = asset.gzipped;
    } else {
      ctx.body = asset.body;
    }
  };
};
