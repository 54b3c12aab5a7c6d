import { EventEmitter } from 'node:events';
import { carryStream } from '../session/stream-carrier.js';
import { resumableStreamProtocol } from '../protocol/constants.js';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { ServiceConnectionString } from '../auth/connection-string.js';
import { describeError, isDstreamError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { listen } from '../net/listen.js';
import type { BridgeResult } from '../net/bridge.js';
import { defaultHeartbeatMs, Heartbeat } from '../net/heartbeat.js';
import { HubConnectionPool, type HubTarget } from '../net/hub-client.js';
import { openServiceStream } from '../service/stream-client.js';
import { closeWebSocket } from '../net/close.js';
import { closeCodes } from '../protocol/constants.js';
import { streamEndFields } from '../log/stream-end.js';

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
  /** Resumable streams with resumable agents (default on): they survive a lost hub link. */
  readonly resume?: boolean | undefined;
  /** How long a suspended stream may take to resume (ms, default 120 s). */
  readonly resumeWindowMs?: number | undefined;
}

export interface ProxyStreamEnd extends Partial<BridgeResult> {
  readonly outcome: 'completed' | 'local-error' | 'peer-error' | 'failed';
  readonly reason?: string;
  readonly durationMs: number;
}

/** Events: 'stream-end' (ProxyStreamEnd). */
export interface Proxy extends EventEmitter {
  readonly port: number;
  readonly activeStreams: number;
  close(): Promise<void>;
}

/**
 * The service proxy: a local TCP listener where every accepted connection gets its own
 * stream to the device. A failed or rejected stream closes only that connection.
 */
export async function startProxy(options: ProxyOptions, logger: Logger): Promise<Proxy> {
  const emitter = new EventEmitter();
  const active = new Set<{
    socket: Socket;
    abort: AbortController;
    ws?: WebSocket;
    carrier?: { close(): void };
  }>();
  const heartbeat = new Heartbeat(options.heartbeatMs ?? defaultHeartbeatMs);
  // Stream initiations reuse verified connections to the hub: one TLS handshake per stream.
  const pool = new HubConnectionPool(options.target);
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true });

  server.on('connection', (socket: Socket) => {
    const entry = { socket, abort: new AbortController() } as {
      socket: Socket;
      abort: AbortController;
      ws?: WebSocket;
      carrier?: { close(): void };
    };
    active.add(entry);
    const started = Date.now();
    const log = logger.child({
      device: options.deviceId,
      stream: options.streamName,
      client: `${socket.remoteAddress}:${socket.remotePort}`,
    });
    // Until the stream exists, a client that leaves cancels the request.
    const onEarlyClose = (): void => entry.abort.abort();
    socket.on('error', () => undefined);
    socket.once('close', onEarlyClose);
    openServiceStream(options.credential, options.target, {
      pool,
      deviceId: options.deviceId,
      streamName: options.streamName,
      connectTimeoutSeconds: options.connectTimeoutSeconds,
      responseTimeoutSeconds: options.responseTimeoutSeconds,
      signal: entry.abort.signal,
      resume: options.resume ?? false,
    }).then(
      (ws) => {
        entry.ws = ws;
        heartbeat.add(ws);
        socket.off('close', onEarlyClose);
        if (socket.destroyed) {
          active.delete(entry);
          closeWebSocket(ws, closeCodes.localError, 'local connection closed');
          return;
        }
        log.debug('stream open', { resumable: ws.protocol === resumableStreamProtocol });
        entry.carrier = carryStream(socket, ws, {
          trust: options.target,
          pool,
          resumeWindowMs: options.resumeWindowMs,
          logger: log,
          onSocket: (next) => {
            entry.ws = next;
            heartbeat.add(next);
          },
          onEnd: (result) => {
            active.delete(entry);
            const durationMs = Date.now() - started;
            log.info('stream ended', streamEndFields(result, durationMs));
            emitter.emit('stream-end', {
              ...result,
              outcome: result.end,
              durationMs,
            } satisfies ProxyStreamEnd);
          },
        });
      },
      (error: unknown) => {
        active.delete(entry);
        socket.off('close', onEarlyClose);
        const reason = isDstreamError(error) ? error.message : describeError(error);
        if (!entry.abort.signal.aborted)
          log.warn('stream failed; closing the connection', { reason });
        // End, not reset: the client sees the connection close at once.
        socket.end();
        socket.destroySoon();
        emitter.emit('stream-end', {
          outcome: 'failed',
          reason,
          durationMs: Date.now() - started,
        } satisfies ProxyStreamEnd);
      },
    );
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
        return active.size;
      },
      close: () =>
        new Promise<void>((resolve) => {
          heartbeat.stop();
          pool.close();
          server.close(() => resolve());
          for (const entry of active) {
            entry.abort.abort();
            // A suspended resumable stream would otherwise go on trying to resume.
            entry.carrier?.close();
            entry.ws?.terminate();
            entry.socket.destroy();
          }
        }),
    }),
  ) as Proxy;
}
