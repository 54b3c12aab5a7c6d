import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken } from '../../src/service/credentials.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';

// Issue 16, finding 2: behind a TCP balancer every client had the balancer's address, so one
// client's bad tokens throttled everyone and the audit log named the balancer. haproxy now
// sends PROXY v2 headers (docs/cluster.md) and the nodes trust them from 127.0.0.1 only.

let cluster: TestCluster;
beforeAll(async () => {
  cluster = await startTestCluster({ nodeFlags: ['--auth-failures-per-minute', '5'] });
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

/** A stream request through the balancer from `localAddress`; resolves with the status. */
function streamRequest(
  localAddress: string,
  authorization: string,
  device: string,
  port = cluster.lbPort,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        localAddress,
        ca: cluster.ca,
        method: 'POST',
        path: `/twins/${device}/streams/echo`,
        headers: { authorization },
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function auditLines(): { remote?: string; outcome: string; device: string }[] {
  return cluster.nodes.flatMap((n) => {
    const file = join(cluster.dir, n.name, 'audit.log');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { remote?: string; outcome: string; device: string });
  });
}

describe('behind haproxy with send-proxy-v2', () => {
  it("one client's bad tokens throttle that client only; the audit log names each client", async () => {
    const good = serviceToken(cluster.service);
    const forged = good.replace(
      /sig=[^&]+/,
      `sig=${encodeURIComponent(Buffer.alloc(32, 9).toString('base64'))}`,
    );
    // 5 failures per node per minute, three nodes round robin: 24 bad requests are plenty.
    const bad: number[] = [];
    for (let i = 0; i < 24; i++) bad.push(await streamRequest('127.0.0.2', forged, 'ghost-a'));
    expect(bad.slice(0, 3)).toEqual([401, 401, 401]);
    expect(bad.slice(-3)).toEqual([429, 429, 429]);
    // Another client, on every node in turn: never throttled.
    const other: number[] = [];
    for (let i = 0; i < 6; i++) other.push(await streamRequest('127.0.0.3', good, 'ghost-b'));
    expect(other).toEqual([404, 404, 404, 404, 404, 404]);

    const lines = auditLines();
    const a = lines.filter((l) => l.device === 'ghost-a');
    const b = lines.filter((l) => l.device === 'ghost-b');
    expect(a).toHaveLength(24);
    expect(new Set(a.map((l) => l.remote))).toEqual(new Set(['127.0.0.2']));
    expect(new Set(a.map((l) => l.outcome))).toEqual(new Set(['unauthorized', 'throttled']));
    expect(b).toHaveLength(6);
    expect(new Set(b.map((l) => l.remote))).toEqual(new Set(['127.0.0.3']));
  });

  it('a PROXY header from an address not in --proxy-protocol-from is refused, and claims nothing', async () => {
    const node = cluster.nodes[0];
    if (!node) throw new Error('no node');
    const socket = netConnect({ host: '127.0.0.1', port: node.port, localAddress: '127.0.0.2' });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('PROXY TCP4 203.0.113.9 127.0.0.1 4000 443\r\n');
    let received = 0;
    socket.on('data', (d: Buffer) => (received += d.length));
    await new Promise((resolve) => socket.once('close', resolve));
    expect(received).toBe(0);
    await node.proc.waitForLine(
      /WARN {2}connection refused: a PROXY header from an untrusted address remote=127\.0\.0\.2/,
    );
    expect(auditLines().some((l) => l.remote === '203.0.113.9')).toBe(false);
  });

  it('a malformed header from the trusted balancer address is refused; the node keeps serving', async () => {
    const node = cluster.nodes[1];
    if (!node) throw new Error('no node');
    const socket = netConnect({ host: '127.0.0.1', port: node.port });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    await node.proc.waitForLine(
      /WARN {2}connection refused: bad PROXY header .*malformed PROXY v1 line/,
    );
    // Straight from the trusted address without a header: its own address counts.
    expect(
      await streamRequest('127.0.0.1', serviceToken(cluster.service), 'ghost-c', node.port),
    ).toBe(404);
    expect(auditLines().find((l) => l.device === 'ghost-c')?.remote).toBe('127.0.0.1');
  });
});
