import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseConnectionString,
  type DeviceConnectionString,
} from '../../src/auth/connection-string.js';
import { runCli, runCliWithInput, withoutInstallLines } from '../helpers/cli.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { startMqttDevice, type MqttDevice } from '../helpers/mqtt-device.js';
import { startServer, type TestServer } from '../helpers/servers.js';

// Cluster mode: an MQTT device is held by the node it connected to, as an agent is, and a
// stream asked for through any node (the balancer spreads requests) reaches it.

let cluster: TestCluster;
let banner: TestServer;
let device: MqttDevice;
const text = 'from the mqtt device\n';

beforeAll(async () => {
  cluster = await startTestCluster();
  banner = await startServer((socket) => socket.end(text));
  const node = cluster.nodes[0];
  if (!node) throw new Error('no node');
  const mqttPort = Number(
    (await node.proc.waitForLine(/listening on mqtts:\/\/127\.0\.0\.1:(\d+)/))[1],
  );
  const env = { DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString };
  const added = await runCli(['device', 'add', 'mq-c'], env);
  expect(withoutInstallLines(added.stderr)).toBe('');
  const cs = parseConnectionString(added.stdout.trim()) as DeviceConnectionString;
  device = await startMqttDevice({
    url: `mqtts://127.0.0.1:${mqttPort}`,
    hostName: cs.hub.host,
    deviceId: 'mq-c',
    key: cs.sharedAccessKey,
    ca: cluster.ca,
    targets: { banner: banner.port },
  });
}, 60_000);

afterAll(async () => {
  await device?.close();
  await banner?.close();
  await cluster?.stop();
});

describe('an MQTT device in a cluster', () => {
  it('is held by its node and reached through the balancer from every node', async () => {
    const held = await Promise.all(cluster.nodes.map((node) => cluster.connectedDevices(node)));
    expect(held).toEqual([1, 0, 0]);
    const env = { DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString };
    // Round robin: six requests reach each node twice; four of them are routed to node 1.
    for (let i = 0; i < 6; i++) {
      const r = await runCliWithInput(['connect', 'mq-c', '--stream', 'banner'], '', env);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(text);
    }
    expect(device.requests).toHaveLength(6);
  });
});
