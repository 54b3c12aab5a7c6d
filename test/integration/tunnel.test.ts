import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent/agent.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';
import { closed, dial, randomBytes, readAll, sha256, waitEvent } from '../helpers/net.js';
import { startDigestServer, startEchoServer, type TestServer } from '../helpers/servers.js';
import { startConnectedAgent, startTestProxy } from '../helpers/tunnel.js';

describe('tunnel through hub, agent and proxy', () => {
  let t: TestHub;
  let echo: TestServer;
  let agent: Agent;
  let proxy: Proxy;

  beforeEach(async () => {
    t = await startTestHub();
    echo = await startEchoServer();
    const cs = await t.addDevice('pi-01');
    agent = await startConnectedAgent(
      cs,
      new Map([['echo', { host: '127.0.0.1', port: echo.port }]]),
    );
    proxy = await startTestProxy(t, 'pi-01', 'echo');
  });

  afterEach(async () => {
    await proxy.close();
    await agent.close();
    await echo.close();
    await t.cleanup();
  });

  it('echoes a small payload byte-exact', async () => {
    const client = await dial(proxy.port);
    const payload = Buffer.from('hello, device\n');
    client.end(payload);
    expect(await readAll(client)).toEqual(payload);
  });

  it('echoes 8 MiB of random bytes byte-exact', async () => {
    const client = await dial(proxy.port);
    const payload = randomBytes(8 * 1024 * 1024);
    client.end(payload);
    const back = await readAll(client);
    expect(back.length).toBe(payload.length);
    expect(sha256(back)).toBe(sha256(payload));
  });

  it('carries 50 concurrent streams to one device, each checksummed', async () => {
    const runs = Array.from({ length: 50 }, async (_, i) => {
      const payload = randomBytes(64 * 1024 + i * 997);
      const client = await dial(proxy.port);
      client.end(payload);
      const back = await readAll(client);
      return sha256(back) === sha256(payload) && back.length === payload.length;
    });
    const results = await Promise.all(runs);
    expect(results.filter(Boolean)).toHaveLength(50);
  });

  it('closes the stream sockets on the hub after a stream completes', async () => {
    const hubEnd = waitEvent<{ bytesToDevice: number; bytesFromDevice: number }>(
      t.hub.streams,
      'stream-end',
    );
    const agentEnd = waitEvent<{ end: string }>(agent, 'stream-end');
    const client = await dial(proxy.port);
    client.end('xyz');
    await readAll(client);
    await closed(client);
    expect(await hubEnd).toMatchObject({ bytesToDevice: 3, bytesFromDevice: 3 });
    expect(await agentEnd).toMatchObject({ end: 'completed' });
    expect(t.hub.streams.size).toBe(0);
    expect(agent.activeStreams).toBe(0);
  });
});

describe('half-close', () => {
  let t: TestHub;
  let digest: TestServer;
  let agent: Agent;
  let proxy: Proxy;

  beforeEach(async () => {
    t = await startTestHub();
    digest = await startDigestServer();
    agent = await startConnectedAgent(
      await t.addDevice('dev'),
      new Map([['digest', { host: '127.0.0.1', port: digest.port }]]),
    );
    proxy = await startTestProxy(t, 'dev', 'digest');
  });

  afterEach(async () => {
    await proxy.close();
    await agent.close();
    await digest.close();
    await t.cleanup();
  });

  it('client EOF reaches the device target, whose reply still comes back', async () => {
    const client = await dial(proxy.port);
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    client.end(payload);
    const reply = (await readAll(client)).toString();
    expect(reply).toBe(`${payload.length} ${sha256(payload)}`);
  });
});
