import type { Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closed, dial, waitFor } from '../helpers/net.js';
import { startServer } from '../helpers/servers.js';
import { startTestTunnel, type TestTunnel } from '../helpers/tunnel.js';

/** Any socket closing on any of the four legs closes the rest, and nothing is left behind. */
describe('stream teardown', () => {
  let tun: TestTunnel;
  const arrived: Socket[] = [];
  /** Resolves when a target socket has read EOF; its listener is there from the start. */
  const eofOf = new Map<Socket, Promise<void>>();

  beforeEach(async () => {
    arrived.length = 0;
    tun = await startTestTunnel(
      startServer((s) => {
        arrived.push(s);
        eofOf.set(s, new Promise((resolve) => s.once('end', resolve)));
      }),
    );
  });
  afterEach(() => tun.close());

  async function openStream(): Promise<{ client: Socket; remote: Socket }> {
    const client = await dial(tun.proxy.port);
    client.write('hi');
    await waitFor(() => arrived.length > 0, 10_000, 'the target connection');
    const remote = arrived[0] as Socket;
    await new Promise((resolve) => remote.once('data', resolve));
    return { client, remote };
  }

  async function nothingLeft(): Promise<void> {
    await waitFor(() => tun.t.hub.streams.size === 0, 10_000, 'hub streams to be freed');
    await waitFor(() => tun.agent.activeStreams === 0, 10_000, 'agent streams to be freed');
    await waitFor(() => tun.proxy.activeStreams === 0, 10_000, 'proxy streams to be freed');
  }

  it('client reset mid-stream closes the target connection', async () => {
    const { client, remote } = await openStream();
    const remoteClosed = closed(remote);
    client.resetAndDestroy();
    await remoteClosed;
    await nothingLeft();
  });

  it('a stalled client (not reading) that resets: every leg is freed at once, not after the 30 s close timeout', async () => {
    const client = await dial(tun.proxy.port);
    client.pause();
    await waitFor(() => arrived.length > 0, 10_000, 'the target connection');
    const remote = arrived[0] as Socket;
    const chunk = Buffer.alloc(64 * 1024);
    // Fill every buffer on the way until the target can write no more.
    await new Promise<void>((resolve) => {
      const pump = (): void => {
        while (remote.write(chunk));
        const stalled = setTimeout(resolve, 500);
        remote.once('drain', () => {
          clearTimeout(stalled);
          pump();
        });
      };
      pump();
    });
    const remoteClosed = closed(remote);
    const resetAt = Date.now();
    client.resetAndDestroy();
    await remoteClosed;
    await nothingLeft();
    expect(Date.now() - resetAt).toBeLessThan(3000);
  });

  it('target reset mid-stream resets the client connection', async () => {
    const { client, remote } = await openStream();
    const clientClosed = closed(client);
    remote.resetAndDestroy();
    const result = await clientClosed;
    expect(result.hadError).toBe(true);
    expect(result.error?.code).toBe('ECONNRESET');
    await nothingLeft();
  });

  it('agent gone mid-stream closes the client connection', async () => {
    const { client } = await openStream();
    const clientClosed = closed(client);
    await tun.agent.close();
    expect((await clientClosed).hadError).toBe(true);
    await nothingLeft();
  });

  it('a client that resets before the stream is set up leaves nothing behind', async () => {
    // The proxy does not read a connection until its stream exists, so it learns of the reset
    // once the stream is set up; then every leg is torn down.
    const client = await dial(tun.proxy.port);
    client.resetAndDestroy();
    await nothingLeft();
  });

  it('a client that half-closes before the stream is set up: the target sees EOF and can still answer', async () => {
    const client = await dial(tun.proxy.port);
    client.end();
    await waitFor(() => arrived.length > 0, 10_000, 'the target connection');
    const remote = arrived[0] as Socket;
    // The EOF may well have come before we looked: that is why the listener is set on arrival.
    remote.resume();
    await eofOf.get(remote);
    remote.end('late answer');
    const chunks: Buffer[] = [];
    client.on('data', (d: Buffer) => chunks.push(d));
    await closed(client);
    expect(Buffer.concat(chunks).toString()).toBe('late answer');
    await nothingLeft();
  });
});
