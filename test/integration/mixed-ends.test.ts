import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../src/agent/agent.js';
import { silentLogger } from '../../src/log/logger.js';
import { startProxy } from '../../src/proxy/proxy.js';
import { proxyTo, startTestHub } from '../helpers/hub.js';
import { dial, randomBytes, readAll, sha256, waitEvent } from '../helpers/net.js';
import { startServer } from '../helpers/servers.js';

// A resumable (v2) end meets one that is not: the hub tells it `plain` and the stream runs
// as v1, byte-exact both ways and with half-close, whichever side speaks first. (A server
// that speaks first, as sshd does, once lost its banner here: the v2 end had read it before
// it knew its peer could not take a resumed stream.)

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

const banner = Buffer.from('SSH-2.0-test banner, sent before the client says anything\r\n');

/** Sends a banner at once, then echoes; ends its side once the client has ended. */
function startBannerEcho() {
  return startServer((s) => {
    s.write(banner);
    s.pipe(s);
  });
}

async function chain(agentResume: boolean, proxyResume: boolean) {
  const t = await startTestHub();
  cleanups.push(() => t.cleanup());
  const target = await startBannerEcho();
  cleanups.push(() => target.close());
  const agent: Agent = startAgent(
    {
      credential: await t.addDevice('dev'),
      allow: new Map([['t', { host: '127.0.0.1', port: target.port }]]),
      resume: agentResume,
    },
    silentLogger,
  );
  cleanups.push(() => agent.close());
  await waitEvent(agent, 'connected');
  const proxy = await startProxy({ ...proxyTo(t, 10), resume: proxyResume }, silentLogger);
  cleanups.push(() => proxy.close());
  return proxy;
}

describe('a resumable end and one that is not', () => {
  for (const [agentResume, proxyResume] of [
    [true, false],
    [false, true],
    [true, true],
  ] as const)
    it(`agent ${agentResume ? 'v2' : 'v1'}, proxy ${proxyResume ? 'v2' : 'v1'}: the banner, 1 MiB echoed and half-close arrive`, async () => {
      const proxy = await chain(agentResume, proxyResume);
      const payload = randomBytes(1024 * 1024);
      const client = await dial(proxy.port);
      // The banner comes before the client sends anything.
      const first = await new Promise<Buffer>((resolve) => client.once('data', resolve));
      expect(banner.subarray(0, first.length).equals(first)).toBe(true);
      client.unshift(first);
      client.end(payload);
      const all = await readAll(client);
      expect(all.length).toBe(banner.length + payload.length);
      expect(all.subarray(0, banner.length).equals(banner)).toBe(true);
      expect(sha256(all.subarray(banner.length))).toBe(sha256(payload));
    }, 30_000);
});
