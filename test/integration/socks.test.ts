import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/logger.js';
import { socksReply, startSocksProxy } from '../../src/proxy/socks-server.js';
import { hubTarget } from '../../src/service/credentials.js';
import { startTestHub } from '../helpers/hub.js';
import { dial } from '../helpers/net.js';
import { startConnectedAgent } from '../helpers/tunnel.js';

function curl(args: readonly string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '--max-time', '20', ...args], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

/** A raw SOCKS5 CONNECT to `host:port`; resolves with the reply code. */
async function socksConnect(proxyPort: number, host: string, port: number): Promise<number> {
  const s = await dial(proxyPort);
  const name = Buffer.from(host);
  s.write(Buffer.from([5, 1, 0]));
  s.write(
    Buffer.concat([
      Buffer.from([5, 1, 0, 3, name.length]),
      name,
      Buffer.from([port >> 8, port & 0xff]),
    ]),
  );
  const answer = await new Promise<Buffer>((resolve) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 12) resolve(buf);
    });
  });
  s.destroy();
  expect([...answer.subarray(0, 2)]).toEqual([5, 0]);
  return answer[3] ?? -1;
}

describe('SOCKS5: the host is a device ID, the port the remote port', () => {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('curl --socks5-hostname reaches an HTTP server on the device; failures map to reply codes', async () => {
    const t = await startTestHub();
    cleanups.push(() => t.cleanup());
    const web: Server = createServer((_req, res) => res.end('hello from the device\n'));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => web.close(r)));
    const webPort = (web.address() as AddressInfo).port;
    const agent = await startConnectedAgent(
      await t.addDevice('pi-01'),
      new Map([[String(webPort), { host: '127.0.0.1', port: webPort }]]),
    );
    cleanups.push(() => agent.close());
    await t.registry.add('offline-one');
    const socks = await startSocksProxy(
      { credential: t.service, target: hubTarget(t.service), bindHost: '127.0.0.1', port: 0 },
      silentLogger,
    );
    cleanups.push(() => socks.close());

    const ok = await curl([
      '--socks5-hostname',
      `127.0.0.1:${socks.port}`,
      `http://pi-01:${webPort}/`,
    ]);
    expect(ok).toEqual({ code: 0, stdout: 'hello from the device\n' });

    expect(await socksConnect(socks.port, 'pi-01', webPort)).toBe(socksReply.succeeded);
    expect(await socksConnect(socks.port, 'pi-01', 23)).toBe(socksReply.connectionRefused);
    expect(await socksConnect(socks.port, 'no-such-device', 22)).toBe(socksReply.hostUnreachable);
    expect(await socksConnect(socks.port, 'offline-one', 22)).toBe(socksReply.hostUnreachable);
    const refused = await curl([
      '--socks5-hostname',
      `127.0.0.1:${socks.port}`,
      `http://pi-01:23/`,
    ]);
    expect(refused.code).not.toBe(0);
  });
});
