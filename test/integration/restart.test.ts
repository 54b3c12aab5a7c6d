import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent/agent.js';
import { startTestHub, makeTempDir, type TestHub } from '../helpers/hub.js';
import { dial, readAll, waitEvent } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { startConnectedAgent, startTestProxy } from '../helpers/tunnel.js';
import { rmSync } from 'node:fs';

describe('hub restart', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('keeps the registry, keys and certificate; the agent comes back by itself', async () => {
    const dataDir = makeTempDir();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const echo: TestServer = await startEchoServer();
    cleanups.push(() => echo.close());
    const first: TestHub = await startTestHub({ dataDir });
    const cs = await first.addDevice('pi-01');
    await first.registry.add('spare');
    const agent: Agent = await startConnectedAgent(
      cs,
      new Map([['echo', { host: '127.0.0.1', port: echo.port }]]),
    );
    cleanups.push(() => agent.close());
    const port = first.hub.port;
    const fingerprint = first.state.tls?.fingerprint;
    const lost = waitEvent(agent, 'disconnected');
    await first.stop();
    await lost;

    const second = await startTestHub({ dataDir, port });
    cleanups.push(() => second.cleanup());
    expect(second.state.created).toBe(false);
    expect(second.state.tls?.fingerprint).toBe(fingerprint);
    expect(second.serviceString).toBe(first.serviceString);
    expect((await second.registry.list()).map((d) => d.deviceId)).toEqual(['pi-01', 'spare']);
    await waitEvent(agent, 'connected', 20_000);
    const proxy = await startTestProxy(second, 'pi-01', 'echo');
    cleanups.push(() => proxy.close());
    const client = await dial(proxy.port);
    client.end('after restart');
    expect((await readAll(client)).toString()).toBe('after restart');
  });
});
