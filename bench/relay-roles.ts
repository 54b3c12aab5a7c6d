import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * The command line the floors with the carrier's shape share (lean-relay.ts, mux-relay.ts):
 * `middle` (LEAN_KEY, LEAN_CERT: its TLS key and certificate), `back MIDDLE TARGET` and
 * `front LISTEN MIDDLE` (LEAN_CA: the middle's certificate, which they verify).
 */
export interface RelayRoles {
  middle(key: string, cert: string): void;
  front(listenPort: number, middlePort: number, ca: string): void | Promise<void>;
  back(middlePort: number, targetPort: number, ca: string): void | Promise<void>;
}

/** Print `message` as `script`'s and exit 1: a floor that cannot run is not measured. */
export function fail(script: string, message: string): never {
  process.stderr.write(`${script}: ${message}\n`);
  process.exit(1);
}

/** Run the role process.argv names. */
export async function runRelayRole(script: string, roles: RelayRoles): Promise<void> {
  const [role, a, b] = process.argv.slice(2);
  const ca = process.env.LEAN_CA ?? '';
  if (role === 'middle') roles.middle(process.env.LEAN_KEY ?? '', process.env.LEAN_CERT ?? '');
  else if (role === 'front') await roles.front(Number(a), Number(b), ca);
  else if (role === 'back') await roles.back(Number(a), Number(b), ca);
  else fail(script, `usage: ${script}.js middle | front LISTEN MIDDLE | back MIDDLE TARGET`);
}

/** The back's connection to the target for a stream, as the agent's: no Nagle, half-open. */
export function dialTarget(port: number): Socket {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: true });
  socket.on('error', () => socket.destroy());
  return socket;
}

/**
 * The front's listener, as the proxy's: on loopback, no Nagle, half-open; each connection gets
 * an 'error' listener before `onSocket` sees it.
 */
export function listenLocal(port: number, onSocket: (socket: Socket) => void): Server {
  return createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    onSocket(socket);
  }).listen(port, '127.0.0.1');
}
