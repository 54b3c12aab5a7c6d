import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocketServer } from 'ws';
import type { MuxStream } from '../../mux/mux-stream.js';
import type { StreamSocket } from '../../net/stream-socket.js';
import { iotHubErrorBody, type IotHubErrorName } from '../../protocol/iothub-error.js';
import type { MuxOpenRequest } from '../../protocol/mux-frames.js';
import type { Guard } from '../admission/guard.js';
import { refuseUpgrade } from '../base/http-util.js';
import { closeWebSocket } from '../../net/close.js';
import { closeCodes } from '../../protocol/constants.js';

/**
 * One side of a stream arriving at the streaming endpoint, however it came: a WebSocket
 * upgrade to `/bridges/{id}`, or a substream's `open` on a carrier connection. The endpoint
 * checks it the same way either way (token or ticket, throttles, the stream's state) and then
 * refuses it or opens it as a stream socket.
 */
export interface StreamArrival {
  /** `Bearer <stream token>` or `Resume <ticket>` (the upgrade's Authorization header). */
  readonly authorization: string;
  /** The stream protocols it offers, preferred first. */
  readonly offered: readonly string[];
  readonly remote: string | undefined;
  /**
   * What its connection may open, when that connection was authenticated for one side: a
   * service's carrier connection opens service halves, a device's its own device's halves.
   */
  readonly only?: CarrierIdentity | undefined;
  /** Its end holds the stream's first ticket already (a stream offer carried it). */
  readonly ticketed?: boolean | undefined;
  /** It proved a credential: its connection no longer counts as unauthenticated. */
  authenticated(): void;
  /** Refuse it with IoT Hub's error answer. */
  refuse(
    status: number,
    errorCode: IotHubErrorName,
    message: string,
    headers?: Readonly<Record<string, string>>,
  ): void;
  /** Open it as a stream socket, paused; `done` is not called if it went away meanwhile. */
  open(done: (socket: StreamSocket) => void): void;
}

/**
 * Who a carrier connection was authenticated as; a device's may take stream offers (the hub
 * opens the device's halves on it).
 */
export type CarrierIdentity =
  | { readonly side: 'service' }
  | { readonly side: 'device'; readonly deviceId: string; readonly takesOffers?: boolean };

/** True when a half of `deviceId`'s stream, on `side`, may arrive as `arrival`. */
export function arrivalMayBe(arrival: StreamArrival, side: string, deviceId: string): boolean {
  const only = arrival.only;
  if (!only) return true;
  return only.side === side && (only.side === 'service' || only.deviceId === deviceId);
}

/** A stream socket's WebSocket upgrade. The server chooses the protocol (handleProtocols). */
export function upgradeArrival(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  wss: WebSocketServer,
  guard: Guard | undefined,
): StreamArrival {
  return {
    authorization: req.headers.authorization ?? '',
    offered: (req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== ''),
    remote: req.socket.remoteAddress,
    authenticated: () => guard?.markAuthenticated(req.socket),
    refuse: (status, errorCode, message, headers) =>
      refuseUpgrade(socket, status, errorCode, message, headers),
    open: (done) =>
      wss.handleUpgrade(req, socket, head, (ws) => {
        // Hold this side's bytes in the kernel until its owner reads (pairing decides).
        ws.pause();
        done(ws);
      }),
  };
}

/**
 * A substream's `open` on a carrier connection. The carrier connection was authenticated when
 * it was made; the substream is answered with `accept` (the protocol `choose` picks) or
 * `refuse`.
 */
export function substreamArrival(
  stream: MuxStream,
  request: MuxOpenRequest,
  remote: string | undefined,
  choose: (offered: ReadonlySet<string>) => string | false,
  only: CarrierIdentity,
  /** The streaming path to name in the accept (an initiation opened another path). */
  path?: string,
): StreamArrival {
  return {
    authorization: request.authorization,
    offered: request.protocols,
    remote,
    only,
    authenticated: () => undefined,
    refuse: (status, errorCode, message) =>
      stream.refuse(status, iotHubErrorBody(errorCode, message)),
    open: (done) => {
      // The opener left before its answer: nothing to open.
      if (stream.readyState !== stream.CONNECTING) return;
      stream.accept(choose(new Set(request.protocols)) || '', path);
      done(stream);
    },
  };
}

/**
 * A device's half that the hub opened itself on the device's carrier connection (a stream
 * offer, mux-gateway.ts) and the agent accepted: already open, so it is admitted with the
 * device's token of the stream it was offered for, and refused by closing it.
 */
export function offeredArrival(
  stream: MuxStream,
  deviceToken: string,
  remote: string | undefined,
  deviceId: string,
  /** The offer carried the device's first ticket. */
  ticketed: boolean,
): StreamArrival {
  return {
    authorization: `Bearer ${deviceToken}`,
    offered: [stream.protocol],
    remote,
    only: { side: 'device', deviceId },
    ticketed,
    authenticated: () => undefined,
    refuse: (_status, _errorCode, message) => closeWebSocket(stream, closeCodes.shutdown, message),
    open: (done) => {
      // Lost or closed since it was accepted: nothing to open.
      if (stream.readyState !== stream.OPEN) return;
      done(stream);
    },
  };
}
