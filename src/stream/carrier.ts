import type { StreamSocket } from '../net/stream-socket.js';

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
