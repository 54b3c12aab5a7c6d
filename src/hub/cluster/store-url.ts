import { DstreamError } from '../../errors.js';

/**
 * Check a --redis value at the edge: `redis://[user:pass@]host:port[/db]`, `rediss://...`
 * (TLS) or `unix:/path`. Returns the parsed URL.
 */
export function parseStoreUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new DstreamError(
      'ERR_USAGE',
      `--redis ${text}: expected redis://HOST:PORT, rediss://HOST:PORT or unix:/PATH`,
    );
  }
  if (url.protocol === 'unix:') {
    if (!url.pathname.startsWith('/'))
      throw new DstreamError('ERR_USAGE', `--redis ${text}: a unix socket needs an absolute path`);
    return url;
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    throw new DstreamError(
      'ERR_USAGE',
      `--redis ${text}: expected redis://HOST:PORT, rediss://HOST:PORT or unix:/PATH`,
    );
  return url;
}

/** Redis URLs in logs and errors without their password. */
export function redactedUrl(url: URL): string {
  if (!url.password) return url.href;
  const copy = new URL(url.href);
  copy.password = '***';
  return copy.href;
}
