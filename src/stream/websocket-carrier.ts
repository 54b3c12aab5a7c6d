import type { WebSocket } from 'ws';
import { formatHostPort } from '../auth/connection-string.js';
import { DstreamError } from '../errors.js';
import {
  openWebSocket,
  UpgradeRefusedError,
  type HubConnectionPool,
  type HubTrust,
} from '../net/hub-client.js';
import { resumableStreamProtocol, streamProtocol } from '../protocol/constants.js';
import { parseIotHubError } from '../protocol/iothub-error.js';
import type { Carrier, OpenOptions, StreamGrant } from './carrier.js';
import { ResumeRefusedError } from './resumable-bridge.js';

/** The stream socket protocols dstream's ends offer: resumable first, then v1. */
export const endProtocols = (resume: boolean): readonly string[] =>
  resume ? [resumableStreamProtocol, streamProtocol] : [streamProtocol];

export interface WebSocketCarrierOptions {
  /** How the hub is verified. */
  readonly trust: HubTrust;
  /** Verified connections made in advance, so the TLS handshake leaves a stream's setup. */
  readonly pool?: HubConnectionPool | undefined;
  /**
   * The hub's own address (the connection string's): a resumption that cannot reach the
   * node its stream ran on tries here next, so that in a cluster the balancer takes it to a
   * node that lives (the node it reaches finds where the stream's halves meet).
   */
  readonly hub?: { readonly host: string; readonly port: number } | undefined;
}

/**
 * The first carrier: one WebSocket per stream socket, over a TLS connection to the hub (taken
 * from the pool when the URL names the pool's hub). The protocol is IoT Hub's: the token goes
 * in `Authorization: Bearer`, a resumption's ticket in `Authorization: Resume`.
 */
export class WebSocketCarrier implements Carrier {
  readonly kind = 'websocket';

  constructor(private readonly options: WebSocketCarrierOptions) {}

  async open(grant: StreamGrant, options: OpenOptions): Promise<WebSocket> {
    try {
      return await openWebSocket(grant.url, this.options.trust, {
        headers: { authorization: `Bearer ${grant.token}` },
        protocols: endProtocols(options.resume),
        pool: this.options.pool,
      });
    } catch (error) {
      if (error instanceof UpgradeRefusedError)
        throw new DstreamError(
          'ERR_HUB_RESPONSE',
          `the streaming endpoint refused the connection (${error.status})`,
          { cause: error },
        );
      throw error;
    }
  }

  async resume(url: string, ticket: string): Promise<WebSocket> {
    try {
      return await this.#resumeAt(url, ticket);
    } catch (error) {
      const viaHub = this.#viaHub(url);
      // Refused for good, or the stream already runs through the hub's address: no second try.
      if (error instanceof ResumeRefusedError || viaHub === undefined) throw error;
      return this.#resumeAt(viaHub, ticket);
    }
  }

  /** `url`'s path on the hub's own address, when that is another address. */
  #viaHub(url: string): string | undefined {
    const hub = this.options.hub;
    if (!hub) return undefined;
    let moved: URL;
    try {
      moved = new URL(url);
    } catch {
      return undefined;
    }
    const origin = moved.origin;
    moved.host = formatHostPort(hub.host, hub.port);
    return moved.origin === origin ? undefined : moved.href;
  }

  async #resumeAt(url: string, ticket: string): Promise<WebSocket> {
    try {
      return await openWebSocket(url, this.options.trust, {
        headers: { authorization: `Resume ${ticket}` },
        protocols: [resumableStreamProtocol],
        pool: this.options.pool,
      });
    } catch (error) {
      // Refused (not unreachable): the hub will not take this ticket again; retrying would
      // only count against this address.
      if (
        error instanceof UpgradeRefusedError &&
        error.status >= 400 &&
        error.status < 500 &&
        error.status !== 429
      )
        throw new ResumeRefusedError(
          parseIotHubError(error.body).message ?? `answered ${error.status}`,
        );
      throw error;
    }
  }

  close(): void {
    this.options.pool?.close();
  }
}
