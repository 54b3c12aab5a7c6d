import type { WebSocket } from 'ws';
import { describeError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import type { MuxStream } from '../../mux/mux-stream.js';
import type { Heartbeat } from '../../net/heartbeat.js';
import { openWebSocket, UpgradeRefusedError, type HubTrust } from '../../net/hub-client.js';
import { iotHubErrorBody, type IotHubErrorName } from '../../protocol/iothub-error.js';
import type { MuxOpenRequest } from '../../protocol/mux-frames.js';
import type { ResumeClaims } from '../../protocol/resume-ticket.js';
import { webSocketScheme } from '../base/http-util.js';
import { relay } from './relay.js';
import type { StreamArrival } from './stream-arrival.js';

/** Set on a stream socket one node passes to another: a forwarded socket is never forwarded again. */
export const forwardedHeader = 'x-dstream-forwarded-by';

/** The node a stream socket is passed to, and how. */
export interface Hop {
  /** The node's own URL. */
  readonly url: URL;
  /** How to verify it (nodes share the certificate). */
  readonly trust: HubTrust;
  /** This node's id, for the forwarded marker (one hop at most). */
  readonly fromNode: string;
  readonly logger: Logger;
}

/**
 * One side of a stream that reached a node other than its stream's: a stream socket's upgrade
 * (its request replayed to the node and its bytes copied) or a substream of a carrier
 * connection (the node opens it there as a stream socket of its own and relays); forward.ts.
 */
export interface Passable {
  /** Hold its bytes while the cluster finds where it goes. */
  hold(): void;
  /** Pass it to another node, one hop; the node there checks its token or ticket. */
  passTo(hop: Hop): void;
  /** Refuse it with IoT Hub's error answer. */
  readonly refuse: StreamArrival['refuse'];
}

/** The cluster's part in placing stream sockets (cluster/node.ts implements it). */
export interface StreamHops {
  /** Pass a side of another node's stream to that node. */
  forward(side: Passable, streamId: string): void;
  /** Place a resuming side whose ticket verified: 'here', or passed (or refused) elsewhere. */
  meet(claims: ResumeClaims, side: Passable): Promise<'here' | 'elsewhere'>;
}

export interface SubstreamHopOptions {
  /**
   * The stream's streaming path (`/bridges/{id}`) when the substream opened another (the
   * initiation path): opened on the node, and named in the substream's accept.
   */
  readonly streamingPath?: string | undefined;
  /** Pings the stream socket to the node (a node that went silent ends the relay). */
  readonly heartbeat?: Heartbeat | undefined;
}

/**
 * A substream of a carrier connection (`request`: its path, credential and protocols) that
 * reached a node other than its stream's: this node
 * opens the stream's side on that node as a stream socket of its own (the substream's
 * credential and protocols, marked forwarded: the node there checks the token or ticket and is
 * never asked to forward again), answers the substream as that node answered, and relays the
 * two frame for frame (its `ticket` and `plain` frames are the other node's to send, so they
 * pass; that node drops the ones an end forges). One hop, as stream sockets are forwarded.
 */
export function substreamPassable(
  stream: MuxStream,
  request: MuxOpenRequest,
  options: SubstreamHopOptions,
): Passable {
  const refuse = (status: number, errorCode: IotHubErrorName, message: string): void => {
    if (stream.readyState === stream.CONNECTING)
      stream.refuse(status, iotHubErrorBody(errorCode, message));
  };
  return {
    // The opener's early bytes wait in its substream, within its window.
    hold: () => undefined,
    refuse,
    passTo: (hop) => {
      const path = options.streamingPath ?? request.path;
      openWebSocket(`${webSocketScheme(hop.url)}//${hop.url.host}${path}`, hop.trust, {
        headers: { authorization: request.authorization, [forwardedHeader]: hop.fromNode },
        protocols: request.protocols,
        timeoutMs: 5000,
      }).then(
        (ws: WebSocket) => {
          ws.on('error', (error) =>
            hop.logger.debug('forwarded substream: error towards the owner node', {
              error: error.message,
            }),
          );
          // The opener left while the node answered: the node ends its side when this closes.
          if (stream.readyState !== stream.CONNECTING) return void ws.terminate();
          stream.accept(ws.protocol, options.streamingPath);
          options.heartbeat?.add(ws);
          relay(stream, ws, { passThrough: true });
        },
        (error: unknown) => {
          if (error instanceof UpgradeRefusedError) {
            if (stream.readyState === stream.CONNECTING) stream.refuse(error.status, error.body);
            return;
          }
          hop.logger.warn('cannot reach the node that holds a stream', {
            node: hop.url.host,
            error: describeError(error),
          });
          refuse(502, 'BadGateway', 'the hub node holding this stream cannot be reached');
        },
      );
    },
  };
}
