import { createHash } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import {
  MuxSession,
  defaultMuxConnectionWindow,
  defaultMuxReceiveWindow,
  muxMessageChannel,
  type MuxMessageTrace,
  type MuxSessionOptions,
} from '../../src/mux/mux-session.js';
import type { DirectFraming } from '../../src/mux/direct-frame.js';
import { Heartbeat } from '../../src/net/heartbeat.js';
import { answerOf, type MuxStream } from '../../src/mux/mux-stream.js';
import { bridge, type BridgeResult } from '../../src/stream/bridge.js';
import type { StreamSocket } from '../../src/stream/carrier.js';
import { MuxFrameType, muxProtocol, writeMuxHeader } from '../../src/protocol/mux-frames.js';
import { eofFrame, streamProtocol } from '../../src/protocol/constants.js';
import { closed, dial, randomBytes, readAll, sha256, waitEvent, waitFor } from '../helpers/net.js';
import { startDigestServer, startServer } from '../helpers/servers.js';

// The multiplexed carrier's framing between two in-process ends over a real loopback
// WebSocket (issue 28, step 1): many streams, flow control, half-close, loss, and a peer that
// breaks the rules.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

/** The TCP socket under a WebSocket (ws keeps it as `_socket`). */
function socketOf(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket;
}

interface CarrierPair {
  readonly dialler: MuxSession;
  readonly listener: MuxSession;
  readonly client: WebSocket;
  readonly server: WebSocket;
}

/** A WebSocket server on loopback whose connections each become a listener session. */
async function startListener(
  options: Partial<MuxSessionOptions> = {},
  onSession: (session: MuxSession, ws: WebSocket) => void = () => undefined,
  /** Where each session writes its own frames (`direct`), given its WebSocket. */
  direct?: (ws: WebSocket) => DirectFraming,
): Promise<{ readonly port: number; readonly sessions: MuxSession[] }> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
    handleProtocols: () => muxProtocol,
  });
  await once(wss, 'listening');
  const sessions: MuxSession[] = [];
  wss.on('connection', (ws) => {
    ws.on('error', () => undefined);
    const session = new MuxSession(ws, { ...options, role: 'listener', direct: direct?.(ws) });
    sessions.push(session);
    onSession(session, ws);
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  );
  return { port: (wss.address() as AddressInfo).port, sessions };
}

async function dialWs(port: number): Promise<WebSocket> {
  const client = new WebSocket(`ws://127.0.0.1:${port}/`, muxProtocol, {
    perMessageDeflate: false,
  });
  client.on('error', () => undefined);
  await once(client, 'open');
  cleanups.push(() => client.terminate());
  return client;
}

async function carrierPair(
  listenerOptions: Partial<MuxSessionOptions> = {},
  onSession?: (session: MuxSession) => void,
): Promise<CarrierPair> {
  let server: WebSocket | undefined;
  const l = await startListener(listenerOptions, (session, ws) => {
    server = ws;
    onSession?.(session);
  });
  const client = await dialWs(l.port);
  await waitFor(() => l.sessions.length === 1, 10_000, 'the listener session');
  const dialler = new MuxSession(client, { role: 'dialler' });
  return { dialler, listener: l.sessions[0] as MuxSession, client, server: server as WebSocket };
}

/** A carrier pair with one stream the listener accepted raw (and reads). */
async function oneRawStream(): Promise<CarrierPair & { stream: MuxStream }> {
  const pair = await carrierPair();
  pair.listener.on('open-request', (s) => {
    s.accept('');
    s.resume();
  });
  const stream = pair.dialler.open('mux://x', { path: '/x', authorization: '', protocols: [] });
  await waitEvent(stream, 'open');
  return { ...pair, stream };
}

/** A local listener whose every connection is carried by its own stream on `session`. */
async function listenThrough(session: MuxSession, protocols: string[]): Promise<Server> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (local) => {
    local.on('error', () => undefined);
    const stream = session.open('mux://test/bridges/x', {
      path: '/bridges/x',
      authorization: 'Bearer t',
      protocols,
    });
    stream.once('open', () => bridge(local, stream));
    stream.once('close', () => {
      if (stream.protocol === '') local.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return server;
}

/** Accept every stream with `protocol`, and carry it to 127.0.0.1:`port` through bridge(). */
function acceptTo(session: MuxSession, port: number, ends: BridgeResult[] = []): void {
  session.on('open-request', (stream) => {
    stream.accept('dstream.stream.v1');
    void dial(port).then(
      (target) => {
        target.pause();
        bridge(target, stream, { onEnd: (r) => ends.push(r) });
      },
      () => stream.close(4001, 'target refused'),
    );
  });
}

const portOf = (server: Server): number => (server.address() as AddressInfo).port;

/** Send `payload` on a stream as the bridge does: never more than `high` bytes in flight. */
function sendAll(stream: MuxStream, payload: Buffer, high = 512 * 1024): Promise<void> {
  return new Promise((resolve, reject) => {
    let at = 0;
    let inFlight = 0;
    const pump = (): void => {
      while (inFlight < high && at < payload.length) {
        const chunk = payload.subarray(at, at + 64 * 1024);
        at += chunk.length;
        inFlight += chunk.length;
        stream.send(chunk, { binary: true }, (error) => {
          if (error) return reject(error);
          inFlight -= chunk.length;
          if (at >= payload.length && inFlight === 0) resolve();
          else pump();
        });
      }
    };
    pump();
  });
}

/** Collect a stream's binary messages until `n` bytes arrived. */
function receiveBytes(stream: MuxStream, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    stream.on('message', (data, isBinary) => {
      if (!isBinary) return;
      chunks.push(Buffer.from(data));
      got += data.length;
      if (got >= n) resolve(Buffer.concat(chunks));
    });
    stream.once('close', (code) => {
      if (got < n) reject(new Error(`closed (${code}) after ${got} of ${n} bytes`));
    });
    stream.resume();
  });
}

describe('mux session', () => {
  it('a MuxStream is a stream socket (compile-time check, and the surface the stream layer uses)', async () => {
    const { dialler, listener } = await carrierPair();
    listener.on('open-request', (s) => s.accept('dstream.stream.v1'));
    const stream = dialler.open('mux://x', {
      path: '/bridges/a',
      authorization: 'x',
      protocols: [],
    });
    const socket: StreamSocket = stream;
    expect(socket.readyState).toBe(socket.CONNECTING);
    await waitEvent(stream, 'open');
    expect(socket.readyState).toBe(socket.OPEN);
    expect(socket.protocol).toBe('dstream.stream.v1');
    expect(socket.isPaused).toBe(true);
    socket.ping();
    await waitEvent(stream, 'pong');
  });

  it('carries 40 connections at once, small and multi-megabyte, byte-exact, each with its half-close', async () => {
    const { dialler, listener } = await carrierPair();
    // Answers only once the client's half-close came through, then ends its side.
    const digest = await startDigestServer();
    cleanups.push(() => digest.close());
    const ends: BridgeResult[] = [];
    acceptTo(listener, digest.port, ends);
    const local = await listenThrough(dialler, ['dstream.stream.v1']);

    const sizes = Array.from({ length: 40 }, (_, i) =>
      i % 4 === 0 ? 4 * 1024 * 1024 + i : i % 4 === 1 ? 1 : 1000 * i + 7,
    );
    const results = await Promise.all(
      sizes.map(async (size) => {
        const payload = randomBytes(size);
        const socket = await dial(portOf(local));
        const answer = readAll(socket, 120_000);
        socket.end(payload);
        return { expected: `${size} ${sha256(payload)}`, got: (await answer).toString() };
      }),
    );
    for (const r of results) expect(r.got).toBe(r.expected);
    await waitFor(() => ends.length === 40, 30_000, 'every target-side bridge to end');
    expect(ends.every((e) => e.end === 'completed')).toBe(true);
    await waitFor(() => dialler.size === 0 && listener.size === 0, 10_000, 'both sessions empty');
    expect(dialler.bufferedBytes).toBe(0);
    expect(listener.bufferedBytes).toBe(0);
  });

  it('half-closes the other way: the target ends first and still reads what follows', async () => {
    const { dialler, listener } = await carrierPair();
    const banner = randomBytes(1024 * 1024 + 3);
    const got: Promise<string> = new Promise((resolve) => {
      void startServer((socket) => {
        const hash = createHash('sha256');
        let n = 0;
        socket.on('data', (c: Buffer) => {
          n += c.length;
          hash.update(c);
        });
        socket.on('end', () => resolve(`${n} ${hash.digest('hex')}`));
        socket.end(banner);
      }).then((server) => {
        cleanups.push(() => server.close());
        acceptTo(listener, server.port);
      });
    });
    await waitFor(() => listener.listenerCount('open-request') === 1, 10_000, 'the target');
    const local = await listenThrough(dialler, ['dstream.stream.v1']);
    const socket = await dial(portOf(local));
    const fromTarget = await readAll(socket, 60_000);
    expect(sha256(fromTarget)).toBe(sha256(banner));
    // The target's half-close arrived; this side still sends, and the target reads it all.
    const after = randomBytes(2 * 1024 * 1024 + 1);
    socket.end(after);
    expect(await got).toBe(`${after.length} ${sha256(after)}`);
  });

  it('a paused stream holds at most its window and stalls neither the other streams nor memory', async () => {
    // Never read, its credit never goes back: it keeps the first window.
    const window = 256 * 1024;
    const { dialler, listener } = await carrierPair();
    const accepted: MuxStream[] = [];
    listener.on('open-request', (s) => {
      s.accept('dstream.stream.v1');
      accepted.push(s);
    });
    const slow = dialler.open('mux://slow', { path: '/slow', authorization: '', protocols: [] });
    await waitEvent(slow, 'open');
    const slowPayload = randomBytes(32 * 1024 * 1024);
    let slowDone = false;
    const slowSent = sendAll(slow, slowPayload).then(() => (slowDone = true));
    const slowPeer = accepted[0] as MuxStream;
    // Nobody reads the slow stream: it fills its window, and no more.
    await waitFor(() => slowPeer.heldBytes >= window, 30_000, 'the slow stream to fill its window');

    // Another stream on the same connection moves 16 MiB both ways meanwhile.
    const fast = dialler.open('mux://fast', { path: '/fast', authorization: '', protocols: [] });
    await waitEvent(fast, 'open');
    const fastPeer = accepted[1] as MuxStream;
    fastPeer.on('message', (data, isBinary) =>
      fastPeer.send(Buffer.from(data), { binary: isBinary }),
    );
    fastPeer.resume();
    const fastPayload = randomBytes(16 * 1024 * 1024);
    const echoed = receiveBytes(fast, fastPayload.length);
    await sendAll(fast, fastPayload);
    expect(sha256(await echoed)).toBe(sha256(fastPayload));

    expect(slowDone).toBe(false);
    expect(slowPeer.heldBytes).toBe(window);
    expect(listener.bufferedBytes).toBe(window);
    // The sender keeps what it was handed and could not send: at most its own in-flight bound.
    expect(slow.queuedBytes).toBeLessThanOrEqual(512 * 1024);

    // Once read, everything arrives, in order.
    const slowGot = receiveBytes(slowPeer, slowPayload.length);
    await slowSent;
    expect(sha256(await slowGot)).toBe(sha256(slowPayload));
    expect(listener.bufferedBytes).toBe(0);
  });

  it("a stream's payload goes out from the next microtask while nothing is being written; the protocol's own frames, and payload behind a write, wait for the loop phase to end", async () => {
    const { stream, client } = await oneRawStream();
    await new Promise((r) => setImmediate(r));
    // What the carrier connection has handed its TCP socket so far (ws writes synchronously).
    const socket = socketOf(client);
    const before = socket.bytesWritten;
    // A few bytes on an idle connection (a keystroke) go at once, not a loop turn later...
    stream.send(randomBytes(100), { binary: true });
    await Promise.resolve();
    const afterSmall = socket.bytesWritten;
    expect(afterSmall).toBeGreaterThan(before + 100);
    // ...and while that message is still being written (its completion comes after this
    // microtask), more waits to go with whatever else this loop phase queues...
    stream.send(randomBytes(100), { binary: true });
    await Promise.resolve();
    expect(socket.bytesWritten).toBe(afterSmall);
    await new Promise((r) => setImmediate(r));
    // ...and goes out in the check phase.
    const afterSecond = socket.bytesWritten;
    expect(afterSecond).toBeGreaterThan(afterSmall + 100);
    // A text frame (the stream protocol's) waits for the check phase too, idle or not.
    stream.send('{"type":"ack","received":100}');
    await Promise.resolve();
    expect(socket.bytesWritten).toBe(afterSecond);
    await new Promise((r) => setImmediate(r));
    const afterText = socket.bytesWritten;
    expect(afterText).toBeGreaterThan(afterSecond + 20);
    // A full frame's worth is sent at once: a bulk stream must not wait a loop turn per message.
    stream.send(randomBytes(16 * 1024), { binary: true });
    await Promise.resolve();
    expect(socket.bytesWritten).toBeGreaterThan(afterText + 16 * 1024);
  });

  it('writes its messages to the socket itself as whole WebSocket frames when given it, which ws takes as its own: payloads of every size echo byte-exact both ways', async () => {
    // Each side's frames counted as they are written straight to its socket.
    const written = { listener: 0, dialler: 0 };
    const counting = (socket: Socket, side: keyof typeof written) => ({
      write: (data: Buffer, cb: (error?: Error | null) => void): boolean => {
        written[side]++;
        return socket.write(data, cb);
      },
    });
    const l = await startListener(
      {},
      (listener) =>
        listener.on('open-request', (s) => {
          s.accept('');
          s.on('message', (data, isBinary) => s.send(Buffer.from(data), { binary: isBinary }));
          s.resume();
        }),
      (ws) => ({ socket: counting(socketOf(ws), 'listener'), masked: false }),
    );
    // A client's frames carry an all-zero mask key, as openWebSocket's do on TLS.
    const client = new WebSocket(`ws://127.0.0.1:${l.port}/`, muxProtocol, {
      perMessageDeflate: false,
      generateMask: (mask: Buffer) => void mask.fill(0),
    });
    client.on('error', () => undefined);
    await once(client, 'open');
    cleanups.push(() => client.terminate());
    const dialler = new MuxSession(client, {
      role: 'dialler',
      direct: { socket: counting(socketOf(client), 'dialler'), masked: true },
    });
    // Messages under 126 bytes, under 64 KiB and above (the three header forms), on a few
    // streams at once.
    const sizes = [1, 40, 3000, 70_000, 3 * 1024 * 1024];
    await Promise.all(
      sizes.map(async (size) => {
        const stream = dialler.open('mux://x', { path: '/x', authorization: '', protocols: [] });
        await waitEvent(stream, 'open');
        const payload = randomBytes(size);
        const echoed = receiveBytes(stream, size);
        await sendAll(stream, payload);
        expect(sha256(await echoed)).toBe(sha256(payload));
      }),
    );
    expect(written.dialler).toBeGreaterThan(sizes.length);
    expect(written.listener).toBeGreaterThan(sizes.length);
  });

  it("publishes every message it sends and takes on 'dstream:mux:message' while subscribed", async () => {
    const pair = await carrierPair();
    const seen: MuxMessageTrace[] = [];
    const listen = (message: unknown): void => void seen.push(message as MuxMessageTrace);
    subscribe('dstream:mux:message', listen);
    cleanups.push(() => void unsubscribe('dstream:mux:message', listen));
    const answered = new Promise<MuxStream>((resolve) =>
      pair.listener.once('open-request', (s) => {
        s.accept('');
        resolve(s);
      }),
    );
    const stream = pair.dialler.open('mux://x', { path: '/x', authorization: '', protocols: [] });
    stream.send(Buffer.from('hi'), { binary: true });
    const accepted = await answered;
    await waitEvent(stream, 'open');
    const out = seen.filter((m) => m.direction === 'out');
    const taken = seen.filter((m) => m.direction === 'in');
    // The open and the bytes sent right after it, in one message; no credit beyond the first
    // window until some goes back (a stream that moves little claims none of the connection's).
    const opening = [MuxFrameType.open, MuxFrameType.data];
    expect(out[0]).toMatchObject({ session: pair.dialler, frames: opening });
    expect(taken[0]).toMatchObject({ session: pair.listener, frames: opening });
    expect(typeof taken[0]?.arrivedAt).toBe('bigint');
    const answer = [MuxFrameType.accept];
    expect(out[1]).toMatchObject({ session: pair.listener, frames: answer });
    expect(taken[1]).toMatchObject({ session: pair.dialler, frames: answer });
    // Nobody listening: nothing published (the check that keeps it free).
    unsubscribe('dstream:mux:message', listen);
    expect(muxMessageChannel.hasSubscribers).toBe(false);
    const count = seen.length;
    const got = receiveBytes(accepted, 5);
    stream.send(Buffer.from('again'), { binary: true });
    await got;
    expect(seen.length).toBe(count);
  });

  it('a substream gets no heartbeat of its own; a WebSocket does', async () => {
    const { stream, client } = await oneRawStream();
    const heartbeat = new Heartbeat(60_000);
    cleanups.push(() => heartbeat.stop());
    const before = { message: client.listenerCount('message'), pong: client.listenerCount('pong') };
    heartbeat.add(stream);
    heartbeat.add(client);
    // The substream's carrier connection is what is watched (by its owner's heartbeat).
    expect(stream.listenerCount('message')).toBe(0);
    expect(stream.listenerCount('pong')).toBe(0);
    expect(client.listenerCount('message')).toBe(before.message + 1);
    expect(client.listenerCount('pong')).toBe(before.pong + 1);
  });

  describe('the window: a share of the connection window, smaller beside an interactive stream', () => {
    const full = 1024 * 1024;
    const shared = 128 * 1024;

    const holdMs = 1000;

    /**
     * A pair whose listener reads every stream it accepts, and its accepted streams in order.
     * The listener's hold is counted on `clock.now`, which stands still until a test moves it.
     */
    async function readingPair(
      clock: { now: number },
      options: Partial<MuxSessionOptions> = {},
    ): Promise<{
      dialler: MuxSession;
      listener: MuxSession;
      accepted: MuxStream[];
      received: Map<MuxStream, Buffer[]>;
    }> {
      const { dialler, listener } = await carrierPair({
        receiveWindow: full,
        sharedReceiveWindow: shared,
        sharedHoldMs: holdMs,
        clock: () => clock.now,
        ...options,
      });
      const accepted: MuxStream[] = [];
      const received = new Map<MuxStream, Buffer[]>();
      listener.on('open-request', (s) => {
        s.accept('dstream.stream.v1');
        const chunks: Buffer[] = [];
        received.set(s, chunks);
        s.on('message', (data) => chunks.push(Buffer.from(data)));
        s.resume();
        accepted.push(s);
      });
      return { dialler, listener, accepted, received };
    }

    const bytesOf = (chunks: Buffer[] | undefined): number =>
      (chunks ?? []).reduce((n, c) => n + c.length, 0);

    async function openStream(dialler: MuxSession, name: string): Promise<MuxStream> {
      const stream = dialler.open(`mux://${name}`, {
        path: `/${name}`,
        authorization: '',
        protocols: [],
      });
      await waitEvent(stream, 'open');
      return stream;
    }

    /** Send `n` random bytes on `stream` and wait until its peer has them all, byte-exact. */
    async function carry(
      stream: MuxStream,
      peer: MuxStream,
      received: Map<MuxStream, Buffer[]>,
      n: number,
    ): Promise<void> {
      const chunks = received.get(peer) ?? [];
      const before = bytesOf(chunks);
      const payload = randomBytes(n);
      await sendAll(stream, payload);
      await waitFor(() => bytesOf(chunks) >= before + n, 60_000, `${n} bytes on ${stream.url}`);
      expect(sha256(Buffer.concat(chunks).subarray(before))).toBe(sha256(payload));
    }

    it('bulk streams alone or taking turns keep the full window; beside small frames every stream gets the shared one, and a bulk stream then holds no more', async () => {
      const { dialler, accepted, received } = await readingPair({ now: 0 });
      const bulk = await openStream(dialler, 'bulk');
      const other = await openStream(dialler, 'other');
      const [bulkPeer, otherPeer] = accepted as [MuxStream, MuxStream];
      // Two bulk streams at once: their frames are full (64 KiB sends) but for the last one
      // (100 bytes), so neither is taken for an interactive one.
      await Promise.all([
        carry(bulk, bulkPeer, received, 8 * 1024 * 1024 + 100),
        carry(other, otherPeer, received, 8 * 1024 * 1024 + 100),
      ]);
      expect(bulkPeer.window).toBe(full);
      expect(otherPeer.window).toBe(full);

      // Keystrokes on the other stream (a few bytes at a time), next to the bulk stream's data.
      await carry(other, otherPeer, received, 64);
      await carry(other, otherPeer, received, 64);
      await carry(bulk, bulkPeer, received, 4 * 1024 * 1024);
      expect(bulkPeer.window).toBe(shared);

      // What the bulk stream may have in flight is the shared window: with its reader stopped,
      // the receiver holds at most that much, and the sender keeps the rest.
      bulkPeer.pause();
      const stalled = sendAll(bulk, randomBytes(4 * 1024 * 1024)).catch((e: unknown) => e);
      await waitFor(
        () => bulk.queuedBytes > 0 && bulkPeer.heldBytes > 0,
        30_000,
        'the bulk stream to stall',
      );
      // A frame sent after everything the bulk stream could send: once it is in, so is all of that.
      await carry(other, otherPeer, received, 64);
      expect(bulkPeer.heldBytes).toBeLessThanOrEqual(shared);
      expect(bulk.queuedBytes).toBeGreaterThan(0);
      bulkPeer.resume();
      expect(await stalled).toBeUndefined();
    });

    it('busy streams share the connection window, idle ones claim none of it, and what was granted stays within it', async () => {
      const first = 256 * 1024;
      // Room beyond the first windows for two streams at the full window.
      const room = 2 * (full - first);
      const clock = { now: 0 };
      const { dialler, listener, accepted, received } = await readingPair(clock, {
        connectionWindow: room,
      });
      // What the open streams were granted beyond their first windows.
      const extraOf = (): number =>
        accepted
          .filter((s) => s.readyState !== s.CLOSED)
          .reduce((n, s) => n + Math.max(0, s.window - first), 0);

      // Ten streams that move nothing: they keep the first window and leave the room alone.
      for (let i = 0; i < 10; i++) await openStream(dialler, `idle${i}`);
      expect(accepted.map((s) => s.window)).toEqual(Array.from({ length: 10 }, () => first));

      // A bulk stream beside them gets the full window; so does a second one (the room holds two).
      const a = await openStream(dialler, 'a');
      const aPeer = accepted[10] as MuxStream;
      await carry(a, aPeer, received, 2 * 1024 * 1024);
      expect(aPeer.window).toBe(full);
      const b = await openStream(dialler, 'b');
      const bPeer = accepted[11] as MuxStream;
      await carry(b, bPeer, received, 2 * 1024 * 1024);
      expect(bPeer.window).toBe(full);

      // A third finds no room: the first window. Stalled, its reader holds exactly that much.
      const c = await openStream(dialler, 'c');
      const cPeer = accepted[12] as MuxStream;
      await carry(c, cPeer, received, 2 * 1024 * 1024);
      expect(cPeer.window).toBe(first);
      cPeer.pause();
      const stalled = sendAll(c, randomBytes(1024 * 1024)).catch((e: unknown) => e);
      await waitFor(() => c.queuedBytes > 0 && cPeer.heldBytes > 0, 30_000, 'c to stall');
      // A frame sent after everything c could send: once it is in, so is all of that.
      await carry(a, aPeer, received, 64);
      expect(cPeer.heldBytes).toBe(first);
      cPeer.resume();
      expect(await stalled).toBeUndefined();

      // Three busy: a third of the room each, as their credit goes back: a gives up what is
      // over its share, and c takes what is free.
      await carry(a, aPeer, received, 2 * 1024 * 1024);
      expect(aPeer.window).toBe(first + room / 3);
      await carry(c, cPeer, received, 2 * 1024 * 1024);
      expect(cPeer.window).toBe(first + (room - room / 3 - (full - first)));
      console.log('DBG', accepted.map((s) => s.window / 1024).join(','));
      expect(extraOf()).toBeLessThanOrEqual(room);

      // a and b go quiet for the hold, and b closes: c, busy alone, takes the room b left.
      clock.now += holdMs;
      b.close(1000);
      await waitFor(() => listener.size === 12, 30_000, 'b to close');
      await carry(c, cPeer, received, 2 * 1024 * 1024);
      expect(cPeer.window).toBe(full);
      console.log('DBG', accepted.map((s) => s.window / 1024).join(','));
      expect(extraOf()).toBeLessThanOrEqual(room);
    });

    it('by default a stream alone is granted 2 MiB once its credit goes back, of a 16 MiB connection window', async () => {
      const { dialler, listener } = await carrierPair();
      const peers: MuxStream[] = [];
      const chunks: Buffer[] = [];
      listener.on('open-request', (s) => {
        s.accept('dstream.stream.v1');
        s.on('message', (data) => chunks.push(Buffer.from(data)));
        s.resume();
        peers.push(s);
      });
      expect(defaultMuxReceiveWindow).toBe(2 * 1024 * 1024);
      expect(defaultMuxConnectionWindow).toBe(16 * 1024 * 1024);
      const stream = await openStream(dialler, 'a');
      expect(peers[0]?.window).toBe(256 * 1024);
      const payload = randomBytes(4 * 1024 * 1024);
      await sendAll(stream, payload);
      await waitFor(() => bytesOf(chunks) >= payload.length, 60_000, 'the payload');
      expect(sha256(Buffer.concat(chunks))).toBe(sha256(payload));
      expect(peers[0]?.window).toBe(defaultMuxReceiveWindow);
    });

    it('the full window comes back once the interactive stream has been quiet for the hold', async () => {
      const clock = { now: 0 };
      const { dialler, accepted, received } = await readingPair(clock);
      const bulk = await openStream(dialler, 'bulk');
      const other = await openStream(dialler, 'other');
      const [bulkPeer, otherPeer] = accepted as [MuxStream, MuxStream];
      await carry(bulk, bulkPeer, received, 1024 * 1024);
      await carry(other, otherPeer, received, 64);
      await carry(bulk, bulkPeer, received, 2 * 1024 * 1024);
      expect(bulkPeer.window).toBe(shared);
      // The hold passes with no interactive frame.
      clock.now += holdMs;
      await carry(bulk, bulkPeer, received, 2 * 1024 * 1024);
      expect(bulkPeer.window).toBe(full);
      // And the peer has the credit: a stopped reader now holds more than the shared window
      // could ever let in (all of the full one but what was taken and not yet granted back,
      // under a quarter of it).
      bulkPeer.pause();
      const rest = sendAll(bulk, randomBytes(4 * 1024 * 1024)).catch((e: unknown) => e);
      await waitFor(() => bulkPeer.heldBytes > (full * 3) / 4, 30_000, 'the full window to fill');
      expect(bulkPeer.heldBytes).toBeLessThanOrEqual(full);
      bulkPeer.resume();
      expect(await rest).toBeUndefined();
    });
  });

  it('a small stream keeps moving beside a bulk one (frames take turns)', async () => {
    const { dialler, listener } = await carrierPair();
    const accepted: MuxStream[] = [];
    listener.on('open-request', (s) => {
      s.accept('dstream.stream.v1');
      s.on('message', (data, isBinary) => s.send(Buffer.from(data), { binary: isBinary }));
      s.resume();
      accepted.push(s);
    });
    const bulk = dialler.open('mux://bulk', { path: '/bulk', authorization: '', protocols: [] });
    const ping = dialler.open('mux://ping', { path: '/ping', authorization: '', protocols: [] });
    await Promise.all([waitEvent(bulk, 'open'), waitEvent(ping, 'open')]);
    const bulkPayload = randomBytes(128 * 1024 * 1024);
    let bulkDone = false;
    const bulkBack = receiveBytes(bulk, bulkPayload.length).then((b) => {
      bulkDone = true;
      return b;
    });
    const bulkSent = sendAll(bulk, bulkPayload, 4 * 1024 * 1024);
    await waitFor(() => bulk.queuedBytes > 0, 10_000, 'the bulk stream queueing');
    // 100 round trips of 64 bytes while the bulk stream runs flat out on the same connection.
    ping.resume();
    let doneBeforeBulk = 0;
    for (let i = 0; i < 100; i++) {
      const message = randomBytes(64);
      const back = new Promise<Buffer>((resolve) => ping.once('message', (d) => resolve(d)));
      ping.send(message, { binary: true });
      expect((await back).equals(message)).toBe(true);
      if (!bulkDone) doneBeforeBulk++;
    }
    expect(doneBeforeBulk).toBe(100);
    await bulkSent;
    expect(sha256(await bulkBack)).toBe(sha256(bulkPayload));
  });

  it('sends right after open, before the answer; a refused stream drops it and closes both ids', async () => {
    let answer: ((s: MuxStream) => void) | undefined;
    const { dialler, listener } = await carrierPair({}, (session) =>
      session.on('open-request', (s) => answer?.(s)),
    );
    const early = randomBytes(100 * 1024);
    // Accepted: what was sent before the answer arrives once the acceptor reads.
    const acceptedPeer = new Promise<MuxStream>((resolve) => (answer = resolve));
    const a = dialler.open('mux://a', { path: '/a', authorization: '', protocols: ['p'] });
    a.send(early, { binary: true });
    const peer = await acceptedPeer;
    peer.accept('p');
    expect(sha256(await receiveBytes(peer, early.length))).toBe(sha256(early));

    // Refused: 'refused' with the status and body, then 'close'; the early bytes are dropped.
    answer = (s) => s.refuse(401, JSON.stringify({ Message: 'invalid or expired stream token' }));
    const b = dialler.open('mux://b', { path: '/b', authorization: '', protocols: [] });
    b.send(early, { binary: true });
    const bClosed = waitEvent(b, 'close');
    const [status, body] = (await once(b, 'refused')) as [number, string];
    expect(status).toBe(401);
    expect(JSON.parse(body)).toEqual({ Message: 'invalid or expired stream token' });
    await bClosed;
    expect(b.readyState).toBe(b.CLOSED);
    await waitFor(() => dialler.size === 1 && listener.size === 1, 10_000, 'the refused id freed');

    a.close(1000);
    const [code] = (await once(peer, 'close')) as [number];
    expect(code).toBe(1000);
    await waitFor(() => dialler.size === 0 && listener.size === 0, 10_000, 'both ids freed');
  });

  it('a close then terminate (a deliberate reset) reaches the peer with its code; closing the connection right after still sends it', async () => {
    const { dialler, listener } = await carrierPair();
    const codes: number[] = [];
    listener.on('open-request', (s) => {
      s.accept('dstream.stream.v1');
      s.on('close', (code) => codes.push(code));
      s.resume();
    });
    const streams = Array.from({ length: 3 }, (_, i) =>
      dialler.open(`mux://${i}`, { path: `/${i}`, authorization: '', protocols: [] }),
    );
    await Promise.all(streams.map((s) => waitEvent(s, 'open')));
    for (const s of streams) {
      s.send(randomBytes(100_000), { binary: true });
      s.close(4001, 'local connection closed');
      s.terminate();
    }
    // As a process stopping: its streams reset, then its carrier connection closed at once.
    dialler.close(1000, 'carrier closed');
    await waitFor(() => codes.length === 3, 10_000, 'the closes at the peer');
    expect(codes).toEqual([4001, 4001, 4001]);
  });

  it("a peer's end and reset in one message cut the bridged connection cleanly (no EINVAL, it closes)", async () => {
    // The agent spin after CI's soak runs: a client that half-closes then aborts makes its end
    // send `eof` and then 4001, which cross the carrier in one message; the bridge ended its
    // target socket and reset it in the same tick, which Node 20 cannot do (src/net/reset.ts).
    const { dialler, listener } = await carrierPair();
    const target = await startServer((socket) => socket.resume());
    cleanups.push(() => target.close());
    const ends: BridgeResult[] = [];
    const targetErrors: string[] = [];
    const targets: Socket[] = [];
    listener.on('open-request', (stream) => {
      stream.accept(streamProtocol);
      void dial(target.port).then((socket) => {
        targets.push(socket);
        socket.on('error', (e: NodeJS.ErrnoException) => targetErrors.push(e.code ?? e.message));
        socket.pause();
        bridge(socket, stream, { onEnd: (r) => ends.push(r) });
      });
    });
    const streams = Array.from({ length: 20 }, (_, i) =>
      dialler.open(`mux://${i}`, { path: `/${i}`, authorization: '', protocols: [streamProtocol] }),
    );
    await Promise.all(streams.map((s) => waitEvent(s, 'open')));
    await waitFor(() => targets.length === 20, 10_000, 'the bridged targets');
    for (const s of streams) {
      s.send(randomBytes(1000), { binary: true });
      s.send(eofFrame, { binary: false });
      s.close(4001, 'local connection reset');
    }
    await waitFor(() => ends.length === 20, 10_000, 'the bridges to end');
    await Promise.all(targets.map((socket) => closed(socket, 10_000)));
    expect(targetErrors).toEqual([]);
    expect(ends.map((r) => r.end)).toEqual(Array.from({ length: 20 }, () => 'peer-error'));
  });

  it('a lost connection closes every stream on both sides as lost (1006), runs every send callback, and leaves nothing', async () => {
    const { dialler, listener, client } = await carrierPair();
    const peerCodes: number[] = [];
    listener.on('open-request', (s) => {
      s.accept('dstream.stream.v1');
      s.on('message', (data, isBinary) => s.send(Buffer.from(data), { binary: isBinary }));
      s.on('close', (code) => peerCodes.push(code));
      s.resume();
    });
    const streams = Array.from({ length: 20 }, (_, i) =>
      dialler.open(`mux://${i}`, { path: `/${i}`, authorization: '', protocols: [] }),
    );
    await Promise.all(streams.map((s) => waitEvent(s, 'open')));
    const closes = streams.map((s) => once(s, 'close') as Promise<[number, Buffer]>);
    let callbacks = 0;
    let sends = 0;
    let received = 0;
    for (const s of streams) {
      s.on('message', (d) => (received += d.length));
      s.resume();
      for (let i = 0; i < 40; i++) {
        sends++;
        s.send(randomBytes(64 * 1024), { binary: true }, () => callbacks++);
      }
    }
    await waitFor(() => received > 4 * 1024 * 1024, 30_000, 'bytes flowing');
    client.terminate();
    for (const [code] of await Promise.all(closes)) expect(code).toBe(1006);
    await waitFor(() => callbacks === sends, 10_000, 'every send callback');
    await waitFor(() => listener.closed, 10_000, 'the listener session to see the loss');
    expect(peerCodes).toEqual(Array.from({ length: 20 }, () => 1006));
    expect(dialler.size).toBe(0);
    expect(listener.size).toBe(0);
    expect(listener.bufferedBytes).toBe(0);
    expect(() =>
      dialler.open('mux://late', { path: '/', authorization: '', protocols: [] }),
    ).toThrow(/closed/);
  });

  it('closing when idle refuses new streams (403) and closes after the last one; kept open, it takes streams again', async () => {
    const { dialler, listener } = await carrierPair();
    // The dialler takes streams, as an agent's carrier connection takes the hub's offers.
    dialler.on('open-request', (s) => {
      s.accept('');
      s.on('message', (data, isBinary) => s.send(Buffer.from(data), { binary: isBinary }));
      s.resume();
    });
    const offer = (name: string): MuxStream =>
      listener.open(`mux://${name}`, { path: `/${name}`, authorization: '', protocols: [] });
    const echoOn = async (stream: MuxStream, text: string): Promise<string> => {
      const back = once(stream, 'message') as Promise<[Buffer, boolean]>;
      stream.resume();
      stream.send(Buffer.from(text), { binary: true });
      return (await back)[0].toString();
    };
    const first = offer('first');
    expect(await answerOf(first)).toBeUndefined();
    dialler.closeWhenIdle(1000, 'offers moved');
    const refused = await answerOf(offer('refused'));
    expect(refused?.status).toBe(403);
    expect(refused?.body).toMatch(/closing/);
    expect(await echoOn(first, 'still carried')).toBe('still carried');
    expect(dialler.keepOpen()).toBe(true);
    const again = offer('again');
    expect(await answerOf(again)).toBeUndefined();
    expect(await echoOn(again, 'taken again')).toBe('taken again');
    // Retired once more: it closes once both streams have ended, with its code and reason.
    dialler.closeWhenIdle(1000, 'offers moved');
    const closed = once(listener, 'close') as Promise<[number, string]>;
    first.close(1000);
    await waitEvent(first, 'close');
    expect(dialler.closed).toBe(false);
    again.close(1000);
    expect(await closed).toEqual([1000, 'offers moved']);
    expect(dialler.keepOpen()).toBe(false);
  });

  it('an open request over 4 KiB is refused at the opener, before the peer would close the connection for it', async () => {
    const { stream, dialler } = await oneRawStream();
    expect(() =>
      dialler.open('mux://big', { path: '/big', authorization: 'x'.repeat(5000), protocols: [] }),
    ).toThrow(/may not exceed 4096 bytes/);
    expect(dialler.size).toBe(1);
    const back = once(stream, 'close') as Promise<[number, Buffer]>;
    const next = dialler.open('mux://ok', {
      path: '/ok',
      authorization: 'x'.repeat(3000),
      protocols: [],
    });
    expect(await answerOf(next)).toBeUndefined();
    stream.close(1000);
    expect((await back)[0]).toBe(1000);
    expect(dialler.closed).toBe(false);
  });

  it('kept open in the same turn as it was told to close when idle (no stream on it), it stays open', async () => {
    const { dialler, listener } = await carrierPair();
    dialler.on('open-request', (s) => s.accept(''));
    dialler.closeWhenIdle(1000, 'offers moved');
    expect(dialler.keepOpen()).toBe(true);
    const stream = listener.open('mux://x', { path: '/x', authorization: '', protocols: [] });
    expect(await answerOf(stream)).toBeUndefined();
    expect(dialler.closed).toBe(false);
    expect(listener.closed).toBe(false);
  });
});

/** Frames written by hand, as a hostile peer would. */
function frame(type: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(9 + payload.length);
  writeMuxHeader(out, 0, type as MuxFrameType, stream, payload.length);
  payload.copy(out, 9);
  return out;
}
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const openPayload = Buffer.from(JSON.stringify({ path: '/p', authorization: '', protocols: [] }));

describe('mux session against a peer that breaks the rules', () => {
  const cases: Array<[string, (ws: WebSocket) => void, RegExp]> = [
    ['a text message', (ws) => ws.send('hello'), /text message/],
    ['a truncated header', (ws) => ws.send(Buffer.from([4, 0, 0])), /truncated frame header/],
    ['an unknown frame type', (ws) => ws.send(frame(99, 1)), /unknown frame type 99/],
    [
      'data for a stream never opened',
      (ws) => ws.send(frame(4, 7, Buffer.from('x'))),
      /unknown stream 7/,
    ],
    ["an open with the listener's parity", (ws) => ws.send(frame(1, 2, openPayload)), /parity/],
    ['an open that is not JSON', (ws) => ws.send(frame(1, 1, Buffer.from('{'))), /not JSON/],
    [
      'the same id opened twice',
      (ws) => ws.send(Buffer.concat([frame(1, 1, openPayload), frame(1, 1, openPayload)])),
      /already open/,
    ],
    [
      'a window overflow',
      (ws) => ws.send(Buffer.concat([frame(1, 1, openPayload), frame(6, 1, u32(0x7fffffff))])),
      /window overflow/,
    ],
    [
      'payload past the window',
      (ws) => {
        // The acceptor grants a stream alone 2 MiB (and does not read): 129 full frames are one
        // too many (in messages under the listener's 1 MiB).
        const full = (): Buffer => frame(4, 1, Buffer.alloc(16 * 1024));
        ws.send(Buffer.concat([frame(1, 1, openPayload), ...Array.from({ length: 40 }, full)]));
        ws.send(Buffer.concat(Array.from({ length: 40 }, full)));
        ws.send(Buffer.concat(Array.from({ length: 40 }, full)));
        ws.send(Buffer.concat(Array.from({ length: 9 }, full)));
      },
      /window exceeded/,
    ],
    [
      'an empty data frame',
      (ws) => ws.send(Buffer.concat([frame(1, 1, openPayload), frame(4, 1)])),
      /empty payload/,
    ],
    [
      'a data frame longer than allowed',
      (ws) =>
        ws.send(
          Buffer.concat([frame(1, 1, openPayload), frame(4, 1, Buffer.alloc(16 * 1024 + 1))]),
        ),
      /too long/,
    ],
    [
      'a flood of frames',
      (ws) =>
        ws.send(
          Buffer.concat([
            frame(1, 1, openPayload),
            ...Array.from({ length: 3000 }, () => frame(4, 1, Buffer.from('x'))),
          ]),
        ),
      /frame flood/,
    ],
  ];

  it.each(cases)(
    '%s: closes the connection with 1002, its streams as lost, and keeps serving',
    async (_name, send, reason) => {
      const errors: string[] = [];
      const lost: number[] = [];
      let accepted = 0;
      const listener = await startListener({ maxFramesPerSecond: 2000 }, (session) => {
        session.on('protocol-error', (m) => errors.push(m));
        session.on('open-request', (s) => {
          accepted++;
          s.accept('');
          // Not read: what the peer sends stays within the credit this side granted.
          s.on('close', (code) => lost.push(code));
        });
      });
      // A good stream is open on the connection when the bad frames come.
      const ws = await dialWs(listener.port);
      ws.send(frame(1, 3, openPayload));
      await waitFor(() => listener.sessions[0]?.size === 1, 10_000, 'the good stream');
      send(ws);
      const [code, why] = (await once(ws, 'close', { signal: AbortSignal.timeout(20_000) })) as [
        number,
        Buffer,
      ];
      expect(code).toBe(1002);
      expect(why.toString()).toMatch(reason);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(reason);
      expect(listener.sessions[0]?.closed).toBe(true);
      expect(listener.sessions[0]?.size).toBe(0);
      expect(listener.sessions[0]?.bufferedBytes).toBe(0);
      // Every stream the connection had (the good one, and the bad one when it got that far).
      expect(accepted).toBeGreaterThanOrEqual(1);
      expect(lost).toEqual(Array.from({ length: accepted }, () => 1006));

      // The listener takes the next connection as if nothing happened.
      const good = new MuxSession(await dialWs(listener.port), { role: 'dialler' });
      const s = good.open('mux://ok', { path: '/ok', authorization: '', protocols: [] });
      await waitEvent(s, 'open');
      const back = listener.sessions[1];
      expect(back?.size).toBe(1);
    },
  );
});
