import { DstreamError } from '../../errors.js';

const wildcard = new Set(['0.0.0.0', '::', '', '[::]']);

/**
 * Validate an operator-given URL of the hub (https://host[:port] or http://host[:port];
 * wss:// and ws:// are taken as the same). `flag` names it in errors.
 */
export function parsePublicUrl(text: string, flag = '--public-url'): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new DstreamError('ERR_USAGE', `${flag} '${text}' is not a URL`, {
      hint: `Example: ${flag} https://hub.example.com:8443`,
    });
  }
  if (url.protocol === 'wss:') url.protocol = 'https:';
  if (url.protocol === 'ws:') url.protocol = 'http:';
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new DstreamError(
      'ERR_USAGE',
      `${flag} must start with https:// or http://, not ${url.protocol}//`,
    );
  if (url.pathname !== '/' || url.search || url.hash || url.username)
    throw new DstreamError('ERR_USAGE', `${flag} must be scheme://host[:port] with no path`);
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
