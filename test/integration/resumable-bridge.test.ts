import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import {
  resumableBridge,
  ResumeRefusedError,
  type ResumableBridge,
  type ResumableResult,
  type ResumeEvent,
} from '../../src/stream/resumable-bridge.js';
import { randomBytes, sha256, waitFor } from '../helpers/net.js';
import {
  startDigestServer,
  startEchoServer,
  startServer,
  type TestServer,
} from '../helpers/servers.js';

// Two ends of a resumable stream through a real relay (a WebSocket server pairing the two
// sockets of a path and passing every message on), whose connections the test cuts, and
// which it stops and starts again on the same port, as a hub killed and restarted would be.

interface Relay {
  readonly port: number;
  /** Drop every connection at once (a link or the hub gone), without a close frame. */
  cut(): void;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Payload bytes passed on so far. */
  forwarded(): number;
}

async function startRelay(port = 0): Promise<Relay> {
  let server: Server | undefined;
  let wss: WebSocketServer | undefined;
  let forwarded = 0;
  const waiting = new Map<string, WebSocket>();
  const backlog = new Map<
    WebSocket,
    { early: [RawData, boolean][]; keep: (data: RawData, isBinary: boolean) => number }
  >();
  let boundPort = port;
  const start = async (): Promise<void> => {
    const srv = createServer();
    const w = new WebSocketServer({ server: srv, perMessageDeflate: false });
    w.on('connection', (ws, req) => {
      ws.on('error', () => undefined);
      const key = req.url ?? '';
      // Messages that arrive before the partner does are kept and passed on first, as the
      // hub's stream endpoint does.
      const early: [RawData, boolean][] = [];
      const keep = (data: RawData, isBinary: boolean): number => early.push([data, isBinary]);
      ws.on('message', keep);
      const other = waiting.get(key);
      if (!other || other.readyState !== other.OPEN) {
        waiting.set(key, ws);
        backlog.set(ws, { early, keep });
        return;
      }
      waiting.delete(key);
      const pipe = (a: WebSocket, b: WebSocket): void => {
        const held = backlog.get(a) ?? { early, keep };
        a.off('message', held.keep);
        for (const [data, isBinary] of held.early) {
          if (isBinary) forwarded += (data as Buffer).length;
          b.send(data, { binary: isBinary });
        }
        a.on('message', (data: RawData, isBinary: boolean) => {
          if (isBinary) forwarded += (data as Buffer).length;
          b.send(data, { binary: isBinary });
        });
        a.on('close', (code: number) => {
          if (b.readyState === b.OPEN) b.close(code === 1005 ? 1000 : code);
        });
      };
      pipe(ws, other);
      pipe(other, ws);
      // As the hub does once it pairs two resumable halves: a ticket to each.
      for (const side of [ws, other])
        side.send(JSON.stringify({ type: 'ticket', ticket: 'v1.t.t' }));
    });
    await new Promise<void>((resolve) => srv.listen(boundPort, '127.0.0.1', resolve));
    boundPort = (srv.address() as AddressInfo).port;
    server = srv;
    wss = w;
  };
  await start();
  return {
    get port() {
      return boundPort;
    },
    cut: () => {
      waiting.clear();
      for (const c of wss?.clients ?? []) c.terminate();
    },
    stop: async () => {
      for (const c of wss?.clients ?? []) c.terminate();
      waiting.clear();
      wss?.close();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      server = undefined;
    },
    start,
    forwarded: () => forwarded,
  };
}

function openWs(port: number, path: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { perMessageDeflate: false });
    ws.on('error', reject);
    ws.once('open', () => {
      // Paused at once, as the hub client does: the bridge resumes it once it listens.
      ws.pause();
      ws.off('error', reject);
      ws.on('error', () => undefined);
      resolve(ws);
    });
  });
}

interface End {
  readonly bridge: ResumableBridge;
  readonly events: ResumeEvent[];
  readonly result: Promise<ResumableResult>;
}

/** Set by a test: every resumption is refused by the hub, for good. */
let refuseResumptions = false;

function startEnd(
  socket: Socket,
  relay: Relay,
  path: string,
  ws: WebSocket,
  windowMs = 10_000,
  replayBytes?: number,
): End {
  const events: ResumeEvent[] = [];
  let done!: (r: ResumableResult) => void;
  const result = new Promise<ResumableResult>((resolve) => (done = resolve));
  const bridge = resumableBridge(socket, ws, {
    // As stream-carrier.ts does when the hub answers 4xx: the ticket will never be taken.
    reconnect: () =>
      refuseResumptions
        ? Promise.reject(new ResumeRefusedError('the stream has ended'))
        : openWs(relay.port, path),
    resumeWindowMs: windowMs,
    backoff: { initialMs: 20, maxMs: 200 },
    ...(replayBytes !== undefined && { replayBytes }),
    onEvent: (e) => events.push(e),
    onEnd: done,
  });
  return { bridge, events, result };
}

/**
 * A stream through the relay: the test's client socket -> end A (bridging the accepted side)
 * -> relay -> end B (bridging a connection to `target`).
 */
async function tunnel(
  relay: Relay,
  target: TestServer,
  windowMs?: number,
  replayBytes?: number,
): Promise<{
  client: Socket;
  sideA: Socket;
  /** End B's connection to the target. */
  sideB: Socket;
  a: End;
  b: End;
  close: () => void;
}> {
  const path = `/s/${Math.random().toString(36).slice(2)}`;
  const listener = createTcpServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
  const client = connect({
    port: (listener.address() as AddressInfo).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  });
  client.on('error', () => undefined);
  const sideA = await accepted;
  sideA.on('error', () => undefined);
  const device = connect({ port: target.port, host: '127.0.0.1', allowHalfOpen: true });
  device.on('error', () => undefined);
  await new Promise((resolve) => device.once('connect', resolve));
  device.pause();
  const [wsA, wsB] = await Promise.all([openWs(relay.port, path), openWs(relay.port, path)]);
  const a = startEnd(sideA, relay, path, wsA, windowMs, replayBytes);
  const b = startEnd(device, relay, path, wsB, windowMs, replayBytes);
  return { client, sideA, sideB: device, a, b, close: () => listener.close() };
}

/** Read from `socket` until `n` bytes arrived (or the end); the hash and count. */
function readN(socket: Socket, n: number, onProgress?: (got: number) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => reject(new Error(`read ${got} of ${n} bytes`)), 60_000);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      onProgress?.(got);
      if (got >= n) {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks));
      }
    });
    socket.once('close', () => {
      clearTimeout(timer);
      if (got < n) reject(new Error(`closed after ${got} of ${n} bytes`));
    });
  });
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('resumable streams through a relay that is cut and restarted', () => {
  it('16 MiB echoed byte-exact while every connection is cut three times', async () => {
    const relay = await startRelay();
    const echo = await startEchoServer();
    cleanups.push(
      () => relay.stop(),
      () => echo.close(),
    );
    const t = await tunnel(relay, echo);
    cleanups.push(t.close, () => t.client.destroy());
    const data = randomBytes(16 * 1024 * 1024);
    const cutsAt = [2, 6, 11].map((mib) => mib * 1024 * 1024);
    const back = readN(t.client, data.length, (got) => {
      if (cutsAt.length > 0 && got >= (cutsAt[0] ?? Infinity)) {
        cutsAt.shift();
        relay.cut();
      }
    });
    t.client.write(data);
    expect(sha256(await back)).toBe(sha256(data));
    expect(cutsAt).toEqual([]);
    // Each end was suspended at every cut and came back (a cut that lands while the ends are
    // still reconnecting from the last one is one longer suspension).
    // The last bytes can arrive while one end is still reconnecting after the last cut (its
    // peer's socket is back first): wait for its resumption rather than look at once.
    for (const end of [t.a, t.b]) {
      expect(end.events.filter((e) => e.type === 'resumed').length).toBeGreaterThanOrEqual(1);
      await waitFor(() => end.events.at(-1)?.type === 'resumed', 20_000, 'the last resumption');
    }
    t.client.end();
  });

  it('half-close survives the relay stopping and starting again on its port', async () => {
    const relay = await startRelay();
    const digest = await startDigestServer();
    cleanups.push(
      () => relay.stop(),
      () => digest.close(),
    );
    const t = await tunnel(relay, digest);
    cleanups.push(t.close, () => t.client.destroy());
    const data = randomBytes(4 * 1024 * 1024);
    const answer = new Promise<string>((resolve) => {
      let text = '';
      t.client.on('data', (d: Buffer) => (text += d.toString()));
      t.client.once('end', () => resolve(text));
    });
    t.client.write(data.subarray(0, 1024 * 1024));
    await waitFor(() => relay.forwarded() >= 256 * 1024, 10_000, 'bytes crossing the relay');
    await relay.stop();
    // While the relay is away the client finishes writing and half-closes.
    t.client.end(data.subarray(1024 * 1024));
    await relay.start();
    expect(await answer).toBe(`${data.length} ${sha256(data)}`);
    const [ra, rb] = await Promise.all([t.a.result, t.b.result]);
    expect(ra).toMatchObject({ end: 'completed', bytesSent: data.length, resumptions: 1 });
    expect(rb).toMatchObject({ end: 'completed', bytesReceived: data.length, resumptions: 1 });
  });

  it('a resumption the hub refuses ends the stream at once, not after the window, and says why', async () => {
    const relay = await startRelay();
    const echo = await startEchoServer();
    cleanups.push(() => echo.close());
    // A minute's window: a retrying end would outlive the test's timeout.
    const t = await tunnel(relay, echo, 60_000);
    cleanups.push(t.close);
    cleanups.push(() => (refuseResumptions = false));
    refuseResumptions = true;
    relay.cut();
    const [ra, rb] = await Promise.all([t.a.result, t.b.result]);
    expect(ra).toMatchObject({
      end: 'gave-up',
      reason: 'the hub refused to resume the stream: the stream has ended',
    });
    expect(rb.end).toBe('gave-up');
  }, 20_000);

  it('past the resume window the stream ends with a reset and says why', async () => {
    const relay = await startRelay();
    const echo = await startEchoServer();
    cleanups.push(() => echo.close());
    const t = await tunnel(relay, echo, 500);
    cleanups.push(t.close);
    const reset = new Promise<string | undefined>((resolve) =>
      t.client.once('error', (e: NodeJS.ErrnoException) => resolve(e.code)),
    );
    await relay.stop();
    const [ra, rb] = await Promise.all([t.a.result, t.b.result]);
    expect(ra).toMatchObject({ end: 'gave-up', reason: 'did not resume within 1 s' });
    expect(rb.end).toBe('gave-up');
    expect(await reset).toBe('ECONNRESET');
  });

  it('a reader that stops while the link is cut does not grow the replay past its bound', async () => {
    const relay = await startRelay();
    // A device-side service that accepts and never reads.
    const sinkServer = await startServer((s) => s.pause());
    cleanups.push(
      () => relay.stop(),
      () => sinkServer.close(),
    );
    const bound = 1024 * 1024;
    const t = await tunnel(relay, sinkServer, 10_000, bound);
    cleanups.push(t.close, () => t.client.destroy());
    relay.cut();
    // Write far more than the bound; the client's writes back up instead.
    const chunk = randomBytes(64 * 1024);
    let written = 0;
    for (let i = 0; i < 512; i++) {
      t.client.write(chunk);
      written += chunk.length;
    }
    expect(written).toBe(32 * 1024 * 1024);
    // The end fills its replay to the bound and stops reading: with the socket paused, nothing
    // more is taken in, so the bound holds from then on.
    await waitFor(() => t.a.bridge.replayBytes() >= bound, 10_000, 'the replay filling up');
    expect(t.sideA.isPaused()).toBe(true);
    // One read's worth of slack over the bound at most (a TCP read is at most 64 KiB here).
    expect(t.a.bridge.replayBytes()).toBeLessThanOrEqual(bound + 64 * 1024);
    expect(t.client.writableLength).toBeGreaterThan(16 * 1024 * 1024);
  });
});

describe('a resumption while the receiving application reads slowly', () => {
  it('the peer resends from what the application took, not from what arrived: no window overrun, byte-exact', async () => {
    const relay = await startRelay();
    // A device-side service that reads nothing until released, then hashes everything.
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const digests: Promise<{ bytes: number; sha: string }>[] = [];
    const slowServer = await startServer((s) => {
      s.pause();
      digests.push(
        new Promise((resolve) => {
          const hash = createHash('sha256');
          let bytes = 0;
          s.on('data', (d: Buffer) => {
            bytes += d.length;
            hash.update(d);
          });
          s.on('end', () => {
            resolve({ bytes, sha: hash.digest('hex') });
            s.end();
          });
          // Reset before its end: what arrived, marked incomplete.
          s.on('close', () => resolve({ bytes, sha: 'reset before the end' }));
          void released.then(() => s.resume());
        }),
      );
    });
    cleanups.push(
      () => relay.stop(),
      () => slowServer.close(),
    );
    const bound = 2 * 1024 * 1024;
    const t = await tunnel(relay, slowServer, 20_000, bound);
    cleanups.push(t.close, () => t.client.destroy());
    const data = randomBytes(48 * 1024 * 1024);
    t.client.end(data);
    // The kernel's buffers toward the reader are full, and end B holds what they would not
    // take (about a window, 256 KiB of acknowledgement lag aside) for the reader.
    const holding = (): boolean =>
      t.a.bridge.replayBytes() >= bound && t.sideB.writableLength >= bound - 256 * 1024;
    await waitFor(holding, 20_000, 'end B holding a window');
    relay.cut();
    const resumed = (end: End): Promise<void> =>
      waitFor(() => end.events.some((e) => e.type === 'resumed'), 20_000, 'a resumption');
    await Promise.all([resumed(t.a), resumed(t.b)]);
    // A sends until its window is full again, and B holds a window again, not more. Had B
    // resumed from what had arrived, A would have taken B's queued bytes off its window and
    // sent a whole window on top of them: B ends the stream then (the peer overran it).
    let ended: ResumableResult | undefined;
    void t.b.result.then((r) => (ended = r));
    await waitFor(() => ended !== undefined || holding(), 20_000, 'the window again, or an end');
    expect(ended).toBeUndefined();
    expect(t.sideB.writableLength).toBeLessThanOrEqual(bound + 64 * 1024);
    release();
    await waitFor(() => digests.length === 1, 10_000, 'the connection');
    expect(await digests[0]).toEqual({ bytes: data.length, sha: sha256(data) });
    expect((await t.b.result).end).toBe('completed');
  });
});

describe("a stream's first socket", () => {
  /**
   * One end whose stream socket goes to a fake hub that plays the peer too: it sends the
   * ticket and, when the test says, the peer's resume; it records what the end sends.
   */
  async function endAgainstFakePeer(): Promise<{
    local: Socket;
    peer: WebSocket;
    got: { text: string[]; bytes: Buffer[] };
    result: Promise<ResumableResult>;
  }> {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
    await new Promise((resolve) => wss.once('listening', resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const c of wss.clients) c.terminate();
          wss.close(() => resolve());
        }),
    );
    const port = (wss.address() as AddressInfo).port;
    const got = { text: [] as string[], bytes: [] as Buffer[] };
    const peerP = new Promise<WebSocket>((resolve) =>
      wss.once('connection', (ws) => {
        ws.on('error', () => undefined);
        ws.on('message', (data: Buffer, isBinary: boolean) =>
          isBinary ? got.bytes.push(data) : got.text.push(data.toString()),
        );
        resolve(ws);
      }),
    );
    const server = createTcpServer({ allowHalfOpen: true, pauseOnConnect: true });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const acceptedP = new Promise<Socket>((resolve) => server.once('connection', resolve));
    const client = connect({
      port: (server.address() as AddressInfo).port,
      host: '127.0.0.1',
      allowHalfOpen: true,
    });
    client.on('error', () => undefined);
    cleanups.push(() => void client.destroy());
    const accepted = await acceptedP;
    accepted.on('error', () => undefined);
    const ws = await openWs(port, '/s/first');
    let done!: (r: ResumableResult) => void;
    const result = new Promise<ResumableResult>((resolve) => (done = resolve));
    const bridge = resumableBridge(accepted, ws, {
      reconnect: () => Promise.reject(new ResumeRefusedError('no resumptions here')),
      resumeWindowMs: 10_000,
      onEnd: done,
    });
    cleanups.push(() => bridge.close());
    const peer = await peerP;
    return { local: client, peer, got, result };
  }

  it("sends payload right after its own resume, without waiting a round trip for the peer's, and replays nothing when that resume comes", async () => {
    const { local, peer, got } = await endAgainstFakePeer();
    local.write('early bytes');
    peer.send(JSON.stringify({ type: 'ticket', ticket: 'v1.t.t' }));
    await waitFor(() => got.bytes.length >= 1, 10_000, 'payload before the peer resumed');
    expect(got.text.map((t) => JSON.parse(t) as { type: string })[0]).toEqual({
      type: 'resume',
      received: 0,
    });
    expect(Buffer.concat(got.bytes).toString()).toBe('early bytes');
    // The peer's resume arrives late, from the start: nothing is sent again.
    peer.send(JSON.stringify({ type: 'resume', received: 0 }));
    local.write(' and more');
    await waitFor(
      () => Buffer.concat(got.bytes).length >= 'early bytes and more'.length,
      10_000,
      'the next bytes',
    );
    expect(Buffer.concat(got.bytes).toString()).toBe('early bytes and more');
  });

  it('closes without a last acknowledgement when it has nothing new to acknowledge, and with one when it has', async () => {
    const frames = (texts: string[]): unknown[] => texts.map((t) => JSON.parse(t) as unknown);
    // Nothing received: the end says so with its resume and owes no acknowledgement.
    {
      const { local, peer, got, result } = await endAgainstFakePeer();
      const closed = new Promise<number>((resolve) => peer.once('close', resolve));
      peer.send(JSON.stringify({ type: 'ticket', ticket: 'v1.t.t' }));
      peer.send(JSON.stringify({ type: 'resume', received: 0 }));
      local.end();
      await waitFor(() => got.text.length >= 2, 10_000, "the end's eof");
      peer.send(JSON.stringify({ type: 'eof', sent: 0 }));
      expect(await closed).toBe(1000);
      expect((await result).end).toBe('completed');
      expect(frames(got.text)).toEqual([
        { type: 'resume', received: 0 },
        { type: 'eof', sent: 0 },
      ]);
    }
    // Five bytes passed on: acknowledged once, before the close.
    {
      const { local, peer, got, result } = await endAgainstFakePeer();
      const closed = new Promise<number>((resolve) => peer.once('close', resolve));
      let read = '';
      local.on('data', (d: Buffer) => (read += d.toString()));
      peer.send(JSON.stringify({ type: 'ticket', ticket: 'v1.t.t' }));
      peer.send(JSON.stringify({ type: 'resume', received: 0 }));
      peer.send(Buffer.from('hello'), { binary: true });
      peer.send(JSON.stringify({ type: 'eof', sent: 5 }));
      await waitFor(() => read === 'hello', 10_000, 'the bytes at the local socket');
      local.end();
      expect(await closed).toBe(1000);
      expect((await result).end).toBe('completed');
      // The acknowledgement goes at the close, or earlier if the end was idle 50 ms first
      // (a slow machine): once either way.
      expect(frames(got.text)[0]).toEqual({ type: 'resume', received: 0 });
      expect(frames(got.text).slice(1)).toHaveLength(2);
      expect(frames(got.text).slice(1)).toEqual(
        expect.arrayContaining([
          { type: 'eof', sent: 0 },
          { type: 'ack', received: 5 },
        ]),
      );
    }
  });

  it('ends with a protocol error when the first resume does not come from the start', async () => {
    const { peer, result } = await endAgainstFakePeer();
    peer.send(JSON.stringify({ type: 'ticket', ticket: 'v1.t.t' }));
    peer.send(JSON.stringify({ type: 'resume', received: 5 }));
    const ended = await result;
    expect(ended.end).toBe('protocol-error');
    expect(ended.reason).toBe('a first resume that is not from the start');
  });
});
