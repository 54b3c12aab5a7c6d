import type { ServiceConnectionString } from '../auth/connection-string.js';
import { formatHostPort } from '../auth/connection-string.js';
import { expiryIn, signSas } from '../auth/sas.js';
import type { HubTarget } from '../net/hub-client.js';

/** Lifetime of the service tokens the CLI signs for itself. */
const tokenTtlSeconds = 3600;

/** A fresh service SAS token from a connection string. */
export function serviceToken(cs: ServiceConnectionString): string {
  return signSas({
    resource: formatHostPort(cs.hub.host, cs.hub.port),
    key: cs.sharedAccessKey,
    keyName: cs.sharedAccessKeyName,
    expiry: expiryIn(tokenTtlSeconds),
  });
}

/** Where and how to reach the hub named in a connection string, with an optional extra CA. */
export function hubTarget(
  cs: { readonly hub: ServiceConnectionString['hub'] },
  ca?: string,
): HubTarget {
  return { ...cs.hub, ca };
}
