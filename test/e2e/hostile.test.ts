import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { startAgent } from '../../src/agent/agent.js';
import { expiryIn, signSas } from '../../src/auth/sas.js';
import {
  parseConnectionString,
  type DeviceConnectionString,
  type ServiceConnectionString,
} from '../../src/auth/connection-string.js';
import { silentLogger } from '../../src/log/logger.js';
import { startProxy } from '../../src/proxy/proxy.js';
import { hubTarget } from '../../src/service/credentials.js';
import { RegistryClient } from '../../src/service/registry-client.js';
import { startCliHub, type CliTunnel } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';
import { dial, readAll, waitEvent, waitFor } from '../helpers/net.js';
import { startEchoServer } from '../helpers/servers.js';

const fds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;
const rssMiB = (pid: number): number =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

/** Open a TLS connection to the hub (any certificate: this client is the attacker), send `data`, wait for the hub to close. */
function hit(
  port: number,
  data: Buffer | string,
  { end = true, timeoutMs = 10_000 } = {},
): Promise<string> {
  return new Promise((resolve) => {
    const s: TLSSocket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(got + '[client timeout]');
    }, timeoutMs);
    s.on('data', (d: Buffer) => (got += d.toString('latin1').slice(0, 200)));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.once('secureConnect', () => {
      s.write(data);
      if (end) s.end();
    });
  });
}

/** Run `n` tasks, `width` at a time. */
async function pool(
  n: number,
  width: number,
  task: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

let dir: string;
let hub: CliTunnel | undefined;
afterAll(async () => {
  await hub?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('a hostile client cannot take the hub down, leak descriptors or grow its memory', async () => {
  dir = makeTempDir('dstream-hostile-');
  // High per-address limits, so the flood reaches the parsers instead of being throttled early.
  hub = await startCliHub(join(dir, 'hub'), [
    '--headers-timeout',
    '1',
    '--auth-failures-per-minute',
    '1000000',
    '--max-unauthenticated-per-ip',
    '100000',
  ]);
  const pid = hub.hub.child.pid ?? 0;
  const port = hub.hubPort;
  const service = parseConnectionString(hub.serviceString) as ServiceConnectionString;
  const registry = new RegistryClient(service, hubTarget(service));
  const info = await registry.add('dev');
  const device = parseConnectionString(info.connectionString ?? '') as DeviceConnectionString;
  const echo = await startEchoServer();
  const agent = startAgent(
    { credential: device, allow: new Map([['e', { host: '127.0.0.1', port: echo.port }]]) },
    silentLogger,
  );
  await waitEvent(agent, 'connected');
  const proxy = await startProxy(
    {
      credential: service,
      target: hubTarget(service),
      deviceId: 'dev',
      streamName: 'e',
      bindHost: '127.0.0.1',
      port: 0,
    },
    silentLogger,
  );
  const roundTrip = async (text: string): Promise<void> => {
    const c = await dial(proxy.port);
    c.end(text);
    expect((await readAll(c)).toString()).toBe(text);
  };
  await roundTrip('warm-up');
  await waitFor(() => fds(pid) < 40, 10_000, 'warm-up connections to close');
  const base = { fds: fds(pid), rss: rssMiB(pid) };
  const started = Date.now();

  // 1. Malformed HTTP requests.
  const malformed = [
    'GARBAGE\r\n\r\n',
    'GET /\r\n\r\n',
    'GET /devices HTTP/1.1\r\nHost: x\r\nAuthorization: SharedAccessSignature sr=%ZZ&sig=&se=1\r\n\r\n',
    `GET /devices/${'a'.repeat(5000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20000)}\r\n\r\n`,
    'POST /twins/%00/streams/%ZZ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
    'PATCH /devices/dev HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{',
    'POST /twins/dev/streams/e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
  ];
  await pool(1500, 40, (i) =>
    hit(port, i % 10 === 9 ? randomBytes(300) : (malformed[i % malformed.length] ?? '')),
  );

  // 2. Upgrade attempts: wrong paths, bad tokens, bad handshakes.
  const upgrade = (path: string, auth: string, key = 'dGhlIHNhbXBsZSBub25jZQ==') =>
    `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: ${auth}\r\n\r\n`;
  const deviceToken = signSas({
    resource: 'x/devices/dev',
    key: device.sharedAccessKey,
    expiry: expiryIn(600),
  });
  const upgrades = [
    upgrade('/devices/dev/control', 'SharedAccessSignature nope'),
    upgrade('/devices/ghost/control', deviceToken),
    upgrade('/bridges/nope', 'Bearer nope'),
    upgrade('/elsewhere', 'x'),
    upgrade('/devices/dev/control', deviceToken, 'not-a-key'),
  ];
  await pool(600, 40, (i) => hit(port, upgrades[i % upgrades.length] ?? ''));

  // 3. Garbage and oversized frames on an authenticated control socket (the hub must close it).
  const controlUpgrade = upgrade('/devices/dev/control', deviceToken).replace(
    '\r\n\r\n',
    '\r\nSec-WebSocket-Protocol: dstream.control.v1\r\n\r\n',
  );
  const frames = [
    randomBytes(64), // garbage
    Buffer.from([0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // absurd 64-bit length
    Buffer.from([0x81, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f]), // unmasked client frame
  ];
  await pool(150, 20, (i) =>
    hit(
      port,
      Buffer.concat([Buffer.from(controlUpgrade), frames[i % frames.length] ?? Buffer.alloc(0)]),
      { end: false },
    ),
  );
  await waitEvent(agent, 'connected', 60_000).catch(() => undefined); // each upgrade replaced the agent's control socket

  // 4. Half-open connections and slow headers: all must be cut off by the hub's timeouts.
  const slow = Array.from({ length: 100 }, (_, i) =>
    hit(port, i % 2 ? 'GET /healthz HTTP/1.1\r\nHost:' : '', { end: false, timeoutMs: 15_000 }),
  );
  const rawHalfOpen = await Promise.all(Array.from({ length: 100 }, () => dial(port)));
  const rawDropped = rawHalfOpen.map(
    (s) => new Promise((resolve) => s.once('end', resolve).once('close', resolve)),
  );
  for (const s of rawHalfOpen) s.resume();
  const slowResults = await Promise.all(slow);
  expect(slowResults.filter((r) => r.endsWith('[client timeout]'))).toHaveLength(0);
  await Promise.race([
    Promise.all(rawDropped),
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error('half-open TCP connections were not dropped')), 15_000),
    ),
  ]);
  for (const s of rawHalfOpen) s.destroy();
  const elapsed = Date.now() - started;

  // The hub still serves a real stream, and has let go of everything.
  await roundTrip('still serving');
  await waitFor(
    () => fds(pid) <= base.fds + 3,
    20_000,
    `hub fds back near ${base.fds} (now ${fds(pid)})`,
  );
  const after = { fds: fds(pid), rss: rssMiB(pid) };
  console.log(`hostile summary ${JSON.stringify({ elapsedMs: elapsed, base, after })}`);
  expect(after.rss).toBeLessThan(base.rss * 1.5 + 64);
  expect(hub.hub.child.exitCode).toBeNull();
  // Thousands of refusals were logged; not one carries a key or a token.
  const log = hub.hub.output();
  expect(log.length).toBeGreaterThan(0);
  for (const secret of [device.sharedAccessKey, service.sharedAccessKey, deviceToken.slice(22)])
    expect(log).not.toContain(secret);
  await proxy.close();
  await agent.close();
  await echo.close();
}, 180_000);
