/**
 * The multiplexed carrier's framing and nothing of dstream's above it: lean-relay.ts's three
 * processes, each stream a substream of dstream's MuxSession (`dstream.mux.v1`, credit windows
 * and all) on a TLS WebSocket, where lean-relay.ts has bare frames on bare TLS. No
 * authentication, registry, allow-list, limits, audit, logs or resumable protocol: what those
 * cost per stream is dstream's setup less this one's.
 *
 *   node mux-relay.js middle            (LEAN_KEY, LEAN_CERT)
 *   node mux-relay.js back MIDDLE TARGET (LEAN_CA)
 *   node mux-relay.js front LISTEN MIDDLE (LEAN_CA)
 *
 * The middle prints `listening on PORT`, then `back connected` and `front connected`.
 */
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { MuxSession } from '../src/mux/mux-session.js';
import type { MuxStream } from '../src/mux/mux-stream.js';
import { muxProtocol } from '../src/protocol/mux-frames.js';
import { dialTarget, fail, listenLocal, runRelayRole } from './relay-roles.js';

/** Up to this many bytes handed to a substream and not yet sent before the socket pauses. */
const highWater = 1024 * 1024;

/** A local socket and a substream, both ways: back-pressure, end as close, one teardown. */
function pipe(socket: Socket, stream: MuxStream): void {
  let inFlight = 0;
  socket.on('data', (chunk: Buffer) => {
    inFlight += chunk.length;
    if (inFlight > highWater) socket.pause();
    stream.send(chunk, { binary: true }, () => {
      inFlight -= chunk.length;
      if (inFlight <= highWater / 2) socket.resume();
    });
  });
  stream.on('message', (data: Buffer) => {
    if (!socket.write(data)) {
      stream.pause();
      socket.once('drain', () => stream.resume());
    }
  });
  // Half-close is not carried (dstream carries it in its resumable protocol): an end closes.
  socket.on('end', () => stream.close(1000));
  socket.on('close', () => stream.close(1000));
  stream.on('close', () => socket.end());
  stream.resume();
}

/** Two substreams, both ways, each held while the other is behind. */
function relay(a: MuxStream, b: MuxStream): void {
  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    from.on('message', (data: Buffer) => {
      from.pause();
      to.send(data, { binary: true }, () => from.resume());
    });
    from.on('close', () => to.close(1000));
    from.resume();
  }
}

function dial(port: number, ca: string, role: string): Promise<MuxSession> {
  const ws = new WebSocket(`wss://127.0.0.1:${port}/${role}`, muxProtocol, {
    ca,
    perMessageDeflate: false,
  });
  ws.on('error', (e: Error) => fail('mux-relay', `${role}: ${e.message}`));
  return new Promise((resolve) =>
    ws.once('open', () => resolve(new MuxSession(ws, { role: 'dialler' }))),
  );
}

async function front(listenPort: number, middlePort: number, ca: string): Promise<void> {
  const session = await dial(middlePort, ca, 'front');
  listenLocal(listenPort, (socket) =>
    pipe(socket, session.open('/', { path: '/', authorization: '', protocols: [] })),
  );
}

async function back(middlePort: number, targetPort: number, ca: string): Promise<void> {
  const session = await dial(middlePort, ca, 'back');
  session.on('open-request', (stream) => {
    stream.accept('');
    const socket = dialTarget(targetPort);
    pipe(socket, stream);
  });
}

function middle(key: string, cert: string): void {
  const https = createHttpsServer({ key, cert });
  const wss = new WebSocketServer({
    server: https,
    perMessageDeflate: false,
    handleProtocols: () => muxProtocol,
  });
  let backSession: MuxSession | undefined;
  wss.on('connection', (ws, req) => {
    ws.on('error', () => undefined);
    const session = new MuxSession(ws, { role: 'listener' });
    const role = req.url === '/back' ? 'back' : 'front';
    process.stdout.write(`${role} connected\n`);
    if (role === 'back') {
      backSession = session;
      return;
    }
    // Each of the front's substreams is accepted and opened on to the back, as the hub's relay
    // opens a stream's device half on the agent's carrier connection.
    session.on('open-request', (stream) => {
      if (!backSession) return stream.refuse(503, '{}');
      stream.accept('');
      relay(stream, backSession.open('/', { path: '/', authorization: '', protocols: [] }));
    });
  });
  https.listen(0, '127.0.0.1', () =>
    process.stdout.write(`listening on ${(https.address() as AddressInfo).port}\n`),
  );
}

await runRelayRole('mux-relay', { middle, front, back });
