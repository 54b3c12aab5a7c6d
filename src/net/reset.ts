import type { Duplex } from 'node:stream';

/** A TCP socket (which can be reset) or any other duplex byte stream (destroyed instead). */
export type ResettableStream = Duplex & { resetAndDestroy?: () => unknown };

/**
 * Cut a local connection so the application sees it was cut, not completed: a TCP socket is
 * reset (RST), any other stream destroyed (with `error`, if given).
 *
 * Why not `resetAndDestroy()` alone: libuv refuses to reset a TCP handle whose shutdown (this
 * side's FIN, from `end()`) is still in flight (`uv_tcp_close_reset` returns EINVAL: mixing
 * the two is not allowed), and Node 20 then marks the handle closing without closing it. The
 * descriptor leaks, 'close' never comes, and at exit Node's handle cleanup waits for that
 * handle forever at full CPU. That window is short (the shutdown completes on the next turn
 * of the event loop) but a multiplexed carrier hits it: a peer's end and its reset arrive in
 * one message, so the bridge ends the socket and resets it in the same tick. Such a socket is
 * reset once its shutdown completed ('finish').
 */
export function resetSocket(socket: ResettableStream, error?: Error): void {
  if (!socket.resetAndDestroy) {
    socket.destroy(error);
    return;
  }
  if (socket.destroyed) return;
  // Ended, every write taken by the kernel, not yet finished: the shutdown is in flight.
  // (With writes still queued, the shutdown has not been asked for yet and a reset is fine.)
  if (socket.writableEnded && !socket.writableFinished && socket.writableLength === 0) {
    socket.pause();
    socket.once('finish', () => resetSocket(socket));
    return;
  }
  socket.resetAndDestroy();
}
