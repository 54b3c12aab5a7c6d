import type { ServiceConnectionString } from '../auth/connection-string.js';
import type { Logger } from '../log/logger.js';
import { HubConnectionPool, type HubTarget } from '../net/hub-client.js';
import { borrowed, type Carrier, type Transport } from '../stream/carrier.js';
import { MuxCarrier } from '../stream/mux-carrier.js';
import { WebSocketCarrier } from '../stream/websocket-carrier.js';
import { serviceToken } from './credentials.js';

export type { Transport } from '../stream/carrier.js';

/**
 * What the service-side listeners of one process share: verified connections to the hub (for
 * initiations and stream sockets) and one carrier, so every `-L` forward and the SOCKS server
 * ride one carrier connection. Closed by its owner once the listeners are.
 */
export interface ServiceLink {
  readonly pool: HubConnectionPool;
  readonly carrier: Carrier;
  close(): void;
}

/** A service link to `target`: a connection pool and the carrier over it. */
export function serviceLink(options: {
  readonly transport: Transport;
  readonly credential: ServiceConnectionString;
  readonly target: HubTarget;
  readonly heartbeatMs?: number | undefined;
  readonly logger: Logger;
}): ServiceLink {
  const pool = new HubConnectionPool(options.target);
  const carrier = serviceCarrier({ ...options, pool });
  // The carrier closes the pool with it (its per-stream fallback holds it).
  return { pool, carrier, close: () => carrier.close() };
}

/** The carrier of the service side's ends (port proxy, SOCKS, connect). */
export function serviceCarrier(options: {
  readonly transport: Transport;
  readonly credential: ServiceConnectionString;
  readonly target: HubTarget;
  readonly pool?: HubConnectionPool | undefined;
  readonly heartbeatMs?: number | undefined;
  readonly logger: Logger;
}): Carrier {
  const { target, pool } = options;
  const perStream = new WebSocketCarrier({ trust: target, pool, hub: target });
  if (options.transport === 'ws') return perStream;
  return new MuxCarrier({
    trust: target,
    pool,
    path: '/mux',
    authorization: () => serviceToken(options.credential),
    fallback: perStream,
    heartbeatMs: options.heartbeatMs,
    logger: options.logger,
  });
}

/**
 * What one listener (port proxy, SOCKS) streams with: the process's shared link, borrowed (its
 * owner closes it), or a link of its own, whose carrier closes with the listener's stream ends.
 */
export function listenerLink(
  options: {
    readonly link?: ServiceLink | undefined;
    readonly transport?: Transport | undefined;
    readonly credential: ServiceConnectionString;
    readonly target: HubTarget;
    readonly heartbeatMs?: number | undefined;
  },
  logger: Logger,
): { readonly pool: HubConnectionPool; readonly carrier: Carrier } {
  if (options.link) return { pool: options.link.pool, carrier: borrowed(options.link.carrier) };
  const own = serviceLink({
    transport: options.transport ?? 'ws',
    credential: options.credential,
    target: options.target,
    heartbeatMs: options.heartbeatMs,
    logger,
  });
  return { pool: own.pool, carrier: own.carrier };
}
