import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Logger } from '../../log/logger.js';
import { closeWebSocket } from '../../net/close.js';
import type { Heartbeat } from '../../net/heartbeat.js';
import { closeCodes, controlProtocol } from '../../protocol/constants.js';
import { maxControlMessageBytes, parseAgentMessage } from '../../protocol/control-messages.js';
import { muxCarrierOriginHeader } from '../../protocol/mux-frames.js';
import type { AttachedLink, DeviceLink } from './device-link.js';
import type { DeviceLinks } from './device-links.js';

/** A control WebSocket as a DeviceLink. */
function webSocketLink(ws: WebSocket, remote: string | undefined): DeviceLink {
  return {
    protocol: 'websocket',
    remote,
    send: (message) => ws.send(JSON.stringify(message)),
    close: (code, reason) => closeWebSocket(ws, code, reason),
  };
}

/**
 * dstream's own device link: the agent's control WebSocket at /devices/{id}/control
 * (dstream.control.v1), on which the hub sends stream requests as JSON control messages and
 * the agent answers them. The MQTT gateway is the other way in (mqtt-gateway.ts).
 */
export class ControlWebSocketGateway {
  readonly #wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    // Bigger frames are read (up to a bound) so they can be refused with a policy violation
    // and a log line, as the protocol says, rather than ws's bare 1009.
    maxPayload: 1024 * 1024,
    handleProtocols: (protocols) => (protocols.has(controlProtocol) ? controlProtocol : false),
  });

  constructor(
    private readonly links: DeviceLinks,
    private readonly heartbeat: Heartbeat,
    private readonly logger: Logger,
    private readonly maxMessageBytes: number = maxControlMessageBytes,
  ) {}

  /**
   * In a cluster: name this node in every control connection's upgrade answer, so that the
   * agent opens its carrier connection here, where its stream offers are made (a carrier
   * connection through the balancer could land on another node).
   */
  announceCarrierOrigin(origin: string): void {
    this.#wss.on('headers', (headers: string[]) =>
      headers.push(`${muxCarrierOriginHeader}: ${origin}`),
    );
  }

  /** Accept an authenticated device's control socket. A newer connection replaces an older one. */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, deviceId: string): void {
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', (error) =>
        this.logger.debug('control socket error', { device: deviceId, error: error.message }),
      );
      this.heartbeat.add(ws);
      const attached = this.links.attach(deviceId, webSocketLink(ws, req.socket.remoteAddress));
      ws.on('message', (data: RawData, isBinary: boolean) =>
        this.#onMessage(ws, deviceId, attached, data, isBinary),
      );
      ws.on('close', (code: number) => attached.closed({ code }));
    });
  }

  #onMessage(
    ws: WebSocket,
    deviceId: string,
    attached: AttachedLink,
    data: RawData,
    isBinary: boolean,
  ): void {
    const buf = data as Buffer;
    const tooBig = buf.length > this.maxMessageBytes;
    const message = isBinary || tooBig ? undefined : parseAgentMessage(buf.toString());
    if (!message) {
      this.logger.warn('device sent an invalid control message; closing its connection', {
        device: deviceId,
        bytes: buf.length,
        reason: isBinary
          ? 'binary frame'
          : tooBig
            ? `over ${this.maxMessageBytes} bytes`
            : 'not a valid message',
      });
      closeWebSocket(ws, closeCodes.policyViolation, 'invalid control message');
      return;
    }
    attached.answer(message);
  }

  /** Terminate every control socket still open (after DeviceLinks.close() asked them to close). */
  close(): void {
    for (const client of this.#wss.clients) client.terminate();
    this.#wss.close();
  }
}
