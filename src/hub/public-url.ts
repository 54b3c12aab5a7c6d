import { DstreamError } from '../errors.js';

const wildcard = new Set(['0.0.0.0', '::', '', '[::]']);

/** Validate an operator-given public URL (https://host[:port] or http://host[:port]). */
export function parsePublicUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new DstreamError('ERR_USAGE', `--public-url '${text}' is not a URL`, {
      hint: 'Example: --public-url https://hub.example.com:8443',
    });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new DstreamError(
      'ERR_USAGE',
      `--public-url must start with https:// or http://, not ${url.protocol}//`,
    );
  if (url.pathname !== '/' || url.search || url.hash || url.username)
    throw new DstreamError('ERR_USAGE', '--public-url must be scheme://host[:port] with no path');
  return url;
}

/**
 * The address clients are told to use: the operator's --public-url, else the listen
 * address (localhost for a wildcard bind) with the bound port.
 */
export function derivePublicUrl(listenHost: string, port: number, tls: boolean): URL {
  const host = wildcard.has(listenHost) ? 'localhost' : listenHost;
  const bracketed = host.includes(':') ? `[${host}]` : host;
  return new URL(`${tls ? 'https' : 'http'}://${bracketed}:${port}`);
}

/** host and port of a public URL, with the scheme's default port filled in. */
export function hostAndPort(url: URL): { host: string; port: number } {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return { host, port };
}
