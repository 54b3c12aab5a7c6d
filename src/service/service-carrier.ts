import type { ServiceConnectionString } from '../auth/connection-string.js';
import type { Logger } from '../log/logger.js';
import type { HubConnectionPool, HubTarget } from '../net/hub-client.js';
import type { Carrier, Transport } from '../stream/carrier.js';
import { MuxCarrier } from '../stream/mux-carrier.js';
import { WebSocketCarrier } from '../stream/websocket-carrier.js';
import { serviceToken } from './credentials.js';

export type { Transport } from '../stream/carrier.js';

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
