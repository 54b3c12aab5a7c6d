import type { ServiceConnectionString } from '../auth/connection-string.js';
import { formatHostPort } from '../auth/connection-string.js';
import { expiryIn, signSas } from '../auth/sas.js';
import type { HubTarget } from '../net/hub-client.js';

/** Lifetime of the service tokens the CLI signs for itself. */
const tokenTtlSeconds = 3600;

/** A token is signed anew once less than this much of its life is left. */
const renewWithinSeconds = 900;

/** The token last signed for each connection string, and its expiry. */
const signed = new WeakMap<ServiceConnectionString, { token: string; expiry: number }>();

/**
 * A service SAS token from a connection string, valid for at least 15 more minutes: one token
 * is signed and reused until then (as Azure's SDKs renew theirs), rather than an HMAC per
 * request here and a different token for the hub to check each time.
 */
export function serviceToken(cs: ServiceConnectionString, nowMs: number = Date.now()): string {
  const last = signed.get(cs);
  if (last && last.expiry - nowMs / 1000 > renewWithinSeconds) return last.token;
  const expiry = expiryIn(tokenTtlSeconds, nowMs);
  const token = signSas({
    resource: formatHostPort(cs.hub.host, cs.hub.port),
    key: cs.sharedAccessKey,
    keyName: cs.sharedAccessKeyName,
    expiry,
  });
  signed.set(cs, { token, expiry });
  return token;
}

/** Where and how to reach the hub named in a connection string, with an optional extra CA. */
export function hubTarget(
  cs: { readonly hub: ServiceConnectionString['hub'] },
  ca?: string,
): HubTarget {
  return { ...cs.hub, ca };
}
