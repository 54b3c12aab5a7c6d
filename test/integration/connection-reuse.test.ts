import type { AddressInfo, Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { HubConnectionPool } from '../../src/net/hub-client.js';
import { hubTarget } from '../../src/service/credentials.js';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log/logger.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';
import { closed, dial, randomBytes, readAll, waitFor } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { startConnectedAgent, startTestProxy } from '../helpers/tunnel.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

/** Every TCP connection the hub accepts (observed through its front door, not replaced). */
function watchConnections(t: TestHub): { all: Set<Socket>; open: () => number } {
  const all = new Set<Socket>();
  const guard = t.hub.guard;
  const admit = guard.admit.bind(guard);
  guard.admit = (socket: Socket) => {
    all.add(socket);
    return admit(socket);
  };
  return { all, open: () => [...all].filter((s) => !s.destroyed).length };
}

async function chain(headersTimeoutMs?: number): Promise<{
  t: TestHub;
  echo: TestServer;
  port: number;
  connections: ReturnType<typeof watchConnections>;
}> {
  const t = await startTestHub(headersTimeoutMs ? { headersTimeoutMs } : {});
  cleanups.push(() => t.cleanup());
  const connections = watchConnections(t);
  const echo = await startEchoServer();
  cleanups.push(() => echo.close());
  const agent = await startConnectedAgent(
    await t.addDevice('dev'),
    new Map([['echo', { host: '127.0.0.1', port: echo.port }]]),
  );
  cleanups.push(() => agent.close());
  const proxy = await startTestProxy(t, 'dev', 'echo', silentLogger);
  cleanups.push(() => proxy.close());
  return { t, echo, port: proxy.port, connections };
}

async function echoOnce(port: number): Promise<void> {
  const payload = randomBytes(10_000);
  const socket = await dial(port);
  const back = readAll(socket);
  socket.end(payload);
  expect((await back).equals(payload)).toBe(true);
  await closed(socket);
}

describe('connection reuse between the proxy/agent and the hub', () => {
  it('a stream costs two new hub connections (its two WebSockets), not three', async () => {
    const c = await chain();
    const before = c.connections.all.size;
    const n = 20;
    for (let i = 0; i < n; i++) await echoOnce(c.port);
    const made = c.connections.all.size - before;
    // Without reuse: n initiation requests + 2n stream sockets. With it: the stream sockets,
    // one kept-alive initiation connection and the spares the agent and proxy keep ready.
    expect(made).toBeGreaterThanOrEqual(2 * n);
    expect(made).toBeLessThanOrEqual(2 * n + 4);
  });

  it('a spare connection the hub dropped while idle is replaced, and the stream still works', async () => {
    const c = await chain(1000);
    await echoOnce(c.port);
    // Once the stream's sockets are gone: the agent's control socket, the proxy's kept-alive
    // initiation connection and the two spares. The hub drops the spares after its 1 s timeout.
    await waitFor(() => c.connections.open() === 4, 10_000, 'the stream sockets to close');
    await waitFor(() => c.connections.open() <= 2, 10_000, 'the hub to drop the idle spares');
    for (let i = 0; i < 3; i++) await echoOnce(c.port);
  });

  it('keeps a spare per address: a cluster node named by a streaming URL gets its own', async () => {
    const t = await startTestHub();
    cleanups.push(() => t.cleanup());
    // Another address serving the same certificate, as a second cluster node does.
    const accepted: Socket[] = [];
    const node = createTlsServer({ cert: t.state.tls?.cert, key: t.state.tls?.key }, (s) => {
      s.on('error', () => undefined);
      accepted.push(s);
    });
    await new Promise<void>((resolve) => node.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of accepted) s.destroy();
          node.close(() => resolve());
        }),
    );
    const hub = hubTarget(t.service);
    const other = { ...hub, port: (node.address() as AddressInfo).port };
    const pool = new HubConnectionPool(hub);
    cleanups.push(() => Promise.resolve(pool.close()));
    expect(pool.serves(other)).toBe(true);
    expect(pool.serves({ ...other, fingerprint: 'ab'.repeat(32) })).toBe(false);
    const first = await pool.takeConnection(undefined, other);
    expect(first.spare).toBe(false);
    // The spare for `other` is being made; the next take gets it, verified.
    await waitFor(() => accepted.length === 2, 5000, 'the spare to connect');
    const second = await pool.takeConnection(undefined, other);
    expect(second.spare).toBe(true);
    expect(second.socket.remotePort).toBe(other.port);
    first.socket.destroy();
    second.socket.destroy();
  });
});
