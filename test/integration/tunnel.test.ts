import { afterEach, describe, expect, it } from 'vitest';
import { closed, dial, randomBytes, readAll, sha256, waitEvent } from '../helpers/net.js';
import { startDigestServer, startEchoServer, startServer } from '../helpers/servers.js';
import { startTestTunnel, type TestTunnel } from '../helpers/tunnel.js';

describe('tunnel through hub, agent and proxy', () => {
  let tun: TestTunnel;
  afterEach(() => tun.close());

  it('echoes a small payload byte-exact', async () => {
    tun = await startTestTunnel(startEchoServer());
    const client = await dial(tun.proxy.port);
    const payload = Buffer.from('hello, device\n');
    client.end(payload);
    expect(await readAll(client)).toEqual(payload);
  });

  it('echoes 8 MiB of random bytes byte-exact', async () => {
    tun = await startTestTunnel(startEchoServer());
    const client = await dial(tun.proxy.port);
    const payload = randomBytes(8 * 1024 * 1024);
    client.end(payload);
    const back = await readAll(client);
    expect(back.length).toBe(payload.length);
    expect(sha256(back)).toBe(sha256(payload));
  });

  it('carries 50 concurrent streams to one device, each checksummed', async () => {
    tun = await startTestTunnel(startEchoServer());
    const runs = Array.from({ length: 50 }, async (_, i) => {
      const payload = randomBytes(64 * 1024 + i * 997);
      const client = await dial(tun.proxy.port);
      client.end(payload);
      const back = await readAll(client);
      return sha256(back) === sha256(payload) && back.length === payload.length;
    });
    const results = await Promise.all(runs);
    expect(results.filter(Boolean)).toHaveLength(50);
  });

  it('frees the stream everywhere once it completes, and counts its bytes', async () => {
    tun = await startTestTunnel(startEchoServer());
    const hubEnd = waitEvent<{ bytesToDevice: number; bytesFromDevice: number }>(
      tun.t.hub.streams,
      'stream-end',
    );
    const agentEnd = waitEvent<{ end: string }>(tun.agent, 'stream-end');
    const client = await dial(tun.proxy.port);
    client.end('xyz');
    await readAll(client);
    await closed(client);
    expect(await hubEnd).toMatchObject({ bytesToDevice: 3, bytesFromDevice: 3 });
    expect(await agentEnd).toMatchObject({ end: 'completed' });
    expect(tun.t.hub.streams.size).toBe(0);
    expect(tun.agent.activeStreams).toBe(0);
  });

  it('client EOF reaches the device target, whose reply still comes back', async () => {
    tun = await startTestTunnel(startDigestServer());
    const client = await dial(tun.proxy.port);
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    client.end(payload);
    const reply = (await readAll(client)).toString();
    expect(reply).toBe(`${payload.length} ${sha256(payload)}`);
  });

  it('a target that speaks first (like sshd) is heard before the client says anything', async () => {
    tun = await startTestTunnel(
      startServer((s) => {
        s.write('SSH-2.0-banner\r\n');
        s.on('data', (d) => s.write(d));
        s.on('end', () => s.end());
      }),
    );
    const client = await dial(tun.proxy.port);
    const banner = await new Promise<Buffer>((resolve) => client.once('data', resolve));
    expect(banner.toString()).toBe('SSH-2.0-banner\r\n');
    client.end('ping');
    expect((await readAll(client)).toString()).toBe('ping');
  });
});
