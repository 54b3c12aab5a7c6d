import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Logger } from '../../log/logger.js';
import { MuxSession } from '../../mux/mux-session.js';
import type { MuxStream } from '../../mux/mux-stream.js';
import type { Heartbeat } from '../../net/heartbeat.js';
import { muxProtocol, type MuxOpenRequest } from '../../protocol/mux-frames.js';
import { closeCodes } from '../../protocol/constants.js';
import type { Guard } from '../admission/guard.js';
import { refuseUpgrade } from '../base/http-util.js';
import { substreamArrival, type CarrierIdentity } from './stream-arrival.js';
import type { StreamEndpoint } from './stream-endpoint.js';

export interface MuxGatewayOptions {
  readonly streams: StreamEndpoint;
  /** Pings carrier connections, and drops the silent ones (their substreams close as lost). */
  readonly heartbeat?: Heartbeat | undefined;
  /** Logs, sampled per address, carrier connections that broke the framing. */
  readonly guard?: Guard | undefined;
  /**
   * In a cluster, a substream for another node's stream, or one that resumes, is refused with
   * 421: the end opens it as a stream socket, which the cluster forwards or places (one hop).
   */
  readonly cluster: boolean;
}

const bridgePath = /^\/bridges\/([^/?#]+)$/;

/**
 * The hub's side of the multiplexed carrier: takes carrier connections (`dstream.mux.v1`,
 * authenticated by the route before they get here) and hands each substream they open to the
 * streaming endpoint as it would a stream socket's upgrade, with the same checks.
 */
export class MuxGateway {
  readonly #wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    // Frames come batched up to 64 KiB plus headers; a message is never larger than this.
    maxPayload: 1024 * 1024,
    clientTracking: false,
    handleProtocols: (offered) => (offered.has(muxProtocol) ? muxProtocol : false),
  });
  /** Carrier connections open, and who each was authenticated as. */
  readonly #sessions = new Map<MuxSession, CarrierIdentity>();

  constructor(
    private readonly options: MuxGatewayOptions,
    private readonly logger: Logger,
  ) {
    options.streams.on('device-closed', (deviceId) => this.#closeDevice(deviceId));
  }

  /** Carrier connections open now. */
  get size(): number {
    return this.#sessions.size;
  }

  /** Substreams open now, all carrier connections together (tests of leaks). */
  get substreams(): number {
    let n = 0;
    for (const session of this.#sessions.keys()) n += session.size;
    return n;
  }

  /**
   * Complete the upgrade of a carrier connection authenticated as `identity`: a service's
   * (`/mux`), whose substreams may be service halves, or a device's (`/devices/{id}/mux`),
   * whose substreams may be that device's halves.
   */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, identity: CarrierIdentity): void {
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(muxProtocol))
      return refuseUpgrade(
        socket,
        400,
        'ArgumentInvalid',
        `a carrier connection must offer the subprotocol ${muxProtocol}`,
      );
    const remote = req.socket.remoteAddress;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', (error) =>
        this.logger.debug('carrier connection error', { remote, error: error.message }),
      );
      const session = new MuxSession(ws, { role: 'listener' });
      this.#sessions.set(session, identity);
      this.options.heartbeat?.add(ws);
      session.on('close', () => this.#sessions.delete(session));
      session.on('protocol-error', (message) => {
        const fields = { remote, reason: message };
        const text = 'carrier connection closed: it broke the framing';
        if (this.options.guard)
          this.options.guard.noisy.write('warn', 'mux-protocol', remote, text, fields);
        else this.logger.warn(text, fields);
      });
      session.on('open-request', (stream, request) =>
        this.#open(stream, request, remote, identity),
      );
    });
  }

  #open(
    stream: MuxStream,
    request: MuxOpenRequest,
    remote: string | undefined,
    identity: CarrierIdentity,
  ): void {
    const { streams } = this.options;
    const arrival = substreamArrival(
      stream,
      request,
      remote,
      (offered) => streams.chooseProtocol(offered),
      identity,
    );
    const match = bridgePath.exec(request.path);
    let id: string | undefined;
    try {
      id = match?.[1] === undefined ? undefined : decodeURIComponent(match[1]);
    } catch {
      id = undefined;
    }
    if (id === undefined) return arrival.refuse(404, 'NotFound', 'no such streaming path');
    if (
      this.options.cluster &&
      (request.authorization.startsWith('Resume ') || !streams.isLocal(id))
    )
      return arrival.refuse(
        421,
        'MisdirectedRequest',
        'this stream is not carried on this connection; open it as a stream socket',
      );
    streams.admit(arrival, id);
  }

  /**
   * A device was disabled or removed: its carrier connections take no new substreams and close
   * once the ones they carry have ended (the streaming endpoint ends those for good first, so
   * that their ends hear why rather than a lost connection).
   */
  #closeDevice(deviceId: string): void {
    for (const [session, identity] of this.#sessions)
      if (identity.side === 'device' && identity.deviceId === deviceId)
        session.closeWhenIdle(closeCodes.shutdown, 'device disabled or removed');
  }

  /** Close every carrier connection (the hub is shutting down): their substreams are lost. */
  close(): void {
    for (const session of this.#sessions.keys()) session.close(1001, 'hub shutting down');
    this.#sessions.clear();
    this.#wss.close();
  }
}
