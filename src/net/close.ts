import type { StreamSocket } from './stream-socket.js';

/**
 * Close a WebSocket that may be paused. A paused socket does not read, so it would never see
 * the peer's answer to its close frame and would hang until ws's 30 s close timeout, holding
 * its file descriptor. Every close in dstream goes through here.
 */
export function closeWebSocket(ws: StreamSocket, code: number, reason?: string): void {
  ws.resume();
  if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
}
