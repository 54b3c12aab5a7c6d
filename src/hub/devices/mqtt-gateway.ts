import type { IncomingMessage } from 'node:http';
import {
  createServer as createNetServer,
  type AddressInfo,
  type Server,
  type Socket,
} from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { HubTlsIdentity } from '../store/data-dir.js';
import type { Logger } from '../../log/logger.js';
import { formatHostPort } from '../../auth/connection-string.js';
import { listen } from '../../net/listen.js';
import { serveMqttLink, type MqttLinkContext } from './mqtt-device-link.js';

export interface MqttGatewayOptions {
  readonly link: Omit<MqttLinkContext, 'maxPacketBytes' | 'connectTimeoutMs' | 'claim'>;
  /** null: plain TCP (a hub run with --insecure-no-tls). */
  readonly tls: HubTlsIdentity | null;
  /** Count a new TCP connection against the hub's ceilings; false: drop it. */
  readonly admit: (socket: Socket) => boolean;
  /** Time for the TLS handshake and the CONNECT packet, each. */
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/** The MQTT side of the hub: a TLS listener (IoT Hub's 8883) and the WebSocket path. */
export interface MqttGateway {
  /** Take an upgrade to /$iothub/websocket (already routed here by the main endpoint). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Listen for MQTT over TLS; resolves with the bound port. */
  listen(host: string, port: number): Promise<number>;
  close(): void;
}

/** Control packets are small: a CONNECT with a SAS token is well under this. */
const maxPacketBytes = 16 * 1024;

export function createMqttGateway(options: MqttGatewayOptions): MqttGateway {
  /** The connection of each client id; a newer CONNECT with the same id closes the older. */
  const byClientId = new Map<string, (reason: string) => void>();
  const link: MqttLinkContext = {
    maxPacketBytes,
    connectTimeoutMs: options.timeoutMs,
    claim: (deviceId, close) => {
      const older = byClientId.get(deviceId);
      byClientId.set(deviceId, close);
      older?.('replaced by a newer connection with the same client id');
      return () => {
        if (byClientId.get(deviceId) === close) byClientId.delete(deviceId);
      };
    },
    // Last: a spread first and fields after is slow in this V8 (stream-endpoint.ts); the link's
    // options name none of the fields above.
    ...options.link,
  };
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: maxPacketBytes * 4,
    // MQTT over WebSockets names the subprotocol "mqtt"; a client that offers none is served too.
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false),
  });
  const sockets = new Set<Socket>();
  let server: Server | undefined;

  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };

  return {
    upgrade(req, socket, head) {
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('error', (error) =>
          options.logger.debug('mqtt websocket error', { error: error.message }),
        );
        const stream = createWebSocketStream(ws);
        // The stream re-emits the socket's errors; serveMqttLink listens from here on.
        stream.on('error', () => undefined);
        serveMqttLink(link, stream, req.socket, 'mqtt-ws');
      });
    },

    async listen(host, port) {
      const onConnection = (socket: Socket): void => serveMqttLink(link, socket, socket, 'mqtt');
      const srv: Server = options.tls
        ? createTlsServer(
            {
              cert: options.tls.cert,
              key: options.tls.key,
              minVersion: 'TLSv1.2',
              handshakeTimeout: options.timeoutMs,
            },
            (socket: TLSSocket) => onConnection(socket),
          )
        : createNetServer((socket) => onConnection(socket));
      srv.on('connection', (socket: Socket) => {
        socket.on('error', () => undefined);
        if (!options.admit(socket)) {
          socket.destroy();
          return;
        }
        track(socket);
      });
      // A failed or timed-out handshake is destroyed (with a listener Node leaves it to us).
      srv.on('tlsClientError', (error: Error, socket: Duplex) => {
        options.logger.debug('mqtt TLS handshake failed', { error: error.message });
        socket.destroy();
      });
      await listen(
        srv,
        host,
        port,
        'Another process uses that port; pick another with --mqtt-listen, or --no-mqtt.',
      );
      srv.on('error', (error) =>
        options.logger.error('mqtt listener error', { error: error.message }),
      );
      server = srv;
      return (srv.address() as AddressInfo).port;
    },

    close() {
      server?.close();
      for (const socket of sockets) socket.destroy();
      for (const client of wss.clients) client.terminate();
      wss.close();
    },
  };
}

/**
 * Start the gateway's MQTT over TLS listener; resolves with its port, or undefined when the
 * user did not ask for it (`optional`) and its port is taken or not allowed: a second hub on
 * the machine (or anything else on 8883) must not stop this one.
 */
export async function listenMqtt(
  gateway: MqttGateway,
  where: { readonly host: string; readonly port: number; readonly optional?: boolean | undefined },
  logger: Logger,
): Promise<number | undefined> {
  try {
    return await gateway.listen(where.host, where.port);
  } catch (error) {
    const errno = error instanceof Error && (error.cause as NodeJS.ErrnoException | undefined);
    if (!where.optional || !errno || !['EADDRINUSE', 'EACCES'].includes(errno.code ?? ''))
      throw error;
    logger.warn(
      `mqtt over TLS not started: ${formatHostPort(where.host, where.port)} ${errno.code === 'EADDRINUSE' ? 'is in use' : 'is not allowed'}; devices on Azure's SDKs can still use MQTT over WebSockets (/$iothub/websocket). Pick a port with --mqtt-listen, or --no-mqtt`,
    );
    return undefined;
  }
}
