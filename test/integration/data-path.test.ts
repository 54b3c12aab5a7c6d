import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { dial, readAll, waitFor } from '../helpers/net.js';
import { startServer } from '../helpers/servers.js';
import { startTestTunnel, type TestTunnel } from '../helpers/tunnel.js';

describe('data path', () => {
  let tun: TestTunnel;
  afterEach(() => tun.close());

  it('device-side EOF reaches the client, which can still send afterwards', async () => {
    let received = '';
    let done!: (text: string) => void;
    const targetDone = new Promise<string>((resolve) => (done = resolve));
    tun = await startTestTunnel(
      startServer((s) => {
        s.end('hello then EOF');
        s.on('data', (d: Buffer) => (received += d.toString()));
        s.on('end', () => done(received));
      }),
    );
    const client = await dial(tun.proxy.port);
    expect((await readAll(client)).toString()).toBe('hello then EOF');
    // Our read side has ended; the write side is still open and must reach the target.
    client.end('sent after EOF');
    expect(await targetDone).toBe('sent after EOF');
  });

  it('a client that does not read stalls the sender instead of filling memory, then gets every byte (heartbeats do not kill the stalled stream)', async () => {
    const total = 256 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    let written = 0;
    let lastProgress = Date.now();
    const expected = createHash('sha256');
    tun = await startTestTunnel(
      startServer((s) => {
        const pump = (): void => {
          while (written < total) {
            const piece = chunk.subarray(0, Math.min(chunk.length, total - written));
            written += piece.length;
            expected.update(piece);
            lastProgress = Date.now();
            if (!s.write(piece)) {
              s.once('drain', pump);
              return;
            }
          }
          s.end();
        };
        pump();
      }),
    );
    const client = await dial(tun.proxy.port);
    client.pause();
    // The sender stops making progress once every buffer on the way is full.
    await waitFor(
      () => written > 0 && Date.now() - lastProgress > 750,
      30_000,
      'the sender to stall',
    );
    const stalledAt = written;
    // Kernel socket buffers on four loopback hops hold some megabytes and user space about
    // 1 MiB per direction per hop (about 20 MiB measured here): nothing near the 256 MiB
    // offered. Unbounded buffering anywhere would let the sender write it all.
    expect(stalledAt).toBeLessThan(64 * 1024 * 1024);
    const hash = createHash('sha256');
    let got = 0;
    client.on('data', (d: Buffer) => {
      got += d.length;
      hash.update(d);
    });
    client.resume();
    await new Promise((resolve) => client.once('end', resolve));
    expect(got).toBe(total);
    expect(hash.digest('hex')).toBe(expected.digest('hex'));
  }, 120_000);
});
