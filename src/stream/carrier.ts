import type { StreamSocket } from '../net/stream-socket.js';
import type { AbortLike } from '../runtime/hangup.js';

export type { StreamSocket } from '../net/stream-socket.js';

/**
 * What the hub hands each side of a stream it set up: where the stream's socket goes and the
 * one-time token that opens it. The service side gets it in the answer to its stream
 * initiation (IoT Hub's POST /twins/{id}/streams/{name}); the device side in the stream request
 * on its device link.
 */
export interface StreamGrant {
  readonly url: string;
  readonly token: string;
}

/**
 * A stream the service side asks the hub for (IoT Hub's initiation), for a carrier that can
 * ask and open in one step on a connection it keeps (mux-carrier.ts); any other carrier asks
 * with `grant` and opens what it answers.
 */
export interface StreamRequest {
  /** The hub's origin (`wss://host:port`) the request goes to. */
  readonly hub: string;
  readonly deviceId: string;
  readonly streamName: string;
  /** IoT Hub's timeout headers of the initiation (lower-case names), if any. */
  readonly headers: Readonly<Record<string, string>>;
  /** Ask with IoT Hub's POST: the way of a carrier that cannot ask itself, and its fallback. */
  readonly grant: (signal: AbortLike) => Promise<StreamGrant>;
  /**
   * The error for an initiation the hub answered without a stream, from the status and body a
   * POST would have been answered with (an IoT Hub error; 200 with `isAccepted: false`).
   */
  readonly refusal: (status: number, body: string) => Error;
}

/**
 * How a stream's bytes travel between an end and the hub. Both sides use one carrier each:
 * the service side (proxy, SOCKS, connect) opens the socket of a stream the device accepted;
 * the device side (agent) opens the socket of a stream it accepted; either side opens a new
 * socket to resume a suspended stream.
 *
 * A carrier reports through the stream sockets it hands out: a `close` with 1000 (or 1005) is
 * a stream that ended, any other close is a stream that was lost (a resumable stream then
 * suspends and calls `resume`). A carrier that carries many streams over one connection
 * reports that connection's loss as a lost close on each of them.
 *
 * The first implementation, websocket-carrier.ts, opens one TLS WebSocket per stream socket.
 */
export interface Carrier {
  /** A name for logs and metrics ("websocket"). */
  readonly kind: string;
  /**
   * Open the socket of a granted stream, offering the resumable protocol when `resume`.
   * Resolves with it open and paused (its owner resumes it once it listens); rejects with a
   * DstreamError.
   */
  open(grant: StreamGrant, options: OpenOptions): Promise<StreamSocket>;
  /**
   * Ask for a stream and open its socket in one step, where the carrier can (the service
   * side's multiplexed carrier); rejects as `request.grant` or `request.refusal` would.
   */
  initiate?(request: StreamRequest, options: InitiateOptions): Promise<StreamSocket>;
  /**
   * Open a socket that resumes a suspended stream with the hub's latest ticket. Rejects with
   * ResumeRefusedError when the hub refuses the ticket for good (the stream then ends at
   * once); any other rejection is tried again after a backoff.
   */
  resume(url: string, ticket: string): Promise<StreamSocket>;
  /** Let go of what the carrier keeps open for later streams (pooled connections). */
  close(): void;
}

/**
 * How a process's stream sockets reach the hub: `mux`, as substreams of one kept carrier
 * connection (the default between dstream's ends), or `ws`, one TLS WebSocket per stream
 * (Azure's stream socket; also what `mux` falls back to).
 */
export type Transport = 'ws' | 'mux';

export interface OpenOptions {
  /** Offer dstream.stream.v2 (resumable) before dstream.stream.v1. */
  readonly resume: boolean;
}

export interface InitiateOptions extends OpenOptions {
  /** Aborted when the local side leaves first: the hub drops the stream. */
  readonly signal: AbortLike;
}

/**
 * A carrier shared by several owners (the listeners of one proxy process share one carrier
 * connection): this view's close() lets go of nothing; whoever made the carrier closes it.
 */
export function borrowed(carrier: Carrier): Carrier {
  const initiate = carrier.initiate?.bind(carrier);
  return {
    kind: carrier.kind,
    open: (grant, options) => carrier.open(grant, options),
    ...(initiate && { initiate }),
    resume: (url, ticket) => carrier.resume(url, ticket),
    close: () => undefined,
  };
}

/** Ask for a stream with `grant`, or open it as `carrier` can: the service side's way. */
export function initiateWith(
  carrier: Carrier,
  request: StreamRequest,
  options: InitiateOptions,
): Promise<StreamSocket> {
  if (carrier.initiate) return carrier.initiate(request, options);
  return request.grant(options.signal).then((grant) => carrier.open(grant, options));
}
