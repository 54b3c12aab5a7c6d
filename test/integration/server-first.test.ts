import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent/agent.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';
import { dial, readAll } from '../helpers/net.js';
import { startServer, type TestServer } from '../helpers/servers.js';
import { startConnectedAgent, startTestProxy } from '../helpers/tunnel.js';

describe('a target that speaks first (like sshd)', () => {
  let t: TestHub;
  let target: TestServer;
  let agent: Agent;
  let proxy: Proxy;

  beforeEach(async () => {
    t = await startTestHub();
    target = await startServer((s) => {
      s.write('SSH-2.0-banner\r\n');
      s.on('data', (d) => s.write(d));
      s.on('end', () => s.end());
    });
    agent = await startConnectedAgent(
      await t.addDevice('d1'),
      new Map([['22', { host: '127.0.0.1', port: target.port }]]),
    );
    proxy = await startTestProxy(t, 'd1', '22');
  });

  afterEach(async () => {
    await proxy.close();
    await agent.close();
    await target.close();
    await t.cleanup();
  });

  it('delivers the banner before the client says anything', async () => {
    const client = await dial(proxy.port);
    const banner = await new Promise<Buffer>((resolve) => client.once('data', resolve));
    expect(banner.toString()).toBe('SSH-2.0-banner\r\n');
    client.end('ping');
    expect((await readAll(client)).toString()).toBe('ping');
  });
});
