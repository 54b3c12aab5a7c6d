import type { RawData } from 'ws';
import type { StreamSocket } from '../net/stream-socket.js';
import { closeCodes, eofFrame, streamProtocol } from '../protocol/constants.js';
import { defaultHighWaterMark, InFlight, TickWriter } from '../net/flow.js';
import { closeWebSocket } from '../net/close.js';
import { resetSocket, type ResettableStream } from '../net/reset.js';

/** How a bridged stream ended. */
export type BridgeEnd =
  /** Both directions finished with a half-close, or the peer closed normally. */
  | 'completed'
  /** The local TCP connection failed or was torn down before finishing. */
  | 'local-error'
  /** The WebSocket closed abnormally (peer lost, hub gone, reset). */
  | 'peer-error';

export interface BridgeResult {
  readonly end: BridgeEnd;
  /** Bytes read from the TCP socket and sent on the WebSocket. */
  readonly bytesSent: number;
  /** Bytes received on the WebSocket and written to the TCP socket. */
  readonly bytesReceived: number;
  /** WebSocket close code seen or sent. */
  readonly closeCode: number;
  readonly error: Error | undefined;
}

export interface BridgeOptions {
  /** Bytes in flight on the WebSocket before the TCP socket is paused. */
  readonly highWaterMark?: number;
  /** Called once, when both the socket and the WebSocket are done. */
  readonly onEnd?: (result: BridgeResult) => void;
  /**
   * Whether the peer takes v1's EOF frames (default: when dstream.stream.v1 was negotiated;
   * a resumable end told by the hub that its peer speaks v1 carries on with them).
   */
  readonly halfClose?: boolean;
}

function isGraceful(code: number): boolean {
  // 1005 is what a peer that calls close() without a code produces: a raw-bytes peer's normal end.
  return code === closeCodes.normal || code === 1005;
}

/**
 * Pipe a TCP socket and an open stream WebSocket into each other until both are done.
 *
 * Preconditions: the WebSocket is OPEN, the socket is connected, was created with
 * allowHalfOpen and is paused, and both already have 'error' listeners.
 *
 * - Back-pressure both ways: socket reads pause while too much is in flight on the WebSocket;
 *   the WebSocket pauses while the socket's write buffer is full.
 * - Half-close: when the socket ends, the peer gets an EOF frame (with the dstream.stream.v1
 *   subprotocol; a raw peer gets a normal close instead); an EOF from the peer ends the socket.
 *   When both directions have ended and the socket has flushed, the WebSocket is closed 1000.
 * - Any abnormal end on one side tears the other down: a WebSocket lost mid-stream resets the
 *   TCP connection (so the application sees an error, not a truncated success), a socket error
 *   closes the WebSocket with 4001.
 */
/** A TCP socket, or any duplex byte stream (stdin/stdout for `dstream connect`). */
export type BridgeableStream = ResettableStream;

/** A bridged stream, for its owner. */
export interface Bridged {
  /**
   * A deliberate end (the user stopped the process): the WebSocket is closed normally at
   * once, and the local side is ended after what is buffered for it.
   */
  stop(): void;
}

export function bridge(
  socket: BridgeableStream,
  ws: StreamSocket,
  options: BridgeOptions = {},
): Bridged {
  const high = options.highWaterMark ?? defaultHighWaterMark;
  const halfClose = options.halfClose ?? ws.protocol === streamProtocol;
  let bytesSent = 0;
  let bytesReceived = 0;
  let localEnded = false; // the socket's read side ended; the peer was told
  let peerEnded = false; // the peer's EOF arrived; the socket's write side was ended
  let wsClosed = false;
  let socketClosed = false;
  let closeCode = 0;
  let error: Error | undefined;
  let reported = false;
  let waitingForDrain = false;

  const report = (end: BridgeEnd): void => {
    if (reported || !wsClosed || !socketClosed) return;
    reported = true;
    options.onEnd?.({ end, bytesSent, bytesReceived, closeCode, error });
  };
  let outcome: BridgeEnd = 'completed';

  const flow = new InFlight(high, high / 2, socket);
  const writer = new TickWriter(socket);

  socket.on('data', (chunk: Buffer) => {
    bytesSent += chunk.length;
    const n = chunk.length;
    flow.add(n);
    ws.send(chunk, { binary: true }, (err) => {
      flow.done(n);
      if (err && !error) error = err;
    });
  });

  socket.on('end', () => {
    localEnded = true;
    if (ws.readyState !== ws.OPEN) return;
    if (halfClose) ws.send(eofFrame);
    // A raw-bytes peer has no half-close: closing normally is the nearest thing.
    else closeWebSocket(ws, closeCodes.normal);
  });

  const onDrain = (): void => {
    waitingForDrain = false;
    ws.resume();
  };

  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (!isBinary) {
      // Text frames are stream frames; the only one defined is EOF. Others are ignored.
      if (halfClose && (data as Buffer).toString() === eofFrame && !peerEnded) {
        peerEnded = true;
        socket.end();
      }
      return;
    }
    if (peerEnded || socket.destroyed) return;
    const buf = data as Buffer;
    bytesReceived += buf.length;
    if (writer.write(buf) && !waitingForDrain) {
      waitingForDrain = true;
      ws.pause();
      socket.once('drain', onDrain);
    }
  });

  socket.on('error', (err) => {
    error ??= err;
  });
  ws.on('error', (err) => {
    error ??= err;
  });

  socket.on('close', (hadError?: boolean) => {
    socketClosed = true;
    socket.off('drain', onDrain);
    const clean = hadError !== true && error === undefined && localEnded && peerEnded;
    if (!clean && !wsClosed) outcome = 'local-error';
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
      closeCode = clean ? closeCodes.normal : closeCodes.localError;
      // The WebSocket may be paused waiting for a 'drain' that will never come now.
      closeWebSocket(ws, closeCode, clean ? undefined : 'local connection closed');
    }
    report(outcome);
  });

  ws.on('close', (code: number) => {
    wsClosed = true;
    if (closeCode === 0) closeCode = code;
    if (socket.destroyed) {
      report(outcome);
      return;
    }
    if (isGraceful(code)) {
      // Normal close: deliver what is buffered, then let go of the socket.
      if (!peerEnded) {
        peerEnded = true;
        socket.end();
      }
      if (socket.writableFinished) socket.destroy();
      else socket.once('finish', () => socket.destroy());
    } else {
      outcome = 'peer-error';
      // Reset rather than FIN, so the application sees the stream was cut, not completed.
      resetSocket(socket, new Error('stream cut'));
    }
  });

  socket.resume();
  // openWebSocket hands sockets over paused (see there); nothing is lost before this point.
  ws.resume();
  return {
    stop: () => {
      // The close handshake's 'close' (graceful) then ends the socket as a normal end does;
      // bytes the local side sends meanwhile have nowhere to go.
      localEnded = true;
      socket.pause();
      closeWebSocket(ws, closeCodes.normal, 'stopped');
    },
  };
}
