import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { ServiceConnectionString } from '../auth/connection-string.js';
import { DstreamError, describeError, isDstreamError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { listen } from '../net/listen.js';
import type { HubTarget } from '../net/hub-client.js';
import { deviceIdProblem } from '../protocol/identifiers.js';
import { streamRequest } from '../service/stream-client.js';
import { StreamEnds, type StreamHooks } from '../stream/stream-ends.js';
import { listenerLink, type ServiceLink, type Transport } from '../service/service-carrier.js';

export interface SocksOptions {
  readonly credential: ServiceConnectionString;
  readonly target: HubTarget;
  readonly bindHost: string;
  /** 0 picks a free port. */
  readonly port: number;
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

/**
 * What one SOCKS client's stream reports to: its methods are the hooks (one object per stream,
 * not closures and their context), its logger made when a line is written.
 */
class SocksStreamHooks implements StreamHooks {
  constructor(
    private readonly base: Logger,
    private readonly socket: Socket,
    readonly deviceId: string,
    readonly streamName: string,
  ) {}

  get logger(): Logger {
    return this.base.child({ device: this.deviceId, stream: this.streamName });
  }

  /** The stream socket is open: the client hears that its CONNECT succeeded. */
  onOpen(): void {
    this.socket.write(reply(socksReply.succeeded));
  }

  onFailed(error: unknown, abandoned: boolean): void {
    if (!abandoned) this.fail(error);
  }

  /** Tell the client why, in SOCKS's terms, and end its connection. */
  fail(error: unknown): void {
    const code = isDstreamError(error) ? error.code : undefined;
    this.logger.warn('SOCKS request failed', {
      reason: isDstreamError(error) ? error.message : describeError(error),
    });
    this.socket.end(reply(replyFor(code)));
  }
}

/** SOCKS5 reply codes (RFC 1928 6). */
export const socksReply = {
  succeeded: 0,
  generalFailure: 1,
  notAllowed: 2,
  hostUnreachable: 4,
  connectionRefused: 5,
  ttlExpired: 6,
  commandNotSupported: 7,
  addressTypeNotSupported: 8,
} as const;

/** How a failure to open the stream maps onto a SOCKS reply. */
export function replyFor(code: ErrorCode | undefined): number {
  switch (code) {
    case 'ERR_DEVICE_NOT_FOUND':
    case 'ERR_DEVICE_OFFLINE':
    case 'ERR_DEVICE_DISABLED':
      return socksReply.hostUnreachable;
    case 'ERR_STREAM_REJECTED':
      return socksReply.connectionRefused;
    case 'ERR_FORBIDDEN':
      return socksReply.notAllowed;
    case 'ERR_TIMEOUT':
      return socksReply.ttlExpired;
    default:
      return socksReply.generalFailure;
  }
}

const reply = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);

/** Read exactly what `need(buffer)` asks for from a paused socket: a byte count, or -1 when malformed. */
function readUntil(
  socket: Socket,
  need: (buf: Buffer) => number,
  timeoutMs = 10_000,
): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const done = (result: Buffer | undefined): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      resolve(result);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const onClose = (): void => done(undefined);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const n = need(buf);
      if (n < 0 || buf.length > 600) return done(undefined);
      if (n > 0 && buf.length >= n) {
        // Anything past the message belongs to what follows: give it back, after pausing and
        // dropping our listener (unshift on a flowing socket would hand it straight back to us).
        done(buf.subarray(0, n));
        if (buf.length > n) socket.unshift(buf.subarray(n));
      }
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}

/** Length of a complete greeting in `b`, 0 if more is needed, -1 if it is not SOCKS5. */
function greetingLength(b: Buffer): number {
  if (b.length >= 1 && b[0] !== 5) return -1;
  return b.length >= 2 ? 2 + (b[1] ?? 0) : 0;
}

/** Length of a complete CONNECT request in `b`, 0 if more is needed, -1 if malformed. */
function requestLength(b: Buffer): number {
  if (b.length >= 1 && b[0] !== 5) return -1;
  if (b.length < 5) return 0;
  switch (b[3]) {
    case 1:
      return 10;
    case 3:
      return 7 + (b[4] ?? 0);
    case 4:
      return 22;
    default:
      return -1;
  }
}

/**
 * A SOCKS5 server (no authentication; loopback by default) where the requested host is a device
 * ID and the port is the remote port: any SOCKS-aware client reaches any device by name.
 * Failures map onto SOCKS reply codes (unknown or offline device: host unreachable; rejected
 * stream: connection refused; missing right: not allowed).
 */
export async function startSocksProxy(
  options: SocksOptions,
  logger: Logger,
): Promise<{ port: number; close(): Promise<void> } & EventEmitter> {
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
  // Connections still in the SOCKS handshake (the stream ends hold the rest).
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true });
  server.on('connection', (socket: Socket) => {
    socket.on('error', () => undefined);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    void serve(socket);
  });

  async function serve(socket: Socket): Promise<void> {
    const greeting = await readUntil(socket, greetingLength);
    if (!greeting) return void socket.destroy();
    if (!greeting.subarray(2).includes(0)) {
      socket.end(Buffer.from([5, 0xff]));
      return;
    }
    socket.write(Buffer.from([5, 0]));
    const request = await readUntil(socket, requestLength);
    if (!request) return void socket.destroy();
    if (request[1] !== 1) return void socket.end(reply(socksReply.commandNotSupported));
    let host: string;
    if (request[3] === 3) host = request.subarray(5, 5 + (request[4] ?? 0)).toString('latin1');
    else if (request[3] === 1) host = [...request.subarray(4, 8)].join('.');
    else return void socket.end(reply(socksReply.addressTypeNotSupported));
    const port = request.readUInt16BE(request.length - 2);
    const hooks = new SocksStreamHooks(logger, socket, host, String(port));
    const problem = deviceIdProblem(host);
    if (problem) return hooks.fail(new DstreamError('ERR_DEVICE_NOT_FOUND', problem));
    sockets.delete(socket);
    ends.start(
      socket,
      streamRequest(options.credential, options.target, {
        pool,
        deviceId: host,
        streamName: hooks.streamName,
      }),
      hooks,
    );
  }

  await listen(server, options.bindHost, options.port, 'Pick another --socks port.');
  server.on('error', (error) => logger.error('SOCKS listener error', { error: error.message }));
  const emitter = new EventEmitter();
  return Object.defineProperties(
    emitter,
    Object.getOwnPropertyDescriptors({
      port: (server.address() as AddressInfo).port,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          ends.close();
          for (const s of sockets) s.destroy();
        }),
    }),
  ) as { port: number; close(): Promise<void> } & EventEmitter;
}
