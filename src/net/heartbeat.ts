import type { StreamSocket } from './stream-socket.js';

/**
 * Keeps WebSockets alive through NATs and load balancers that drop idle flows, and finds
 * peers that went silent (host gone, link cut, process stopped): every `intervalMs` each
 * socket is pinged; one that has sent nothing (no pong, no message) for `maxMissed` pings in a
 * row is terminated, which its owner sees as an abnormal close. One timer serves every socket.
 */
export class Heartbeat {
  readonly #missed = new Map<StreamSocket, number>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    readonly intervalMs: number,
    private readonly maxMissed = 2,
    private readonly onDead?: (ws: StreamSocket) => void,
  ) {
    this.#timer = setInterval(() => this.#tick(), intervalMs);
    // A heartbeat alone must not keep a process alive.
    this.#timer.unref();
  }

  /** Watch `ws` until it closes (a substream: its carrier connection is watched instead). */
  add(ws: StreamSocket): void {
    // Its pings would only ping the same connection again, and a listener on every message and
    // an entry here per substream cost memory (about 1 KiB of the hub's 5.3 KiB per open
    // stream, 0.5 KiB of the agent's and the proxy's 7.7: heap snapshots, 2,000 streams)
    // and a map update per message.
    if (ws.watchedByConnection) return;
    this.#missed.set(ws, 0);
    const heard = (): void => {
      if (this.#missed.has(ws)) this.#missed.set(ws, 0);
    };
    ws.on('pong', heard);
    ws.on('message', heard);
    ws.once('close', () => {
      this.#missed.delete(ws);
      ws.off('pong', heard);
      ws.off('message', heard);
    });
  }

  #tick(): void {
    for (const [ws, missed] of this.#missed) {
      // A socket paused for back-pressure does not read, so it cannot see pongs: a slow reader
      // is not a dead peer. Keep pinging (for the NAT) but do not count it.
      if (ws.isPaused) {
        if (ws.readyState === ws.OPEN) ws.ping();
        continue;
      }
      if (missed >= this.maxMissed) {
        this.#missed.delete(ws);
        this.onDead?.(ws);
        ws.terminate();
        continue;
      }
      this.#missed.set(ws, missed + 1);
      if (ws.readyState === ws.OPEN) ws.ping();
    }
  }

  /** Stop the timer (sockets are left as they are). */
  stop(): void {
    clearInterval(this.#timer);
    this.#missed.clear();
  }
}

/** Default heartbeat interval: well under the 60 s idle timeout of common NATs and balancers. */
export const defaultHeartbeatMs = 20_000;
