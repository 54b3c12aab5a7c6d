import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { ServiceConnectionString } from '../auth/connection-string.js';
import { describeError, isDstreamError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { listen } from '../net/listen.js';
import type { HubTarget } from '../net/hub-client.js';
import { streamRequest } from '../service/stream-client.js';
import { StreamEnds, type StreamEnd, type StreamHooks } from '../stream/stream-ends.js';
import type { BridgeResult } from '../stream/bridge.js';
import { listenerLink, type ServiceLink, type Transport } from '../service/service-carrier.js';

export interface ProxyOptions {
  readonly credential: ServiceConnectionString;
  readonly target: HubTarget;
  readonly deviceId: string;
  /** The stream name: the remote port ("22") or a named target ("ssh"). */
  readonly streamName: string;
  readonly bindHost: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly connectTimeoutSeconds?: number;
  readonly responseTimeoutSeconds?: number;
  /** Ping interval for stream sockets (ms). */
  readonly heartbeatMs?: number;
  /** Resumable streams with resumable agents: they survive a lost hub link. Absent: off (the commands turn them on unless --no-resume). */
  readonly resume?: boolean | undefined;
  /** How long a suspended stream may take to resume (ms, default 120 s). */
  readonly resumeWindowMs?: number | undefined;
  /** What all this process's resumable streams keep for replay, together (default 128 MiB). */
  readonly replayBudgetBytes?: number | undefined;
  /** How streams reach the hub (default 'ws'; the commands default to 'mux'). */
  readonly transport?: Transport | undefined;
  /**
   * The process's service link, shared with its other listeners (one carrier connection for
   * all; `transport` is the link's then); its owner closes it. Absent: one of its own.
   */
  readonly link?: ServiceLink | undefined;
}

/** How one of the proxy's streams ended. */
export type ProxyStreamEnd = StreamEnd;

/** What one client connection's stream reports to: its methods are the hooks (one object). */
class ClientStreamHooks implements StreamHooks {
  readonly #started = Date.now();
  /** Where the client connected from, read once: the socket forgets it when it closes. */
  readonly #address: string | undefined;
  readonly #port: number | undefined;

  constructor(
    private readonly base: Logger,
    private readonly options: ProxyOptions,
    private readonly socket: Socket,
    private readonly emitter: EventEmitter,
  ) {
    this.#address = socket.remoteAddress;
    this.#port = socket.remotePort;
  }

  /**
   * The stream's logger, made when a line is written rather than kept: a child logger and its
   * fields held by every open stream are about 200 B of heap each.
   */
  get logger(): Logger {
    return this.base.child({
      device: this.options.deviceId,
      stream: this.options.streamName,
      client: `${this.#address}:${this.#port}`,
    });
  }

  onEnd(result: BridgeResult, durationMs: number): void {
    // Object.assign, not a spread followed by fields (slow in this V8: see stream-endpoint.ts).
    this.emitter.emit(
      'stream-end',
      Object.assign({}, result, { outcome: result.end, durationMs }) satisfies ProxyStreamEnd,
    );
  }

  onFailed(error: unknown, abandoned: boolean): void {
    const reason = isDstreamError(error) ? error.message : describeError(error);
    if (!abandoned) this.logger.warn('stream failed; closing the connection', { reason });
    // End, not reset: the client sees the connection close at once.
    this.socket.end();
    this.socket.destroySoon();
    this.emitter.emit('stream-end', {
      outcome: 'failed',
      reason,
      durationMs: Date.now() - this.#started,
    } satisfies ProxyStreamEnd);
  }
}

/** Events: 'stream-end' (ProxyStreamEnd). */
export interface PortProxy extends EventEmitter {
  readonly port: number;
  readonly activeStreams: number;
  close(): Promise<void>;
}

/**
 * The port proxy (`dstream proxy`): a local TCP listener where every accepted connection gets its own
 * stream to the device. A failed or rejected stream closes only that connection.
 */
export async function startProxy(options: ProxyOptions, logger: Logger): Promise<PortProxy> {
  const emitter = new EventEmitter();
  // Stream initiations and stream sockets reuse verified connections to the hub: one TLS
  // handshake per stream.
  const { pool, carrier } = listenerLink(options, logger);
  const ends = new StreamEnds({
    carrier,
    resume: options.resume ?? false,
    resumeWindowMs: options.resumeWindowMs,
    replayBudgetBytes: options.replayBudgetBytes,
    heartbeatMs: options.heartbeatMs,
  });
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true });

  // Every connection asks for the same stream: one request (it holds no state of its own),
  // not a new one and its parsed hub address per connection.
  const request = streamRequest(options.credential, options.target, {
    pool,
    deviceId: options.deviceId,
    streamName: options.streamName,
    connectTimeoutSeconds: options.connectTimeoutSeconds,
    responseTimeoutSeconds: options.responseTimeoutSeconds,
  });
  server.on('connection', (socket: Socket) => {
    socket.on('error', () => undefined);
    ends.start(socket, request, new ClientStreamHooks(logger, options, socket, emitter));
  });

  await listen(server, options.bindHost, options.port, 'Pick another --local-port.');
  server.on('error', (error) => logger.error('proxy listener error', { error: error.message }));
  const port = (server.address() as AddressInfo).port;

  // defineProperties, not Object.assign: assign would copy the getters' values once.
  return Object.defineProperties(
    emitter,
    Object.getOwnPropertyDescriptors({
      port,
      get activeStreams() {
        return ends.size;
      },
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          ends.close();
        }),
    }),
  ) as PortProxy;
}
