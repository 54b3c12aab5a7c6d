import { createHash } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface TestServer {
  readonly port: number;
  readonly server: Server;
  readonly sockets: Set<Socket>;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<TestServer> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Echoes every byte back; half-closes its side when the client does. */
export function startEchoServer(): Promise<TestServer> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  return listen(server);
}

/**
 * Reads until EOF, then answers with "<byte count> <sha256 hex>" and closes: only works if
 * the half-close reached it and its reply can still travel back.
 */
export function startDigestServer(): Promise<TestServer> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined);
    const hash = createHash('sha256');
    let n = 0;
    socket.on('data', (c: Buffer) => {
      n += c.length;
      hash.update(c);
    });
    socket.on('end', () => socket.end(`${n} ${hash.digest('hex')}`));
  });
  return listen(server);
}

/** Runs `onSocket` for every connection (custom targets). */
export function startServer(onSocket: (socket: Socket) => void): Promise<TestServer> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined);
    onSocket(socket);
  });
  return listen(server);
}
