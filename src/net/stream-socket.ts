import type { WebSocket } from 'ws';

/**
 * A stream's socket to the hub, as the stream layer uses it: WebSocket semantics (binary
 * messages carry payload, text messages carry stream frames, close codes as in
 * docs/protocol.md; `pause`/`resume` for back-pressure; `ping` for the heartbeat). The
 * WebSocket carrier hands out a `ws` WebSocket; another carrier hands out any object with this
 * surface, and nothing above the carrier changes.
 */
export type StreamSocket = Pick<
  WebSocket,
  | 'protocol'
  | 'url'
  | 'readyState'
  | 'OPEN'
  | 'CONNECTING'
  | 'isPaused'
  | 'send'
  | 'close'
  | 'terminate'
  | 'pause'
  | 'resume'
  | 'ping'
  | 'on'
  | 'once'
  | 'off'
>;
