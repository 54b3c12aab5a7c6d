import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubRequest, type HubResponse, type HubTarget } from '../../src/net/hub-client.js';
import { serviceToken } from '../../src/service/credentials.js';
import { runCli, spawnCli, type CliProcess } from '../helpers/cli.js';
import { startTestCluster, type ClusterNodeProcess, type TestCluster } from '../helpers/cluster.js';
import { closed, dial } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';

// Issue 27: in cluster mode any node's operator API (and so its console) shows the whole
// cluster: devices and streams held by every node, and ends a stream another node holds.

let cluster: TestCluster;
let echo: TestServer;
const running: CliProcess[] = [];

beforeAll(async () => {
  cluster = await startTestCluster();
  echo = await startEchoServer();
}, 60_000);
afterAll(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')));
  await echo?.close();
  await cluster?.stop();
});

function call(node: ClusterNodeProcess, method: string, path: string): Promise<HubResponse> {
  const target: HubTarget = node.target;
  return hubRequest(target, {
    method,
    path,
    headers: { authorization: serviceToken(cluster.service) },
  });
}

async function until<T>(read: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface StreamJson {
  id: string;
  node: string;
  deviceId: string;
  bytesToDevice: number;
}

describe('the operator API in a cluster', () => {
  it("every node lists every node's devices and streams, and ends a stream another node holds", async () => {
    const added = await runCli(['device', 'add', 'pi-c'], {
      DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString,
    });
    expect(added.code).toBe(0);
    const [n1, n2, n3] = cluster.nodes;
    if (!n1 || !n2 || !n3) throw new Error('three nodes');
    // The agent on n1 itself, so the device and its streams are n1's.
    const agent = spawnCli(['agent', '--target', `echo=127.0.0.1:${echo.port}`], {
      DSTREAM_DEVICE_CONNECTION_STRING: added.stdout
        .trim()
        .replace(`:${cluster.lbPort};`, `:${n1.port};`),
    });
    running.push(agent);
    await agent.waitForLine(/connected to the hub/);
    const proxy = spawnCli(['proxy', '--device', 'pi-c', '--stream', 'echo', '--local-port', '0'], {
      DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString.replace(
        `:${cluster.lbPort};`,
        `:${n1.port};`,
      ),
    });
    running.push(proxy);
    const pm = await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/);
    const client = await dial(Number(pm[1]));
    client.write(Buffer.alloc(3000, 1));
    let echoed = 0;
    client.on('data', (d: Buffer) => (echoed += d.length));

    const n1Id = (JSON.parse((await call(n1, 'GET', '/hub')).body) as { node: string }).node;
    // n2 lists the stream n1 relays, with its node and bytes.
    const stream = await until(async () => {
      const list = JSON.parse((await call(n2, 'GET', '/streams')).body) as StreamJson[];
      const s = list.find((x) => x.deviceId === 'pi-c');
      return s && s.bytesToDevice === 3000 ? s : undefined;
    }, 'the stream in n2 list');
    expect(stream.node).toBe(n1Id);
    expect(echoed).toBe(3000);

    // n3 shows the device online on n1, over the control WebSocket, with one open stream.
    const devices = JSON.parse((await call(n3, 'GET', '/hub/devices')).body) as {
      deviceId: string;
      online: boolean;
      node: string;
      protocol: string;
      openStreams: number;
    }[];
    expect(devices.find((d) => d.deviceId === 'pi-c')).toMatchObject({
      online: true,
      node: n1Id,
      protocol: 'websocket',
      openStreams: 1,
    });

    // n2's hub page lists the three nodes.
    const hub = JSON.parse((await call(n2, 'GET', '/hub')).body) as {
      cluster: { nodes: { id: string; state: string }[] };
    };
    expect(hub.cluster.nodes.map((n) => n.state).sort()).toEqual(['this node', 'up', 'up']);
    expect(hub.cluster.nodes.map((n) => n.id)).toContain(n1Id);

    // n3 ends the stream n1 holds: the client's connection closes; n3's audit names the policy.
    const gone = closed(client, 20_000);
    expect((await call(n3, 'DELETE', `/streams/${stream.id}`)).status).toBe(204);
    await gone;
    const audit = JSON.parse(
      (await call(n3, 'GET', '/audit?outcome=stream-ended&deviceId=pi-c')).body,
    ) as { records: { policy: string; reason: string }[] };
    expect(audit.records[0]?.reason).toContain(
      `ended by policy '${cluster.service.sharedAccessKeyName}'`,
    );
    await until(async () => {
      const list = JSON.parse((await call(n2, 'GET', '/streams')).body) as StreamJson[];
      return list.some((x) => x.id === stream.id) ? undefined : true;
    }, 'the stream to leave the lists');
    expect((await call(n2, 'DELETE', `/streams/${stream.id}`)).status).toBe(404);
  }, 120_000);
});
