import type { AddressInfo, Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { HubConnectionPool, type HubTarget } from '../../src/net/hub-client.js';
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

/**
 * A hub, and another address serving its certificate as a second cluster node does (a bare
 * TLS server: it drops no idle connection), with the connections it accepted.
 */
async function hubAndNode(): Promise<{ hub: HubTarget; other: HubTarget; accepted: Socket[] }> {
  const t = await startTestHub();
  cleanups.push(() => t.cleanup());
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
  return { hub, other: { ...hub, port: (node.address() as AddressInfo).port }, accepted };
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
    const { hub, other, accepted } = await hubAndNode();
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

  it('closes a spare nobody took once it is too old to be used (5 s), rather than holding it', async () => {
    // Not a hub: nothing there drops an idle connection, so only the pool can close the spare.
    const { hub, other, accepted } = await hubAndNode();
    const pool = new HubConnectionPool(hub);
    cleanups.push(() => Promise.resolve(pool.close()));
    const first = await pool.takeConnection(undefined, other);
    await waitFor(() => accepted.length === 2, 5000, 'the spare to connect');
    // Told apart by port: the spare's connect may be accepted first.
    const taken = accepted.find((s) => s.remotePort === first.socket.localPort);
    const spare = accepted.find((s) => s !== taken);
    expect(taken && spare && !spare.destroyed).toBe(true);
    await waitFor(() => spare?.destroyed === true, 30_000, 'the pool to close its stale spare');
    // The taken connection is the caller's: left open.
    expect(taken?.destroyed).toBe(false);
    // The next take makes a new connection (no spare left) and starts the next spare.
    const next = await pool.takeConnection(undefined, other);
    expect(next.spare).toBe(false);
    first.socket.destroy();
    next.socket.destroy();
  });
});
