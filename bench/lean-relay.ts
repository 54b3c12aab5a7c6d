/**
 * The floor under the multiplexed carrier's shape: three Node processes where the proxy, the
 * hub and the agent stand, joined by two long-lived TLS connections that the ends opened (the
 * agent's side dials out, as the agent does), carrying every stream as frames of a 9-byte
 * header (type, stream id, length) and nothing else: no WebSocket, no credit windows, no
 * authentication, registry, allow-list, limits, audit or resumption. What a stream's setup
 * costs here when the processes do only what the carrier's shape needs.
 *
 *   node lean-relay.js middle            (LEAN_KEY, LEAN_CERT: its TLS key and certificate)
 *   node lean-relay.js back MIDDLE TARGET (LEAN_CA: the middle's certificate, verified)
 *   node lean-relay.js front LISTEN MIDDLE (LEAN_CA)
 *
 * The middle prints `listening on PORT`, then `back connected` and `front connected`.
 * Back-pressure is whole-connection: a full local socket pauses the carrier connection that
 * feeds it until it drains, a full carrier connection pauses every socket that feeds it.
 */
import type { AddressInfo, Socket } from 'node:net';
import { connect as connectTls, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { dialTarget, fail, listenLocal, runRelayRole } from './relay-roles.js';

const frameOpen = 1;
const frameData = 2;
const frameEnd = 3;
const frameClose = 4;
const headerBytes = 9;

/**
 * One carrier connection: parses frames, writes them corked until the end of the loop's
 * phase (one TLS record and one write for every frame of a turn, as the carrier flushes).
 */
class Carrier {
  readonly #socket: Socket;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #flushQueued = false;
  #readPauses = 0;
  readonly #drainWaiters = new Set<() => void>();

  constructor(socket: Socket, onFrame: (type: number, id: number, payload: Buffer) => void) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('drain', () => this.#wake());
    let buffered: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      let at = 0;
      while (buffered.length - at >= headerBytes) {
        const length = buffered.readUInt32BE(at + 5);
        if (buffered.length - at < headerBytes + length) break;
        const type = buffered.readUInt8(at);
        const id = buffered.readUInt32BE(at + 1);
        onFrame(type, id, buffered.subarray(at + headerBytes, at + headerBytes + length));
        at += headerBytes + length;
      }
      buffered = at === buffered.length ? Buffer.alloc(0) : buffered.subarray(at);
    });
  }

  /** Queues a frame; false when the connection is behind (the caller waits on `onDrain`). */
  send(type: number, id: number, payload?: Buffer): boolean {
    const header = Buffer.allocUnsafe(headerBytes);
    header.writeUInt8(type, 0);
    header.writeUInt32BE(id, 1);
    header.writeUInt32BE(payload?.length ?? 0, 5);
    this.#pending.push(header);
    this.#pendingBytes += headerBytes;
    if (payload && payload.length > 0) {
      this.#pending.push(payload);
      this.#pendingBytes += payload.length;
    }
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      setImmediate(() => this.#flush());
    }
    return this.#socket.writableLength + this.#pendingBytes < 1024 * 1024;
  }

  onDrain(waiter: () => void): void {
    if (this.#socket.writableLength === 0 && this.#pendingBytes === 0) waiter();
    else this.#drainWaiters.add(waiter);
  }

  /** Counted pauses of reading: resumed when every full socket it fed has drained. */
  pauseReading(): void {
    if (this.#readPauses++ === 0) this.#socket.pause();
  }

  resumeReading(): void {
    if (--this.#readPauses === 0) this.#socket.resume();
  }

  #flush(): void {
    this.#flushQueued = false;
    const chunks = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    // A write the socket took at once emits no 'drain': those waiting on the frames it held
    // (a sender that was over the bound only with them) go on now.
    if (this.#socket.write(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)))
      this.#wake();
  }

  #wake(): void {
    const waiters = [...this.#drainWaiters];
    this.#drainWaiters.clear();
    for (const w of waiters) w();
  }
}

/** A local stream socket tied to stream `id` of `carrier`, both directions, with back-pressure. */
function bridge(socket: Socket, id: number, carrier: Carrier, streams: Map<number, Socket>): void {
  streams.set(id, socket);
  socket.on('data', (chunk: Buffer) => {
    if (!carrier.send(frameData, id, chunk)) {
      socket.pause();
      carrier.onDrain(() => socket.resume());
    }
  });
  socket.on('end', () => carrier.send(frameEnd, id));
  socket.on('close', () => {
    if (streams.delete(id)) carrier.send(frameClose, id);
  });
}

/** A frame for a local stream socket: data written (pausing the carrier while it is full). */
function deliver(
  type: number,
  id: number,
  payload: Buffer,
  carrier: Carrier,
  streams: Map<number, Socket>,
): void {
  const socket = streams.get(id);
  if (!socket) return;
  if (type === frameData) {
    if (!socket.write(payload)) {
      carrier.pauseReading();
      // Resumed once, when the socket drains or goes away (a closed socket never drains).
      let resumed = false;
      const resume = (): void => {
        if (resumed) return;
        resumed = true;
        carrier.resumeReading();
      };
      socket.once('drain', resume);
      socket.once('close', resume);
    }
  } else if (type === frameEnd) socket.end();
  else if (type === frameClose) {
    streams.delete(id);
    socket.destroy();
  }
}

function front(listenPort: number, middlePort: number, ca: string): void {
  const streams = new Map<number, Socket>();
  const tls = connectTls({ host: '127.0.0.1', port: middlePort, ca });
  tls.on('error', (e: Error) => fail('lean-relay', `front: ${e.message}`));
  const carrier = new Carrier(tls, (type, id, payload) =>
    deliver(type, id, payload, carrier, streams),
  );
  carrier.send(frameOpen, 0, Buffer.from('front'));
  let next = 1;
  tls.once('secureConnect', () =>
    listenLocal(listenPort, (socket) => {
      const id = next++;
      carrier.send(frameOpen, id);
      bridge(socket, id, carrier, streams);
    }),
  );
}

function back(middlePort: number, targetPort: number, ca: string): void {
  const streams = new Map<number, Socket>();
  const tls = connectTls({ host: '127.0.0.1', port: middlePort, ca });
  tls.on('error', (e: Error) => fail('lean-relay', `back: ${e.message}`));
  const carrier: Carrier = new Carrier(tls, (type, id, payload) => {
    if (type !== frameOpen) return deliver(type, id, payload, carrier, streams);
    const socket = dialTarget(targetPort);
    bridge(socket, id, carrier, streams);
  });
  carrier.send(frameOpen, 0, Buffer.from('back'));
}

function middle(key: string, cert: string): void {
  const carriers = new Map<string, Carrier>();
  const server = createTlsServer({ key, cert }, (socket: TLSSocket) => {
    socket.on('error', () => socket.destroy());
    let role = '';
    const carrier: Carrier = new Carrier(socket, (type, id, payload) => {
      if (id === 0) {
        role = payload.toString();
        carriers.set(role, carrier);
        process.stdout.write(`${role} connected\n`);
        return;
      }
      // Routed by the stream's id to the other side's connection, frame by frame.
      const other = carriers.get(role === 'front' ? 'back' : 'front');
      if (other && !other.send(type, id, payload)) {
        carrier.pauseReading();
        other.onDrain(() => carrier.resumeReading());
      }
    });
  });
  server.listen(0, '127.0.0.1', () =>
    process.stdout.write(`listening on ${(server.address() as AddressInfo).port}\n`),
  );
}

await runRelayRole('lean-relay', { middle, front, back });
