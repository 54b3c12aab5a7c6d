import { readFileSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseConnectionString,
  type DeviceConnectionString,
} from '../../src/auth/connection-string.js';
import {
  runCli,
  runCliWithInput,
  startCliHub,
  spawnCli,
  type CliProcess,
  type CliTunnel,
  withoutInstallLines,
} from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';
import mqttPacket from 'mqtt-packet';
import {
  deviceSasToken,
  mqttOptions,
  startMqttDevice,
  type MqttDevice,
} from '../helpers/mqtt-device.js';
import { dial, randomBytes, readAll, sha256, waitFor } from '../helpers/net.js';
import { startEchoServer, startServer, type TestServer } from '../helpers/servers.js';

// A device built as Azure's device SDKs build one (an ordinary MQTT client speaking IoT Hub's
// stream topics), reached through dstream's own proxy, connect and SOCKS, as any agent is.

let dir: string;
let hub: CliTunnel;
let mqttPort: number;
let ca: string;
let echo: TestServer;
let device: MqttDevice;
let deviceCs: DeviceConnectionString;
let env: Record<string, string>;
const running: CliProcess[] = [];

let banner: TestServer;
const bannerText = 'SSH-2.0-device-banner\r\n';
const targets = (): Record<string, number> => ({
  echo: echo.port,
  '7': echo.port,
  banner: banner.port,
});

/**
 * Send `data` and read as many bytes back. Azure-style streams carry no half-close (the
 * device side is a raw Azure peer), so the test does not rely on EOF to end the echo.
 */
function echoThrough(socket: Socket, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(
      () => reject(new Error(`echo: ${got} of ${data.length} bytes`)),
      30_000,
    );
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= data.length) {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks));
      }
    });
    socket.write(data);
  });
}

async function addDevice(id: string): Promise<DeviceConnectionString> {
  const added = await runCli(['device', 'add', id], env);
  expect(withoutInstallLines(added.stderr)).toBe('');
  return parseConnectionString(added.stdout.trim()) as DeviceConnectionString;
}

beforeAll(async () => {
  dir = makeTempDir('dstream-mqtt-');
  echo = await startEchoServer();
  // A service that speaks first and closes, as sshd's banner does on a refused login.
  banner = await startServer((socket) => socket.end(bannerText));
  hub = await startCliHub(join(dir, 'hub'), ['--mqtt-listen', '127.0.0.1:0']);
  mqttPort = Number(
    (
      await hub.hub.waitForLine(
        /mqtt \(Azure's device protocol\) listening on mqtts:\/\/127\.0\.0\.1:(\d+)/,
      )
    )[1],
  );
  ca = readFileSync(join(dir, 'hub', 'tls', 'cert.pem'), 'utf8');
  env = { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString };
  deviceCs = await addDevice('mq-01');
  device = await startMqttDevice({
    url: `mqtts://127.0.0.1:${mqttPort}`,
    hostName: deviceCs.hub.host,
    deviceId: 'mq-01',
    key: deviceCs.sharedAccessKey,
    ca,
    targets: targets(),
  });
}, 60_000);

afterAll(async () => {
  for (const p of running) await p.stop();
  await device?.close();
  await hub?.stop();
  await echo?.close();
  await banner?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The audit log's last line. */
function auditTail(): string {
  const lines = readFileSync(join(dir, 'hub', 'audit.log'), 'utf8')
    .trim()
    .split('\n');
  return lines[lines.length - 1] ?? '';
}

function spawn(args: readonly string[]): CliProcess {
  const p = spawnCli(args, env);
  running.push(p);
  return p;
}

describe("a device on Azure's MQTT stream protocol", () => {
  it('is online: the hub says so, and counts it by protocol', async () => {
    const shown = await runCli(['device', 'show', 'mq-01'], env);
    expect(shown.stdout).toMatch(/connection: +online/);
    const metrics = await new Promise<string>((resolve, reject) => {
      const req = connectTls({ host: '127.0.0.1', port: hub.hubPort, ca }, () => {
        req.end('GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      });
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => resolve(text));
      req.on('error', reject);
    });
    expect(metrics).toContain('dstream_connected_devices_by_protocol{protocol="mqtt"} 1');
    expect(metrics).toContain('dstream_connected_devices_by_protocol{protocol="websocket"} 0');
  });

  it('dstream connect reaches it; the device side closing ends the stream', async () => {
    const r = await runCliWithInput(['connect', 'mq-01', '--stream', 'banner'], '', env);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(bannerText);
    expect(r.code).toBe(0);
  });

  it('dstream proxy: 4 MiB through a local port, byte-exact', async () => {
    const proxy = spawn(['proxy', '--device', 'mq-01', '--local-port', '0', '--remote-port', '7']);
    const port = Number((await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/))[1]);
    const client = await dial(port);
    const data = randomBytes(4 * 1024 * 1024);
    expect(sha256(await echoThrough(client, data))).toBe(sha256(data));
    client.destroy();
  });

  it('a client that closes toward it ends the stream: the hub closes it normally once the device is quiet (echo target, which never closes)', async () => {
    const proxy = spawn(['proxy', '--device', 'mq-01', '--local-port', '0', '--remote-port', '7']);
    const port = Number((await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/))[1]);
    const client = await dial(port);
    const data = randomBytes(256 * 1024);
    expect(sha256(await echoThrough(client, data))).toBe(sha256(data));
    // A half-close the raw device cannot hear of: the stream ends after its linger (2 s),
    // normally (an end, not a reset), and the proxy logs a completed stream.
    client.end();
    const all = await readAll(client, 30_000);
    expect(all.length).toBe(0);
    await proxy.waitForLine(/stream ended .*end=completed/, 30_000);
    await waitFor(
      () => /"reason":"closed by (service|device) \(1000\)"/.test(auditTail()),
      30_000,
      'the audit line',
    );
  });

  it('SOCKS5: the device id as host, the port as stream', async () => {
    const socks = spawn(['proxy', '--socks', '0']);
    const port = Number(
      (await socks.waitForLine(/SOCKS5 proxy listening on 127\.0\.0\.1:(\d+)/))[1],
    );
    const s = await dial(port);
    const reply = await socks5Connect(s, 'mq-01', 7);
    expect(reply).toBe(0);
    const data = randomBytes(64 * 1024);
    expect(sha256(await echoThrough(s, data))).toBe(sha256(data));
    s.destroy();
  });

  it('a request the device rejects fails with the reason, and the device saw it', async () => {
    const r = await runCliWithInput(['connect', 'mq-01', '--stream', 'telnet'], '', env);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe(
      "error: device 'mq-01' rejected stream 'telnet': the device answered 400\n",
    );
    expect(device.requests).toContain('telnet');
  });

  it('MQTT over WebSockets at /$iothub/websocket on the main port works the same', async () => {
    const cs = await addDevice('mq-ws');
    const wsDevice = await startMqttDevice({
      url: `wss://127.0.0.1:${hub.hubPort}/$iothub/websocket`,
      hostName: cs.hub.host,
      deviceId: 'mq-ws',
      key: cs.sharedAccessKey,
      ca,
      targets: targets(),
    });
    try {
      const r = await runCliWithInput(['connect', 'mq-ws', '--stream', 'banner'], '', env);
      expect(r.stdout).toBe(bannerText);
      expect(r.code).toBe(0);
    } finally {
      await wsDevice.close();
    }
  });

  it('device add --azure prints the string as Azure SDKs take it (no CertificateFingerprint) and says what trust the device needs; the device works with it', async () => {
    const added = await runCli(['device', 'add', 'mq-az', '--azure'], env);
    expect(added.code).toBe(0);
    expect(added.stderr).toBe(
      "warning: this hub's certificate is self-signed: a device on Azure's SDKs verifies the hub by CA, so give it the hub's tls/cert.pem as a trusted certificate (C SDK: OPTION_TRUSTED_CERT), or serve a CA-issued --tls-cert (docs/azure.md)\n",
    );
    const text = added.stdout.trim();
    expect(text).toMatch(/^HostName=[^;]+;DeviceId=mq-az;SharedAccessKey=[A-Za-z0-9+/=]+$/);
    const shown = await runCli(['device', 'show', 'mq-az', '--azure'], env);
    expect(shown.stdout.trim()).toBe(text);
    const cs = parseConnectionString(text) as DeviceConnectionString;
    const azureDevice = await startMqttDevice({
      url: `mqtts://127.0.0.1:${mqttPort}`,
      hostName: cs.hub.host,
      deviceId: 'mq-az',
      key: cs.sharedAccessKey,
      ca,
      targets: targets(),
    });
    try {
      const r = await runCliWithInput(['connect', 'mq-az', '--stream', 'banner'], '', env);
      expect(r.stdout).toBe(bannerText);
      expect(r.code).toBe(0);
    } finally {
      await azureDevice.close();
    }
  });

  it('bad credentials are refused at CONNACK, and logged', async () => {
    const base = {
      url: `mqtts://127.0.0.1:${mqttPort}`,
      hostName: deviceCs.hub.host,
      deviceId: 'mq-01',
      key: deviceCs.sharedAccessKey,
      ca,
      targets: {},
    };
    const wrongKey = Buffer.alloc(32, 9).toString('base64');
    const cases: [Partial<typeof base> & Record<string, string>, number][] = [
      [{ key: wrongKey }, 5], // not authorized
      [{ password: 'not a token' }, 5],
      [{ username: `${deviceCs.hub.host}/someone-else/?api-version=2021-04-12` }, 4], // bad user name or password
      [{ clientId: 'mq-01/module-1' }, 2], // identifier rejected (module identities)
    ];
    for (const [override, code] of cases) {
      const error = await connectAsync(base.url, mqttOptions({ ...base, ...override })).then(
        async (c) => {
          await c.endAsync(true);
          return undefined;
        },
        (e: unknown) => e as { code?: number },
      );
      expect(error?.code, JSON.stringify(override)).toBe(code);
    }
    await hub.hub.waitForLine(/mqtt device connection refused[^\n]*invalid device credentials/);
    // Audited as every refused credential is: one line per attempt, no secret in it.
    const audit = readFileSync(join(dir, 'hub', 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((r) => String(r.reason).startsWith('mqtt connect refused'));
    expect(audit.map((r) => [r.device, r.outcome])).toEqual([
      ['mq-01', 'unauthorized'],
      ['mq-01', 'unauthorized'],
      ['mq-01', 'invalid'],
      ['mq-01/module-1', 'invalid'],
    ]);
    expect(JSON.stringify(audit)).not.toContain(deviceCs.sharedAccessKey);
    // The real device is undisturbed: refusals do not replace its connection.
    expect(device.client.connected).toBe(true);
  });

  it('other topics are refused or dropped without disturbing the hub; QoS 2 and garbage close', async () => {
    const cs = await addDevice('mq-noisy');
    const noisy = await connectAsync(
      `mqtts://127.0.0.1:${mqttPort}`,
      mqttOptions({
        url: '',
        hostName: cs.hub.host,
        deviceId: 'mq-noisy',
        key: cs.sharedAccessKey,
        ca,
        targets: {},
      }),
    );
    noisy.on('error', () => undefined);
    // mqtt.js reports a SUBACK with refusals as an error carrying the packet.
    const suback = await noisy
      .subscribeAsync(
        ['devices/mq-noisy/messages/devicebound/#', '$iothub/twin/res/#', '$iothub/streams/POST/#'],
        { qos: 1 },
      )
      .then(
        () => undefined,
        (e: { packet?: { granted?: number[] } }) => e.packet?.granted,
      );
    expect(suback).toEqual([128, 128, 1]);
    // Telemetry at QoS 1 is acknowledged (so the device does not resend) and dropped.
    await noisy.publishAsync('devices/mq-noisy/messages/events/', 'temperature=21', { qos: 1 });
    await noisy.publishAsync('$iothub/twin/GET/?$rid=1', '', { qos: 0 });
    // A stream still reaches the other device meanwhile.
    const r = await runCliWithInput(['connect', 'mq-01', '--stream', 'banner'], '', env);
    expect(r.stdout).toBe(bannerText);
    // QoS 2 ends the connection, as on IoT Hub.
    const closed = new Promise<void>((resolve) => noisy.once('close', () => resolve()));
    void noisy
      .publishAsync('devices/mq-noisy/messages/events/', 'x', { qos: 2 })
      .catch(() => undefined);
    await closed;
    await noisy.endAsync(true);

    // Garbage where MQTT should be: the connection is closed, the hub serves on.
    const garbage = connectTls({ host: '127.0.0.1', port: mqttPort, ca });
    garbage.on('error', () => undefined);
    await new Promise((resolve) => garbage.once('secureConnect', resolve));
    garbage.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]));
    await new Promise((resolve) => garbage.once('close', resolve));
    // A packet claiming to be huge is not buffered for ever.
    const huge = connectTls({ host: '127.0.0.1', port: mqttPort, ca });
    huge.on('error', () => undefined);
    await new Promise((resolve) => huge.once('secureConnect', resolve));
    huge.write(
      Buffer.concat([Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(32 * 1024)]),
    );
    await new Promise((resolve) => huge.once('close', resolve));
    const again = await runCliWithInput(['connect', 'mq-01', '--stream', 'banner'], '', env);
    expect(again.stdout).toBe(bannerText);
  });

  it('failed CONNECTs count against the address: past the limit, CONNACK 3 even with the right key', async () => {
    const strict = await startCliHub(join(dir, 'strict'), [
      '--mqtt-listen',
      '127.0.0.1:0',
      '--auth-failures-per-minute',
      '2',
    ]);
    try {
      const port = Number(
        (await strict.hub.waitForLine(/listening on mqtts:\/\/127\.0\.0\.1:(\d+)/))[1],
      );
      const strictEnv = { DSTREAM_SERVICE_CONNECTION_STRING: strict.serviceString };
      const added = await runCli(['device', 'add', 'mq-t'], strictEnv);
      const cs = parseConnectionString(added.stdout.trim()) as DeviceConnectionString;
      const o = {
        url: `mqtts://127.0.0.1:${port}`,
        hostName: cs.hub.host,
        deviceId: 'mq-t',
        key: cs.sharedAccessKey,
        ca: readFileSync(join(dir, 'strict', 'tls', 'cert.pem'), 'utf8'),
        targets: {},
      };
      const codeOf = (override: Record<string, string>): Promise<number | undefined> =>
        connectAsync(o.url, mqttOptions({ ...o, ...override })).then(
          async (c) => {
            await c.endAsync(true);
            return 0;
          },
          (e: { code?: number }) => e.code,
        );
      const wrong = Buffer.alloc(32, 1).toString('base64');
      expect(await codeOf({ key: wrong })).toBe(5);
      expect(await codeOf({ key: wrong })).toBe(5);
      expect(await codeOf({})).toBe(3);
      await strict.hub.waitForLine(
        /mqtt device connection refused[^\n]*too many failed authentications/,
      );
    } finally {
      await strict.stop();
    }
  });

  it('a device silent past one and a half keep-alive periods is closed', async () => {
    const cs = await addDevice('mq-quiet');
    const socket = connectTls({ host: '127.0.0.1', port: mqttPort, ca });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    const started = Date.now();
    socket.write(
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        keepalive: 1,
        clientId: 'mq-quiet',
        username: `${cs.hub.host}/mq-quiet/?api-version=2021-04-12`,
        password: Buffer.from(deviceSasToken(cs.hub.host, 'mq-quiet', cs.sharedAccessKey)),
      }),
    );
    const first = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
    expect([...first]).toEqual([0x20, 2, 0, 0]); // CONNACK, accepted
    await new Promise((resolve) => socket.once('close', resolve));
    const after = Date.now() - started;
    expect(after).toBeGreaterThanOrEqual(1400);
    expect(after).toBeLessThan(5000);
  });

  it('--no-mqtt serves neither; --mqtt-listen with --no-mqtt is refused', async () => {
    const off = await startCliHub(join(dir, 'off'), ['--no-mqtt']);
    try {
      expect(off.hub.output()).not.toContain("Azure's device protocol");
      const refused = await new Promise<number>((resolve) => {
        const req = connectTls(
          {
            host: '127.0.0.1',
            port: off.hubPort,
            ca: readFileSync(join(dir, 'off', 'tls', 'cert.pem'), 'utf8'),
          },
          () =>
            req.write(
              'GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n',
            ),
        );
        req.once('data', (d: Buffer) => resolve(Number(d.toString().split(' ')[1])));
        req.on('error', () => undefined);
      });
      expect(refused).toBe(404);
    } finally {
      await off.stop();
    }
    const both = await runCli([
      'hub',
      '--data-dir',
      join(dir, 'x'),
      '--no-mqtt',
      '--mqtt-listen',
      '127.0.0.1:0',
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--mqtt-listen and --no-mqtt contradict each other');
  });
});

/** A SOCKS5 CONNECT by domain name; resolves with the reply code. */
async function socks5Connect(s: Socket, host: string, port: number): Promise<number> {
  const read = (n: number): Promise<Buffer> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let got = 0;
      const onData = (d: Buffer): void => {
        chunks.push(d);
        got += d.length;
        if (got >= n) {
          s.off('data', onData);
          const all = Buffer.concat(chunks);
          if (all.length > n) s.unshift(all.subarray(n));
          resolve(all.subarray(0, n));
        }
      };
      s.on('data', onData);
    });
  s.write(Buffer.from([5, 1, 0]));
  await read(2);
  const name = Buffer.from(host);
  s.write(
    Buffer.concat([
      Buffer.from([5, 1, 0, 3, name.length]),
      name,
      Buffer.from([port >> 8, port & 255]),
    ]),
  );
  const reply = await read(10);
  return reply[1] ?? -1;
}
