import { once } from 'node:events';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TickWriter } from '../../src/net/flow.js';
import { dial, randomBytes, readAll } from '../helpers/net.js';
import { startServer, type TestServer } from '../helpers/servers.js';

// TickWriter (src/net/flow.ts) on real loopback sockets: what a stream's end writes to its
// local socket in one turn of the event loop goes to the kernel together, after the turn, and
// back-pressure still holds.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

/** A server whose first accepted socket (paused) is handed to the test. */
async function oneConnection(): Promise<{ client: Socket; peer: Socket }> {
  let take: (s: Socket) => void = () => undefined;
  const accepted = new Promise<Socket>((resolve) => (take = resolve));
  const server: TestServer = await startServer((socket) => {
    socket.pause();
    take(socket);
  });
  cleanups.push(() => server.close());
  const client = await dial(server.port);
  const peer = await accepted;
  cleanups.push(() => {
    client.destroy();
    peer.destroy();
  });
  return { client, peer };
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('writes to a local socket, a turn at a time', () => {
  it('holds what one turn writes until the turn ends, then hands it over byte-exact', async () => {
    const { client, peer } = await oneConnection();
    const writer = new TickWriter(client, 128 * 1024);
    const pieces = Array.from({ length: 4 }, () => randomBytes(16 * 1024));
    const answers = pieces.map((p) => writer.write(p));
    // Corked: nothing reached the kernel yet (uncorked, the first write would have gone at
    // once), and the writer is not told to wait for one message's worth.
    expect(client.writableLength).toBe(4 * 16 * 1024);
    expect(client.writableCorked).toBe(1);
    expect(answers).toEqual([false, false, false, false]);
    await nextTurn();
    expect(client.writableCorked).toBe(0);
    const got = readAll(peer);
    peer.resume();
    client.end();
    expect((await got).equals(Buffer.concat(pieces))).toBe(true);
  });

  it('runs each write callback once its bytes are handed over', async () => {
    const { client, peer } = await oneConnection();
    const writer = new TickWriter(client, 128 * 1024);
    const done: number[] = [];
    writer.write(Buffer.from('one'), () => done.push(1));
    writer.write(Buffer.from('two'), () => done.push(2));
    expect(done).toEqual([]);
    const got = readAll(peer);
    peer.resume();
    await new Promise<void>((resolve) => writer.write(Buffer.from('three'), () => resolve()));
    expect(done).toEqual([1, 2]);
    client.end();
    expect((await got).toString()).toBe('onetwothree');
  });

  it('tells the writer to wait once the bound is buffered, and drains after the reader reads', async () => {
    const { client, peer } = await oneConnection();
    const bound = 128 * 1024;
    const writer = new TickWriter(client, bound);
    const sent: Buffer[] = [];
    let waitAt = -1;
    // The reader reads nothing: the kernel's buffers fill, then the socket's own.
    for (let turn = 0; turn < 16_384 && waitAt < 0; turn++) {
      for (let i = 0; i < 4 && waitAt < 0; i++) {
        const piece = randomBytes(16 * 1024);
        sent.push(piece);
        if (writer.write(piece)) waitAt = client.writableLength;
      }
      await nextTurn();
    }
    expect(waitAt).toBeGreaterThanOrEqual(bound);
    // Told to wait as soon as the bound was passed: one piece over it at most.
    expect(waitAt).toBeLessThan(bound + 16 * 1024);
    const drained = once(client, 'drain');
    const got = readAll(peer, 60_000);
    peer.resume();
    await drained;
    client.end();
    expect((await got).equals(Buffer.concat(sent))).toBe(true);
  });
});
