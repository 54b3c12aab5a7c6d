import type { RawData } from 'ws';

/**
 * A stream's socket to the hub, as the stream layer and the hub's relay use it: WebSocket
 * semantics (binary messages carry payload, text messages carry stream frames, close codes as
 * in docs/protocol.md; `pause`/`resume` for back-pressure; `ping` for the heartbeat). The
 * WebSocket carrier hands out a `ws` WebSocket, the multiplexed carrier a substream of its
 * connection (`MuxStream`); nothing above the carrier knows which.
 */
export interface StreamSocket {
  readonly protocol: string;
  readonly url: string;
  readonly readyState: 0 | 1 | 2 | 3;
  readonly CONNECTING: 0;
  readonly OPEN: 1;
  readonly isPaused: boolean;
  send(data: Buffer | string, cb?: (error?: Error) => void): void;
  send(data: Buffer | string, options: { binary?: boolean }, cb?: (error?: Error) => void): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  pause(): void;
  resume(): void;
  ping(): void;
  /**
   * True for a substream: it lives and dies with its carrier connection, which has a heartbeat
   * of its own, so the heartbeat leaves it alone (absent on a WebSocket).
   */
  readonly watchedByConnection?: boolean;
  on(event: 'message', listener: (data: RawData, isBinary: boolean) => void): this;
  on(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  on(event: 'pong', listener: () => void): this;
  once(event: 'message', listener: (data: RawData, isBinary: boolean) => void): this;
  once(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
  once(event: 'pong', listener: () => void): this;
  off(event: string, listener: (...args: never[]) => void): this;
}
