import { readFileSync, rmSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseConnectionString,
  type DeviceConnectionString,
} from '../../src/auth/connection-string.js';
import { runCli, runCliWithInput, startCliHub, type CliTunnel } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';
import { deviceSasToken, startMqttDevice, type MqttDevice } from '../helpers/mqtt-device.js';
import { waitFor } from '../helpers/net.js';
import { startServer, type TestServer } from '../helpers/servers.js';

// Issue 24, MQTT items: what one holder of a device key (or anyone) can do to the listener.
// Each attack runs against a real CLI hub while a real MQTT device keeps being reachable.

let dir: string;
let hub: CliTunnel;
let mqttPort: number;
let ca: string;
let env: Record<string, string>;
let banner: TestServer;
let device: MqttDevice;
const bannerText = 'SSH-2.0-still-here\r\n';

async function addDevice(id: string): Promise<DeviceConnectionString> {
  const added = await runCli(['device', 'add', id], env);
  expect(added.code).toBe(0);
  return parseConnectionString(added.stdout.trim()) as DeviceConnectionString;
}

/** A TLS connection to the MQTT port that has sent CONNECT with `cs`'s key and got CONNACK 0. */
async function connected(cs: DeviceConnectionString): Promise<TLSSocket> {
  const socket = connectTls({ host: '127.0.0.1', port: mqttPort, ca });
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  socket.write(
    mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      keepalive: 60,
      clientId: cs.deviceId,
      username: `${cs.hub.host}/${cs.deviceId}/?api-version=2021-04-12`,
      password: Buffer.from(deviceSasToken(cs.hub.host, cs.deviceId, cs.sharedAccessKey)),
    }),
  );
  const first = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
  expect([...first.subarray(0, 4)]).toEqual([0x20, 2, 0, 0]);
  return socket;
}

/** The hub process's resident memory, in MiB. */
function hubRssMiB(): number {
  const status = readFileSync(`/proc/${hub.hub.child.pid ?? 0}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
}

/** The real device still answers: a stream to it carries its banner. */
async function deviceStillReachable(): Promise<void> {
  const r = await runCliWithInput(['connect', 'mq-real', '--stream', 'banner'], '', env, 60_000);
  expect([r.stdout, r.stderr]).toEqual([bannerText, '']);
  expect(r.code).toBe(0);
}

const abuseLine =
  /mqtt connection closed .*reason="(the device stopped reading|more than 1000 packets a second)"/;

function linesMatching(pattern: RegExp): number {
  return hub.hub
    .output()
    .split('\n')
    .filter((l) => pattern.test(l)).length;
}

beforeAll(async () => {
  dir = makeTempDir('dstream-mqtt-abuse-');
  banner = await startServer((socket) => socket.end(bannerText));
  hub = await startCliHub(join(dir, 'hub'), [
    '--mqtt-listen',
    '127.0.0.1:0',
    '--max-unauthenticated-per-ip',
    '20',
  ]);
  mqttPort = Number(
    (
      await hub.hub.waitForLine(
        /mqtt \(Azure's device protocol\) listening on mqtts:\/\/127\.0\.0\.1:(\d+)/,
      )
    )[1],
  );
  ca = readFileSync(join(dir, 'hub', 'tls', 'cert.pem'), 'utf8');
  env = { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString };
  const cs = await addDevice('mq-real');
  device = await startMqttDevice({
    url: `mqtts://127.0.0.1:${mqttPort}`,
    hostName: cs.hub.host,
    deviceId: 'mq-real',
    key: cs.sharedAccessKey,
    ca,
    targets: { banner: banner.port },
  });
}, 60_000);

afterAll(async () => {
  await device?.close();
  await hub?.stop();
  await banner?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the MQTT listener under attack', () => {
  it('one device key, 100 CONNECTs that never subscribe: each newer one closes the older (MQTT-3.1.4-2)', async () => {
    const cs = await addDevice('mq-dup');
    const sockets: TLSSocket[] = [];
    for (let i = 0; i < 100; i++) sockets.push(await connected(cs));
    const last = sockets.pop() as TLSSocket;
    // Every older connection is closed by the hub; the newest stays.
    await Promise.all(
      sockets.map((s) =>
        s.closed || s.destroyed
          ? Promise.resolve()
          : new Promise((resolve) => s.once('close', resolve)),
      ),
    );
    expect(last.destroyed).toBe(false);
    last.destroy();
    await deviceStillReachable();
  }, 120_000);

  it('24 connections flooding PINGREQ without reading: the hub stops reading them, its memory stays bounded, a real device is reachable, each flooder is closed and logged once', async () => {
    const before = hubRssMiB();
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i += 2) chunk.writeUInt16BE(0xc000, i); // PINGREQ
    let peak = before;
    const flooders: TLSSocket[] = [];
    for (let i = 0; i < 24; i++) {
      // A device each: a second connection with one key would close the first (see above).
      const socket = await connected(await addDevice(`mq-flood-${i}`));
      // The flooder never reads its answers.
      socket.pause();
      flooders.push(socket);
    }
    // Each writes until the hub stops taking its bytes (bounded: at most 64 MiB each).
    await Promise.all(
      flooders.map(
        (socket) =>
          new Promise<void>((resolve) => {
            let sent = 0;
            const pump = (): void => {
              while (sent < 64 * 1024 * 1024 && !socket.destroyed) {
                sent += chunk.length;
                if (!socket.write(chunk)) {
                  // Blocked: the hub is not reading. Give it a moment to prove it stays so.
                  const timer = setTimeout(resolve, 2000);
                  socket.once('drain', () => {
                    clearTimeout(timer);
                    pump();
                  });
                  return;
                }
              }
              resolve();
            };
            pump();
          }),
      ),
    );
    peak = Math.max(peak, hubRssMiB());
    await deviceStillReachable();
    peak = Math.max(peak, hubRssMiB());
    // docs/security.md: a connection that does not read costs the hub at most about 1 MiB
    // beyond the kernel's socket buffers. 24 of them, with room for the allocator.
    expect(peak - before).toBeLessThan(150);
    // Each is closed (flooding, or leaving its answers unread for 30 s), logged per address.
    await Promise.all(
      flooders.map((s) =>
        s.destroyed ? Promise.resolve() : new Promise((resolve) => s.once('close', resolve)),
      ),
    );
    await waitFor(() => linesMatching(abuseLine) >= 1, 20_000, 'the abuse line');
    // 24 closures, sampled per address: the first line at once, then a count per 10 s.
    expect(linesMatching(abuseLine)).toBeLessThanOrEqual(4);
  }, 180_000);

  it('900 refused SUBSCRIBEs (under the 1,000 packets a second that close a flooder) and 200 connections over the per-address cap make a few log lines, not thousands', async () => {
    const cs = await addDevice('mq-noisy');
    const socket = await connected(cs);
    const refusedBefore = linesMatching(/mqtt subscription refused/);
    let acks = 0;
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p) => {
      if (p.cmd === 'suback') acks++;
    });
    socket.on('data', (d: Buffer) => parser.parse(d));
    for (let i = 1; i <= 900; i++)
      socket.write(
        mqttPacket.generate({
          cmd: 'subscribe',
          messageId: i,
          subscriptions: [{ topic: `devices/mq-noisy/messages/devicebound/${i}`, qos: 1 }],
        }),
      );
    await waitFor(() => acks === 900, 60_000, 'all SUBACKs');
    expect(linesMatching(/mqtt subscription refused/) - refusedBefore).toBeLessThanOrEqual(2);
    socket.destroy();

    // Connections that never authenticate, past --max-unauthenticated-per-ip 20.
    const capBefore = linesMatching(/too many unauthenticated connections/);
    const idle = [];
    for (let i = 0; i < 200; i++) {
      const s = connectTcp({ host: '127.0.0.1', port: hub.hubPort });
      s.on('error', () => undefined);
      idle.push(s);
    }
    await Promise.all(
      idle.map(
        (s) =>
          new Promise((resolve) =>
            s.connecting ? s.once('connect', resolve) : resolve(undefined),
          ),
      ),
    );
    await waitFor(
      () => linesMatching(/too many unauthenticated connections/) > capBefore,
      20_000,
      'the cap line',
    );
    for (const s of idle) s.destroy();
    expect(linesMatching(/too many unauthenticated connections/) - capBefore).toBeLessThanOrEqual(
      2,
    );
    await deviceStillReachable();
  }, 120_000);
});
