import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { describeError, DstreamError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import { MuxSession } from '../../mux/mux-session.js';
import { answerOf, type MuxStream } from '../../mux/mux-stream.js';
import type { Heartbeat } from '../../net/heartbeat.js';
import {
  muxProtocol,
  muxStreamNameHeader,
  type MuxOpenRequest,
} from '../../protocol/mux-frames.js';
import { closeCodes, headers as h } from '../../protocol/constants.js';
import { deviceIdProblem, moduleIdProblem, streamNameProblem } from '../../protocol/identifiers.js';
import { iotHubErrorBody } from '../../protocol/iothub-error.js';
import type { Guard } from '../admission/guard.js';
import { refuseUpgrade } from '../base/http-util.js';
import { Hangup } from '../../runtime/hangup.js';
import {
  offeredArrival,
  substreamArrival,
  type CarrierIdentity,
  type StreamArrival,
} from './stream-arrival.js';
import type { StreamEndpoint } from './stream-endpoint.js';
import { substreamPassable, type Passable, type StreamHops } from './stream-hop.js';
import type { InitiationAnswer, InitiationAsk } from './stream-initiation.js';
import type { DeviceLinks } from '../devices/device-links.js';
import type { StreamRequestMessage } from '../../protocol/control-messages.js';
import { parseIotHubError } from '../../protocol/iothub-error.js';
import { formatStreamFrame } from '../../protocol/stream-frames.js';

export interface MuxGatewayOptions {
  readonly streams: StreamEndpoint;
  /** Pings carrier connections, and drops the silent ones (their substreams close as lost). */
  readonly heartbeat?: Heartbeat | undefined;
  /**
   * Logs, sampled per address, carrier connections that broke the framing; authenticates and
   * throttles the service tokens of initiations.
   */
  readonly guard: Guard;
  /**
   * In a cluster: a substream for another node's stream is passed to that node (one hop: this
   * node opens it there as a stream socket and relays), and one that resumes goes where its
   * stream's halves meet, as stream sockets do.
   */
  readonly cluster?: StreamHops | undefined;
  /**
   * IoT Hub's stream initiation (stream-initiation.ts), for substreams that open the
   * initiation path: ask for a stream and open it in one step (in a cluster the ask is routed
   * to the device's node, and the substream passed to the node that holds the stream).
   */
  readonly initiate?: ((ask: InitiationAsk) => Promise<InitiationAnswer | undefined>) | undefined;
  /**
   * The devices online here: a device's carrier connection that takes stream offers is
   * attached to them, and its stream requests become substreams the hub opens on it.
   */
  readonly devices?: DeviceLinks | undefined;
}

const bridgePath = /^\/bridges\/([^/?#]+)$/;
/** IoT Hub's initiation path, with its module form; a query (api-version) is ignored. */
const initiationPath =
  /^\/twins\/([^/?#]+)(?:\/modules\/([^/?#]+))?\/streams\/([^/?#]+)(?:\?[^#]*)?$/;

function decoded(part: string | undefined): string | undefined {
  if (part === undefined) return undefined;
  try {
    return decodeURIComponent(part);
  } catch {
    return undefined;
  }
}

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
      // The upgraded socket is the WebSocket's: the session may write its frames to it.
      const session = new MuxSession(ws, { role: 'listener', direct: { socket, masked: false } });
      this.#sessions.set(session, identity);
      this.options.heartbeat?.add(ws);
      session.on('close', () => this.#sessions.delete(session));
      session.on('protocol-error', (message) => {
        const fields = { remote, reason: message };
        const text = 'carrier connection closed: it broke the framing';
        this.options.guard.noisy.write('warn', 'mux-protocol', remote, text, fields);
      });
      session.on('open-request', (stream, request) =>
        this.#open(stream, request, req.socket, identity),
      );
      const { devices } = this.options;
      if (identity.side === 'device' && identity.takesOffers && devices) {
        const { deviceId } = identity;
        const detach = devices.attachCarrier(deviceId, {
          offer: (message, ticket, answer, lost) =>
            this.#offer(session, deviceId, remote, message, ticket, answer, lost),
        });
        session.on('close', detach);
      }
    });
  }

  /**
   * Offer a stream to a device on its carrier connection: open the device's half as a
   * substream (its path the streaming path, its headers the stream name, no credential: the
   * connection is the device's), and take the agent's `accept` as its acceptance (the half is
   * admitted to the streaming endpoint with the stream's device token before the answer goes
   * on) and its `refuse` as its rejection, with the refusal's message as the reason.
   */
  #offer(
    session: MuxSession,
    deviceId: string,
    remote: string | undefined,
    message: StreamRequestMessage,
    ticket: string | undefined,
    answer: (accepted: boolean, reason?: string) => void,
    lost: () => void,
  ): () => void {
    const { streams } = this.options;
    let path: string;
    try {
      path = new URL(message.url).pathname;
    } catch {
      path = '';
    }
    const id = decoded(bridgePath.exec(path)?.[1]);
    if (session.closed || id === undefined) {
      lost();
      return () => undefined;
    }
    let stream: MuxStream;
    try {
      stream = session.open(message.url, {
        path,
        authorization: '',
        protocols: [...streams.protocols],
        headers: { [muxStreamNameHeader]: message.streamName },
      });
    } catch {
      // Closing, or at its limit of substreams: the control connection takes the request.
      lost();
      return () => undefined;
    }
    // The device's first ticket, right behind the open (an opener may send before the answer):
    // an agent that accepts resumably sends its resume and bytes at once instead of waiting
    // for the pairing; one that accepts otherwise ignores a stream frame it does not know.
    if (ticket !== undefined) stream.send(formatStreamFrame({ type: 'ticket', ticket }));
    let withdrawn = false;
    void answerOf(stream).then((refused) => {
      if (withdrawn) return;
      if (!refused) {
        const ticketed = ticket !== undefined;
        streams.admit(
          offeredArrival(stream, message.authorizationToken, remote, deviceId, ticketed),
          id,
        );
        return answer(true);
      }
      // Closed before an answer (its carrier connection lost): not the device's answer.
      if (refused.status === 0) return lost();
      answer(
        false,
        parseIotHubError(refused.body).message ??
          `the device refused the stream (${refused.status})`,
      );
    });
    // Withdrawn (timed out, the caller left): an unanswered offer is dropped; an accepted half
    // is the streaming endpoint's, which ends it with its stream.
    return () => {
      if (stream.readyState !== stream.CONNECTING) return;
      withdrawn = true;
      stream.terminate();
    };
  }

  #open(
    stream: MuxStream,
    request: MuxOpenRequest,
    carrier: Socket,
    identity: CarrierIdentity,
  ): void {
    const { streams } = this.options;
    const remote = carrier.remoteAddress;
    const initiation = initiationPath.exec(request.path);
    if (initiation)
      return void this.#initiate(stream, request, carrier, identity, initiation).catch(
        (error: unknown) => this.#initiationFailed(stream, request, remote, error),
      );
    const arrival = this.#arrival(stream, request, remote, identity);
    const id = decoded(bridgePath.exec(request.path)?.[1]);
    if (id === undefined) return arrival.refuse(404, 'NotFound', 'no such streaming path');
    const { cluster } = this.options;
    if (cluster) {
      const passable = (): Passable =>
        substreamPassable(stream, request, { heartbeat: this.options.heartbeat });
      // A resuming half: its ticket is checked here, then it goes where its halves meet.
      if (request.authorization.startsWith('Resume '))
        return streams.admit(arrival, id, (claims) => cluster.meet(claims, passable()));
      if (!streams.isLocal(id)) return cluster.forward(passable(), id);
    }
    streams.admit(arrival, id);
  }

  /**
   * A substream that asks for a stream (IoT Hub's initiation in one frame): the same checks and
   * audit as the POST (stream-initiation.ts); when the device accepts, the substream is the
   * service half, admitted with the service token the POST would have answered. The answers
   * that are not a stream are `refuse` frames with the POST's status and body: an error in IoT
   * Hub's shape, or 200 with `{"isAccepted":false,"reason":...}` when the device rejects it.
   */
  async #initiate(
    stream: MuxStream,
    request: MuxOpenRequest,
    carrier: Socket,
    identity: CarrierIdentity,
    match: RegExpExecArray,
  ): Promise<void> {
    const { streams, initiate } = this.options;
    const refuse = (status: number, body: string): void => stream.refuse(status, body);
    if (identity.side !== 'service')
      return refuse(
        403,
        iotHubErrorBody('Forbidden', "a device's carrier connection cannot ask for streams"),
      );
    if (!initiate)
      return refuse(
        421,
        iotHubErrorBody('MisdirectedRequest', "ask for this stream with IoT Hub's POST"),
      );
    const deviceId = decoded(match[1]);
    const moduleId = match[2] === undefined ? undefined : decoded(match[2]);
    const streamName = decoded(match[3]);
    const problem =
      deviceId === undefined || streamName === undefined || (match[2] !== undefined && !moduleId)
        ? 'the initiation path is not well encoded'
        : (deviceIdProblem(deviceId) ??
          (moduleId === undefined ? undefined : moduleIdProblem(moduleId)) ??
          streamNameProblem(streamName));
    if (problem || deviceId === undefined || streamName === undefined)
      return refuse(400, iotHubErrorBody('ArgumentInvalid', problem ?? 'bad path'));
    // The opener may leave while the device is asked: the stream is dropped then, as when a
    // POST's caller hangs up.
    const gone = new Hangup();
    const onClose = (): void => gone.hangUp();
    stream.once('close', onClose);
    const answer = await initiate({
      deviceId,
      streamName,
      moduleId,
      remote: carrier.remoteAddress,
      via: 'carrier',
      authenticate: () =>
        this.options.guard.serviceToken(carrier, request.authorization, 'ServiceConnect'),
      connectTimeout: request.headers?.[h.connectTimeout],
      responseTimeout: request.headers?.[h.responseTimeout],
      signal: gone,
      protocols: request.protocols,
    });
    stream.off('close', onClose);
    if (!answer || stream.readyState !== stream.CONNECTING) return;
    switch (answer.kind) {
      case 'refused':
        return refuse(answer.status, iotHubErrorBody(answer.errorCode, answer.message));
      case 'rejected':
        return refuse(200, JSON.stringify({ isAccepted: false, reason: answer.reason }));
      case 'accepted': {
        const path = new URL(answer.url).pathname;
        const id = decoded(bridgePath.exec(path)?.[1]);
        if (id === undefined)
          return refuse(500, iotHubErrorBody('ServerError', 'the stream has no streaming path'));
        const granted = Object.assign({}, request, {
          authorization: `Bearer ${answer.serviceToken}`,
        });
        // Routed to a device on another node, whose node holds the stream: passed there.
        const { cluster } = this.options;
        if (cluster && !streams.isLocal(id))
          return cluster.forward(
            substreamPassable(stream, granted, {
              streamingPath: path,
              heartbeat: this.options.heartbeat,
            }),
            id,
          );
        return streams.admit(
          this.#arrival(stream, granted, carrier.remoteAddress, identity, path),
          id,
        );
      }
    }
  }

  /** A substream as the streaming endpoint takes it; `path` names its stream in the accept. */
  #arrival(
    stream: MuxStream,
    request: MuxOpenRequest,
    remote: string | undefined,
    identity: CarrierIdentity,
    path?: string,
  ): StreamArrival {
    const { streams } = this.options;
    return substreamArrival(
      stream,
      request,
      remote,
      (offered) => streams.chooseProtocol(offered),
      identity,
      path,
    );
  }

  /** An initiation that threw, as a POST that failed: the hub keeps serving, the opener hears why. */
  #initiationFailed(
    stream: MuxStream,
    request: MuxOpenRequest,
    remote: string | undefined,
    error: unknown,
  ): void {
    // The cluster's Redis is away (registry reads cannot be made now): not a bug, 503.
    if (error instanceof DstreamError && error.code === 'ERR_HUB_UNAVAILABLE')
      return stream.refuse(503, iotHubErrorBody('ServiceUnavailable', error.message));
    this.logger.error('stream request failed', {
      remote,
      path: request.path.split('?')[0],
      error: describeError(error),
    });
    stream.refuse(500, iotHubErrorBody('ServerError', 'the hub could not take the request'));
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
