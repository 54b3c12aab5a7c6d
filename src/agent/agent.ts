import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { DeviceConnectionString } from '../auth/connection-string.js';
import { formatHostPort } from '../auth/connection-string.js';
import { expiryIn, signSas } from '../auth/sas.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { defaultHeartbeatMs, Heartbeat } from '../net/heartbeat.js';
import {
  HubConnectionPool,
  openWebSocket,
  UpgradeRefusedError,
  type HubTrust,
} from '../net/hub-client.js';
import {
  closeCodes,
  controlProtocol,
  resumableStreamProtocol,
  streamProtocol,
} from '../protocol/constants.js';
import { isValidStreamName } from '../protocol/identifiers.js';
import { iotHubErrorBody, parseIotHubError } from '../protocol/iothub-error.js';
import {
  muxCarrierOriginHeader,
  muxStreamNameHeader,
  type MuxOpenRequest,
} from '../protocol/mux-frames.js';
import type { MuxStream } from '../mux/mux-stream.js';
import type { BridgeResult } from '../stream/bridge.js';
import { StreamEnds, type StreamHooks } from '../stream/stream-ends.js';
import { WebSocketCarrier } from '../stream/websocket-carrier.js';
import { MuxCarrier } from '../stream/mux-carrier.js';
import type { Transport } from '../stream/carrier.js';
import { parseHubMessage, type StreamRequestMessage } from '../protocol/control-messages.js';
import type { AllowList, LocalTarget } from './allow-list.js';
import { closeWebSocket } from '../net/close.js';

export interface AgentOptions {
  readonly credential: DeviceConnectionString;
  /** Extra CA for the hub (PEM); the connection string's fingerprint pin wins if present. */
  readonly ca?: string | undefined;
  readonly allow: AllowList;
  /** Reconnect backoff bounds (ms). */
  readonly reconnectMinMs?: number;
  readonly reconnectMaxMs?: number;
  /** Connected this long, the backoff starts again from the bottom (ms). */
  readonly healthyAfterMs?: number;
  /** Ping interval for the control and stream sockets (ms); two missed pings drop one. */
  readonly heartbeatMs?: number;
  /** How long to wait for a local target to accept a connection. */
  readonly dialTimeoutMs?: number;
  /** Resumable streams with resumable services: they survive a lost hub link. Absent: off (the commands turn them on unless --no-resume). */
  readonly resume?: boolean | undefined;
  /** How long a suspended stream may take to resume (ms, default 120 s). */
  readonly resumeWindowMs?: number | undefined;
  /** What all this process's resumable streams keep for replay, together (default 128 MiB). */
  readonly replayBudgetBytes?: number | undefined;
  /** How stream sockets reach the hub (default 'ws'; the agent command defaults to 'mux'). */
  readonly transport?: Transport | undefined;
}

export interface AgentStreamEnd extends BridgeResult {
  readonly streamName: string;
  readonly target: LocalTarget;
  readonly durationMs: number;
}

/** A connected target's socket: its stream's end listens for errors too, and handles them. */
const ignoreError = (): void => undefined;

/** What one dialled stream's end reports to: its methods are the hooks. */
class TargetStreamHooks implements StreamHooks {
  constructor(
    private readonly base: Logger,
    private readonly socket: Socket,
    private readonly streamName: string,
    private readonly target: LocalTarget,
    private readonly emitter: EventEmitter,
  ) {}

  /**
   * The stream's logger, made when a line is written rather than kept: a child logger held by
   * every open stream is about 100 B of heap each.
   */
  get logger(): Logger {
    return this.base.child({ stream: this.streamName });
  }

  onFailed(error: unknown): void {
    this.logger.warn('cannot open the stream socket', { reason: describeError(error) });
    this.socket.destroy();
  }

  onEnd(result: BridgeResult, durationMs: number): void {
    // Object.assign, not a spread followed by fields (slow in this V8: see stream-endpoint.ts).
    this.emitter.emit(
      'stream-end',
      Object.assign({}, result, {
        streamName: this.streamName,
        target: this.target,
        durationMs,
      }) satisfies AgentStreamEnd,
    );
  }
}

/** Events: 'connected', 'disconnected' (reason: string), 'stream-end' (AgentStreamEnd). */
export interface Agent extends EventEmitter {
  readonly connected: boolean;
  /** Streams being set up or relayed right now. */
  readonly activeStreams: number;
  /** Disconnect and stop reconnecting; closes active streams. */
  close(): Promise<void>;
}

const tokenTtlSeconds = 3600;

/**
 * The device agent: holds the control connection (reconnecting as needed), answers stream
 * requests from its allow-list, and pipes each accepted stream to its local target.
 */
export function startAgent(options: AgentOptions, logger: Logger): Agent {
  const cs = options.credential;
  const trust: HubTrust = { tls: cs.hub.tls, fingerprint: cs.hub.fingerprint, ca: options.ca };
  // Stream sockets take a connection verified in advance: the TLS handshake leaves setup's path.
  const pool = new HubConnectionPool(
    Object.assign({}, trust, { host: cs.hub.host, port: cs.hub.port }),
  );
  const scheme = cs.hub.tls ? 'wss' : 'ws';
  const controlUrl = `${scheme}://${formatHostPort(cs.hub.host, cs.hub.port)}/devices/${encodeURIComponent(cs.deviceId)}/control`;
  const minMs = options.reconnectMinMs ?? 500;
  const maxMs = options.reconnectMaxMs ?? 30_000;
  const emitter = new EventEmitter();
  const deviceToken = (): string =>
    signSas({
      resource: `${formatHostPort(cs.hub.host, cs.hub.port)}/devices/${encodeURIComponent(cs.deviceId)}`,
      key: cs.sharedAccessKey,
      expiry: expiryIn(tokenTtlSeconds),
    });
  const perStream = new WebSocketCarrier({ trust, pool, hub: cs.hub });
  // With mux, the device's stream sockets are substreams of one carrier connection it opens
  // beside its control connection (outbound, like everything the agent does), and which
  // takes stream offers: the hub opens the device's halves on it, one frame each way.
  const mux =
    options.transport === 'mux'
      ? new MuxCarrier({
          trust,
          pool,
          path: `/devices/${encodeURIComponent(cs.deviceId)}/mux`,
          authorization: deviceToken,
          fallback: perStream,
          heartbeatMs: options.heartbeatMs,
          logger,
          onOffer: (stream, request) => handleOffer(stream, request),
        })
      : undefined;
  const hubOrigin = new URL(`${scheme}://${formatHostPort(cs.hub.host, cs.hub.port)}`).origin;
  const ends = new StreamEnds({
    carrier: mux ?? perStream,
    resume: options.resume ?? false,
    resumeWindowMs: options.resumeWindowMs,
    replayBudgetBytes: options.replayBudgetBytes,
    heartbeatMs: options.heartbeatMs,
  });
  // Local targets being dialled, before their streams are accepted (the ends hold the rest).
  const dialling = new Set<Socket>();
  let control: WebSocket | undefined;
  let closed = false;
  let attempt = 0;
  let healthyTimer: NodeJS.Timeout | undefined;
  const heartbeat = new Heartbeat(options.heartbeatMs ?? defaultHeartbeatMs, 2, (ws) => {
    if (ws === control) logger.warn('the hub went silent (missed two pings); reconnecting');
  });
  let retryTimer: NodeJS.Timeout | undefined;

  const schedule = (delayMs: number): void => {
    if (closed) return;
    retryTimer = setTimeout(() => void connectOnce(), delayMs);
  };

  const backoff = (): number => {
    // Exponential with full jitter, so a fleet does not reconnect in lockstep.
    const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 16));
    attempt++;
    return Math.round(Math.random() * cap);
  };

  async function connectOnce(): Promise<void> {
    retryTimer = undefined;
    const token = deviceToken();
    let ws: WebSocket;
    // In a cluster the hub names its node: stream offers come on a carrier connection there.
    let carrierOrigin = hubOrigin;
    try {
      ws = await openWebSocket(controlUrl, trust, {
        headers: { authorization: token },
        protocols: [controlProtocol],
        onUpgrade: (headers) => (carrierOrigin = carrierOriginOf(headers, hubOrigin)),
      });
    } catch (error) {
      if (closed) return;
      if (error instanceof UpgradeRefusedError && error.status >= 400 && error.status < 500) {
        // Disabled, removed or a wrong key: hammering will not help. A disabled device (403)
        // is tried again every 10 s, so that `device enable` takes effect soon; a wrong key or
        // a removed device at the cap, since those attempts count as failed authentications.
        const delay = error.status === 403 ? Math.min(maxMs, 10_000) : maxMs;
        logger.error(`the hub refused this device; retrying in ${Math.round(delay / 1000)} s`, {
          device: cs.deviceId,
          status: error.status,
          reason: parseIotHubError(error.body).message ?? error.body,
        });
        attempt = 16;
        schedule(delay);
      } else {
        const delay = backoff();
        logger.warn('cannot connect to the hub; retrying', {
          reason: describeError(error),
          retryInMs: delay,
        });
        schedule(delay);
      }
      return;
    }
    if (closed) {
      closeWebSocket(ws, closeCodes.normal);
      return;
    }
    control = ws;
    heartbeat.add(ws);
    // Reset the backoff only once the connection has proved healthy, so a hub that accepts
    // and then drops at once is not hammered.
    healthyTimer = setTimeout(() => (attempt = 0), options.healthyAfterMs ?? 10_000);
    logger.info('connected to the hub', {
      device: cs.deviceId,
      hub: formatHostPort(cs.hub.host, cs.hub.port),
    });
    emitter.emit('connected');
    // The carrier connection too, so that stream offers can come on it from the first one.
    mux?.standby(carrierOrigin);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const message = isBinary ? undefined : parseHubMessage(data.toString());
      if (!message) {
        logger.warn('ignoring an invalid control message from the hub');
        return;
      }
      handleRequest(ws, message);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      control = undefined;
      clearTimeout(healthyTimer);
      const why = reason.toString() || `code ${code}`;
      emitter.emit('disconnected', why);
      if (closed) return;
      let delay: number;
      if (code === closeCodes.goingAway) {
        // The hub is draining: go elsewhere (through the load balancer) at once.
        attempt = 0;
        delay = 0;
      } else if (code === closeCodes.replaced) {
        // Another agent with this device's key took over. Do not fight it every second.
        attempt = 16;
        delay = maxMs;
      } else {
        delay = backoff();
      }
      logger.warn('lost the hub connection; reconnecting', { reason: why, code, retryInMs: delay });
      schedule(delay);
    });
    ws.resume();
  }

  const answer = (ws: WebSocket, requestId: string, accepted: boolean, reason?: string): void => {
    if (ws.readyState === ws.OPEN)
      ws.send(
        JSON.stringify({
          type: 'stream-response',
          requestId,
          accepted,
          ...(reason ? { reason } : {}),
        }),
      );
  };

  /** How a stream request came, and how to answer it. */
  interface Asked {
    readonly streamName: string;
    /** Tell the hub no, with a reason the service's caller sees. */
    reject(reason: string): void;
    /** The target is connected: tell the hub yes and carry the stream. */
    accept(socket: Socket, hooks: StreamHooks): void;
  }

  /** A stream request on the control connection: answered there; the agent opens its socket. */
  function handleRequest(ws: WebSocket, request: StreamRequestMessage): void {
    dialFor({
      streamName: request.streamName,
      reject: (reason) => answer(ws, request.requestId, false, reason),
      accept: (socket, hooks) => {
        answer(ws, request.requestId, true);
        if (closed) return void socket.destroy();
        ends.start(
          socket,
          () => Promise.resolve({ url: request.url, token: request.authorizationToken }),
          hooks,
        );
      },
    });
  }

  /**
   * A stream offer: the hub opened this stream's device half on the carrier connection; the
   * answer to its `open` is the answer to the request, and the substream is the stream socket.
   */
  function handleOffer(stream: MuxStream, request: MuxOpenRequest): void {
    if (closed)
      return stream.refuse(503, iotHubErrorBody('ServiceUnavailable', 'the agent is stopping'));
    const streamName = request.headers?.[muxStreamNameHeader];
    if (streamName === undefined || !isValidStreamName(streamName))
      return stream.refuse(
        400,
        iotHubErrorBody('ArgumentInvalid', 'an offer without a stream name'),
      );
    const socket = dialFor({
      streamName,
      reject: (reason) => stream.refuse(403, iotHubErrorBody('Forbidden', reason)),
      accept: (local, hooks) => {
        stream.off('close', withdrawn);
        // The hub gave up meanwhile (timed out, the service left), or this agent is closing.
        if (closed || stream.readyState !== stream.CONNECTING) return void local.destroy();
        const offered = new Set(request.protocols);
        stream.accept(
          options.resume && offered.has(resumableStreamProtocol)
            ? resumableStreamProtocol
            : offered.has(streamProtocol)
              ? streamProtocol
              : '',
        );
        ends.carry(local, stream, hooks);
      },
    });
    // Withdrawn before the target answered: stop dialling.
    const withdrawn = (): void => void socket?.destroy();
    if (socket) stream.once('close', withdrawn);
  }

  /**
   * Look the stream name up in the allow-list and dial its target first, so that a refused
   * target becomes a rejection with its reason; the socket being dialled, if any.
   */
  function dialFor(asked: Asked): Socket | undefined {
    const { streamName } = asked;
    const target = options.allow.get(streamName);
    const log = logger.child({ stream: streamName });
    if (!target) {
      log.warn('rejected a stream request: not in the allow-list');
      // Name what is allowed (the caller holds ServiceConnect on this device already), so
      // the person at the other end sees the mismatch at once: '22' asked, 'ssh' allowed.
      const names = [...options.allow.keys()];
      const shown = names.slice(0, 10).join(', ') + (names.length > 10 ? ', ...' : '');
      asked.reject(`stream '${streamName}' is not allowed on this device (it allows: ${shown})`);
      return undefined;
    }
    // noDelay as an option: set once the socket connects (one setsockopt); setNoDelay() on the
    // socket being dialled sets it before connect() and Node sets it again after, two a stream.
    const socket = connect({
      host: target.host,
      port: target.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    dialling.add(socket);
    const dialTimer = setTimeout(
      () => socket.destroy(new Error('timed out')),
      options.dialTimeoutMs ?? 10_000,
    );
    const dialled = (): void => {
      clearTimeout(dialTimer);
      dialling.delete(socket);
    };
    // Both listeners go once the target answered, and with them the dial's state: what they
    // hold would otherwise stay for the stream's life.
    const onDialError = (error: Error): void => {
      dialled();
      const reason = `cannot connect to ${formatHostPort(target.host, target.port)}: ${describeError(error)}`;
      log.warn('rejected a stream request', { reason });
      asked.reject(reason);
    };
    socket.on('error', onDialError);
    // Destroyed without an error (the request was withdrawn, the agent is closing).
    socket.once('close', dialled);
    socket.once('connect', () => {
      dialled();
      socket.off('error', onDialError);
      socket.off('close', dialled);
      // From here the stream's end handles the socket's errors; its hooks are one object.
      socket.on('error', ignoreError);
      asked.accept(socket, new TargetStreamHooks(logger, socket, streamName, target, emitter));
    });
    return socket;
  }

  void connectOnce();

  // defineProperties, not Object.assign: assign would copy the getters' values once.
  return Object.defineProperties(
    emitter,
    Object.getOwnPropertyDescriptors({
      get connected() {
        return control !== undefined;
      },
      get activeStreams() {
        return ends.size + dialling.size;
      },
      close: async (): Promise<void> => {
        closed = true;
        if (retryTimer) clearTimeout(retryTimer);
        clearTimeout(healthyTimer);
        heartbeat.stop();
        const waits: Promise<unknown>[] = [];
        const c = control;
        if (c) {
          waits.push(new Promise((r) => c.once('close', r)));
          closeWebSocket(c, closeCodes.normal, 'agent shutting down');
          // A hub that does not answer the close (stopped, unreachable) gets 2 s.
          setTimeout(() => c.terminate(), 2000).unref();
        }
        ends.close();
        for (const s of dialling) s.destroy();
        await Promise.all(waits);
      },
    }),
  ) as Agent;
}

/**
 * Where the agent's carrier connection goes: the node the hub named in its answer to the
 * control connection (a cluster), if it is a URL of the same scheme as the hub's (a TLS hub
 * never sends the agent to a plain one; the node is verified as the hub is); else the hub.
 */
function carrierOriginOf(headers: IncomingHttpHeaders, hubOrigin: string): string {
  const named = headers[muxCarrierOriginHeader];
  if (typeof named !== 'string') return hubOrigin;
  try {
    const url = new URL(named);
    return url.protocol === new URL(hubOrigin).protocol ? url.origin : hubOrigin;
  } catch {
    return hubOrigin;
  }
}
