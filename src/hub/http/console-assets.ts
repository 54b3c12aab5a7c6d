import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DstreamError } from '../../errors.js';
import { sendError } from '../base/http-util.js';

/** One file of the console, read once when the hub starts. */
interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
  /** index.html is revalidated each time; the rest are named by the page that loads them. */
  readonly cache: string;
}

const types: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/**
 * The console's headers: no script but the hub's own files (no inline script, no eval), no
 * style but its own, requests only to the hub itself, never framed (clickjacking), nothing
 * sniffed, no referrer leaving.
 */
export const consoleSecurityHeaders: Readonly<Record<string, string>> = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** The package's root (this file is in src/hub/http or dist/hub/http). */
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function asset(path: string): Asset {
  const body = readFileSync(path);
  const html = path.endsWith('.html');
  return {
    body,
    type: types[extname(path)] ?? 'application/octet-stream',
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    cache: html ? 'no-cache' : 'public, max-age=300',
  };
}

/**
 * The console's files by their path under /console/: the page and its style (console/), its
 * scripts as `npm run build` compiled them (dist/console/), and uPlot, the chart library. All
 * from this machine: the console works with no route to the internet.
 */
export function loadConsoleAssets(root = packageRoot): Map<string, Asset> {
  const pages = join(root, 'console');
  const scripts = join(root, 'dist', 'console');
  if (!existsSync(join(scripts, 'main.js')))
    throw new DstreamError('ERR_CONSOLE', `the console's scripts are not built (${scripts})`, {
      hint: 'run `npm run build`, or start the hub with --no-console',
    });
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(pages))
    if (name.endsWith('.html') || name.endsWith('.css') || name.endsWith('.svg'))
      assets.set(name, asset(join(pages, name)));
  for (const name of readdirSync(scripts))
    if (name.endsWith('.js')) assets.set(name, asset(join(scripts, name)));
  const require = createRequire(import.meta.url);
  const uplot = dirname(require.resolve('uplot'));
  assets.set('vendor/uPlot.iife.min.js', asset(join(uplot, 'uPlot.iife.min.js')));
  assets.set('vendor/uPlot.min.css', asset(join(uplot, 'uPlot.min.css')));
  assets.set('', assets.get('index.html') ?? asset(join(pages, 'index.html')));
  return assets;
}

/** GET /console/{path}: a console file with its security and cache headers. */
export function serveConsoleAsset(
  assets: ReadonlyMap<string, Asset>,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): void {
  if (req.method !== 'GET' && req.method !== 'HEAD')
    return sendError(res, 405, 'MethodNotAllowed', 'the console is read with GET');
  const found = assets.get(path);
  if (!found) return sendError(res, 404, 'NotFound', 'no such console file');
  const headers = {
    ...consoleSecurityHeaders,
    'content-type': found.type,
    'cache-control': found.cache,
    etag: found.etag,
  };
  if (req.headers['if-none-match'] === found.etag) {
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': String(found.body.length) });
  res.end(req.method === 'HEAD' ? undefined : found.body);
}

/** GET /console: to /console/, so the page's relative paths resolve under it. */
export function redirectToConsole(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(308, { ...consoleSecurityHeaders, location: '/console/' }).end();
}
