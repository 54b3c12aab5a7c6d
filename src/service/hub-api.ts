import { formatHostPort, type ServiceConnectionString } from '../auth/connection-string.js';
import { DstreamError } from '../errors.js';
import { hubRequest, type HubTarget } from '../net/hub-client.js';
import { apiVersion } from '../protocol/constants.js';
import { serviceToken } from './credentials.js';
import { errorFromResponse } from './hub-errors.js';

/** One authenticated JSON call to the hub's REST API; errors become DstreamErrors. */
export async function callHubApi(
  credential: ServiceConnectionString,
  target: HubTarget,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const res = await hubRequest(target, {
    method,
    path: `${path}?api-version=${apiVersion}`,
    headers: { authorization: serviceToken(credential) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status >= 300) throw errorFromResponse(res);
  if (res.status === 204 || res.body === '') return undefined;
  try {
    return JSON.parse(res.body);
  } catch (error) {
    throw new DstreamError('ERR_HUB_RESPONSE', 'the hub answered with invalid JSON', {
      cause: error,
    });
  }
}

/**
 * Check that the hub answers GET /healthz over a connection verified as every call is (pinned
 * fingerprint or trusted CA). Needs no credential: it proves the address and the trust, not the key.
 */
export async function checkHubHealth(target: HubTarget, timeoutMs = 10_000): Promise<void> {
  const res = await hubRequest(target, { method: 'GET', path: '/healthz', timeoutMs });
  if (res.status !== 200)
    throw new DstreamError(
      'ERR_HUB_RESPONSE',
      `${formatHostPort(target.host, target.port)} answered /healthz with HTTP ${res.status}; is this a dstream hub?`,
    );
}
