import { sendBytes } from './client.js';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** A device-side service the bench measures through the tunnel and directly. */
export interface TargetServer {
  readonly port: number;
  close(): Promise<void>;
}

async function serve(onSocket: (socket: Socket) => void): Promise<TargetServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    onSocket(socket);
  });
  server.maxConnections = 100_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', 1024, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface SinkServer extends TargetServer {
  /** Resolves with the byte count and end time of the next connection that ends. */
  nextEnd(): Promise<{ readonly bytes: number; readonly endedAt: bigint }>;
  /** Bytes received so far on each open connection, in arrival order. */
  liveCounts(): number[];
}

/** Reads and counts everything; ends its side when the client does. */
export async function startSink(): Promise<SinkServer> {
  const waiting: ((r: { bytes: number; endedAt: bigint }) => void)[] = [];
  const live = new Map<Socket, { bytes: number }>();
  const server = await serve((socket) => {
    const count = { bytes: 0 };
    live.set(socket, count);
    socket.on('data', (d: Buffer) => (count.bytes += d.length));
    socket.on('end', () => {
      const endedAt = process.hrtime.bigint();
      live.delete(socket);
      socket.end();
      waiting.shift()?.({ bytes: count.bytes, endedAt });
    });
    socket.on('close', () => live.delete(socket));
  });
  return {
    ...server,
    nextEnd: () => new Promise((resolve) => waiting.push(resolve)),
    liveCounts: () => [...live.values()].map((c) => c.bytes),
  };
}

/** Reads an 8-byte big-endian length, sends that many bytes, then ends. */
export function startSource(): Promise<TargetServer> {
  return serve((socket) => {
    let header = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      header = Buffer.concat([header, d]);
      if (header.length < 8) return;
      socket.off('data', onData);
      sendBytes(socket, Number(header.readBigUInt64BE(0))).catch(() => undefined);
    };
    socket.on('data', onData);
  });
}

/** Echoes every byte; ends when the client ends. */
export function startEcho(): Promise<TargetServer> {
  return serve((socket) => socket.pipe(socket));
}

/** Sends one byte on accept (the "first byte from the device" of setup latency), then idles. */
export function startGreeter(): Promise<TargetServer> {
  return serve((socket) => {
    socket.write('!');
    socket.resume();
    socket.on('end', () => socket.end());
  });
}
