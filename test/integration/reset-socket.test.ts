import { once } from 'node:events';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { resetSocket } from '../../src/net/reset.js';
import { closed, dial, randomBytes } from '../helpers/net.js';
import { startServer, type TestServer } from '../helpers/servers.js';

// resetSocket (src/net/reset.ts) on real loopback sockets. The case that matters: a socket
// ended and reset in the same tick. Node's own resetAndDestroy() there fails with EINVAL and
// never closes the handle ('close' never comes; the process spins at exit), which left agents
// on the multiplexed carrier spinning after CI's soak runs.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

/** A server that keeps its accepted sockets (unread until resumed) for the test to look at. */
async function peerServer(): Promise<{ server: TestServer; next: () => Promise<Socket> }> {
  const accepted: Socket[] = [];
  const waiting: ((s: Socket) => void)[] = [];
  const server = await startServer((socket) => {
    socket.pause();
    const w = waiting.shift();
    if (w) w(socket);
    else accepted.push(socket);
  });
  cleanups.push(() => server.close());
  return {
    server,
    next: () =>
      new Promise((resolve) => {
        const s = accepted.shift();
        if (s) resolve(s);
        else waiting.push(resolve);
      }),
  };
}

/** What the peer sees after the cut: the bytes it read, whether it saw EOF, and its error. */
async function peerSees(peer: Socket): Promise<{ bytes: number; ended: boolean; code?: string }> {
  let bytes = 0;
  let ended = false;
  let code: string | undefined;
  peer.on('data', (d: Buffer) => (bytes += d.length));
  peer.on('end', () => (ended = true));
  peer.on('error', (e: NodeJS.ErrnoException) => (code = e.code));
  peer.resume();
  if (!peer.closed) await new Promise((resolve) => peer.once('close', resolve));
  return { bytes, ended, ...(code ? { code } : {}) };
}

describe('resetSocket', () => {
  it('closes a socket ended in the same tick (its FIN in flight), then resets it', async () => {
    const { server, next } = await peerServer();
    const socket = await dial(server.port);
    const peer = await next();
    const errors: string[] = [];
    socket.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    await new Promise<void>((resolve) => socket.write('last words', () => resolve()));
    socket.end();
    // The shutdown is in flight now: this is where resetAndDestroy() alone leaks the handle.
    expect(socket.writableEnded && !socket.writableFinished).toBe(true);
    resetSocket(socket);
    const result = await closed(socket, 30_000);
    expect(errors).toEqual([]);
    expect(result.hadError).toBe(false);
    // The peer got what was written, then the FIN; the connection is gone at its end too:
    // writing into it fails (the RST: ECONNRESET or EPIPE, by timing).
    let bytes = 0;
    peer.on('data', (d: Buffer) => (bytes += d.length));
    peer.resume();
    if (!peer.readableEnded) await once(peer, 'end');
    expect(bytes).toBe('last words'.length);
    const failed = await new Promise<string>((resolve) => {
      peer.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      peer.write('anyone?');
    });
    expect(['ECONNRESET', 'EPIPE']).toContain(failed);
  });

  it('resets at once a socket whose writes are still queued (no shutdown asked for yet)', async () => {
    const { server, next } = await peerServer();
    const socket = await dial(server.port);
    await next();
    const errors: string[] = [];
    socket.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    // 16 MiB the paused peer does not read: most of it stays queued in this process.
    socket.write(randomBytes(16 * 1024 * 1024));
    socket.end();
    expect(socket.writableLength).toBeGreaterThan(0);
    resetSocket(socket);
    const result = await closed(socket, 30_000);
    expect(result.hadError).toBe(false);
    expect(errors).toEqual([]);
  });

  it('resets an open socket (the peer sees ECONNRESET, not an end)', async () => {
    const { server, next } = await peerServer();
    const socket = await dial(server.port);
    const peer = await next();
    resetSocket(socket);
    await closed(socket, 30_000);
    const seen = await peerSees(peer);
    expect(seen).toEqual({ bytes: 0, ended: false, code: 'ECONNRESET' });
  });

  it('destroys a stream that is not a TCP socket, with the error given', async () => {
    const stream = new PassThrough();
    const errors: string[] = [];
    stream.on('error', (e) => errors.push(e.message));
    const gone = new Promise((resolve) => stream.once('close', resolve));
    resetSocket(stream, new Error('stream cut'));
    await gone;
    expect(stream.destroyed).toBe(true);
    expect(errors).toEqual(['stream cut']);
  });
});
