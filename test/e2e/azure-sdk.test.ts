import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseConnectionString,
  type DeviceConnectionString,
} from '../../src/auth/connection-string.js';
import { expiryIn, signSas } from '../../src/auth/sas.js';
import { closeWebSocket } from '../../src/net/close.js';
import { openWebSocket } from '../../src/net/hub-client.js';
import { controlProtocol } from '../../src/protocol/constants.js';
import { makeTestCa } from '../helpers/ca.js';
import {
  runCli,
  runPrintedInit,
  spawnCli,
  type CliProcess,
  withoutInstallLines,
} from '../helpers/cli.js';
import { hubError } from '../helpers/hub-error.js';
import { makeTempDir } from '../helpers/hub.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';

// Microsoft's service SDK (azure-iothub) as the client, unchanged, in its own process: it
// knows the hub only by the connection string `hub init` printed, and trusts it by
// NODE_EXTRA_CA_CERTS as Node trusts any server. Microsoft's clients pass HostName to the
// resolver as it is, so the hub must serve on 443: it binds 127.0.0.1:443 (CI runs as root;
// elsewhere give node CAP_NET_BIND_SERVICE or lower net.ipv4.ip_unprivileged_port_start).

const app = fileURLToPath(new URL('../fixtures/azure-service-app.mjs', import.meta.url));

interface StepResult {
  readonly ok: boolean;
  readonly value?: Record<string, unknown> & { readonly echo?: Record<string, unknown> };
  readonly error?: {
    readonly class: string;
    readonly message: string;
    readonly statusCode: number;
    readonly errorCodeHeader: string;
    readonly body: string;
  };
}

let dir: string;
let ca: ReturnType<typeof makeTestCa>;
let hub: CliProcess;
let agent: CliProcess;
let echo: TestServer;
let serviceString: string;
let deviceString: string;
const env = (): Record<string, string> => ({
  NODE_EXTRA_CA_CERTS: ca.caFile,
  DSTREAM_SERVICE_CONNECTION_STRING: serviceString,
});

/** Run the Azure service application with these steps; one result per step. */
function runApp(steps: readonly Record<string, unknown>[]): Promise<StepResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [app, JSON.stringify(steps)], {
      env: {
        PATH: process.env.PATH ?? '',
        IOTHUB_CONNECTION_STRING: serviceString,
        NODE_EXTRA_CA_CERTS: ca.caFile,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`the Azure app exited ${code}: ${err}`));
      resolve(JSON.parse(out) as StepResult[]);
    });
  });
}

/** Fail (not skip) with the reason when this machine cannot give the test port 443. */
async function assertPort443Free(): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `these tests serve on 127.0.0.1:443, as Microsoft's clients need: ${e.code ?? e.message}` +
            (e.code === 'EACCES'
              ? ' (run as root, or lower net.ipv4.ip_unprivileged_port_start)'
              : ''),
        ),
      ),
    );
    probe.listen(443, '127.0.0.1', resolve);
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

beforeAll(async () => {
  await assertPort443Free();
  dir = makeTempDir('dstream-azure-sdk-');
  ca = makeTestCa(dir, ['127.0.0.1']);
  echo = await startEchoServer();
  hub = spawnCli(
    [
      'hub',
      '--data-dir',
      join(dir, 'hub'),
      '--listen',
      '127.0.0.1:443',
      '--tls-cert',
      ca.certFile,
      '--tls-key',
      ca.keyFile,
    ],
    { NODE_EXTRA_CA_CERTS: ca.caFile },
  );
  await hub.waitForLine(/hub listening on https:\/\/127\.0\.0\.1:443/);
  const init = await runPrintedInit(hub);
  expect(init.code).toBe(0);
  serviceString = init.stdout.trim();
  const added = await runCli(['device', 'add', 'sdk-dev'], env());
  expect(withoutInstallLines(added.stderr)).toBe('');
  deviceString = added.stdout.trim();
  agent = spawnCli(['agent', '--target', `echo=127.0.0.1:${echo.port}`], {
    NODE_EXTRA_CA_CERTS: ca.caFile,
    DSTREAM_DEVICE_CONNECTION_STRING: deviceString,
  });
  await agent.waitForLine(/connected to the hub/);
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await hub?.stop();
  await echo?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("Microsoft's azure-iothub against a dstream hub on 443", () => {
  it('the printed strings name the hub as IoT Hub names itself: a bare host, no fingerprint', () => {
    expect(serviceString).toMatch(
      /^HostName=127\.0\.0\.1;SharedAccessKeyName=service;SharedAccessKey=[^;]+$/,
    );
    expect(deviceString).toMatch(/^HostName=127\.0\.0\.1;DeviceId=sdk-dev;SharedAccessKey=[^;]+$/);
  });

  it('Registry: create (generated and given keys), get, list, update, getTwin, delete', async () => {
    const k1 = Buffer.alloc(32, 1).toString('base64');
    const k2 = Buffer.alloc(32, 2).toString('base64');
    const k3 = Buffer.alloc(16, 3).toString('base64');
    const [made, given, again, got, listed, updated, twin, deleted, gone, missing, x509] =
      await runApp([
        { op: 'create', device: { deviceId: 'sdk-a' } },
        {
          op: 'create',
          device: {
            deviceId: 'sdk-b',
            status: 'disabled',
            authentication: { symmetricKey: { primaryKey: k1, secondaryKey: k2 } },
          },
        },
        { op: 'create', device: { deviceId: 'sdk-a' } },
        { op: 'get', deviceId: 'sdk-b' },
        { op: 'list' },
        {
          op: 'update',
          device: {
            deviceId: 'sdk-b',
            status: 'enabled',
            authentication: { symmetricKey: { primaryKey: k3, secondaryKey: k2 } },
          },
        },
        { op: 'getTwin', deviceId: 'sdk-dev' },
        { op: 'delete', deviceId: 'sdk-a' },
        { op: 'get', deviceId: 'sdk-a' },
        { op: 'update', device: { deviceId: 'sdk-none', status: 'enabled' } },
        {
          op: 'create',
          device: {
            deviceId: 'sdk-x',
            authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: 'AB' } },
          },
        },
      ]);
    // Keys generated where the SDK sent empty ones.
    expect(made?.ok).toBe(true);
    const madeKeys = (made?.value?.authentication as { symmetricKey: Record<string, string> })
      .symmetricKey;
    expect(Buffer.from(madeKeys.primaryKey ?? '', 'base64')).toHaveLength(32);
    expect(made?.value).toMatchObject({
      deviceId: 'sdk-a',
      status: 'enabled',
      connectionState: 'Disconnected',
      generationId: expect.stringMatching(/^\d{18}$/) as unknown,
      etag: expect.stringMatching(/^[A-Za-z0-9+/]+=*$/) as unknown,
    });
    expect(given?.value).toMatchObject({
      deviceId: 'sdk-b',
      status: 'disabled',
      authentication: { symmetricKey: { primaryKey: k1, secondaryKey: k2 } },
    });
    expect(again?.error).toMatchObject({
      class: 'DeviceAlreadyExistsError',
      statusCode: 409,
      errorCodeHeader: 'DeviceAlreadyExists',
    });
    expect(hubError({ body: again?.error?.body ?? '' }).errorCode).toBe('DeviceAlreadyExists');
    expect(got?.value).toMatchObject({
      etag: given?.value?.etag,
      generationId: given?.value?.generationId,
    });
    expect((listed?.value as unknown as { deviceId: string }[]).map((d) => d.deviceId)).toEqual([
      'sdk-a',
      'sdk-b',
      'sdk-dev',
    ]);
    expect(updated?.value).toMatchObject({
      status: 'enabled',
      generationId: given?.value?.generationId,
      authentication: { symmetricKey: { primaryKey: k3, secondaryKey: k2 } },
    });
    expect(updated?.value?.etag).not.toBe(given?.value?.etag);
    expect(twin?.value).toMatchObject({
      deviceId: 'sdk-dev',
      status: 'enabled',
      connectionState: 'Connected',
      tags: {},
      properties: { desired: { $version: 1 }, reported: { $version: 1 } },
    });
    expect(deleted).toEqual({ ok: true, value: 204 });
    // What this SDK makes of IoT Hub's own 404 answer: a plain Error (its parser reads only
    // the older error form); status, header and body are IoT Hub's.
    expect(gone?.error).toMatchObject({
      class: 'Error',
      message: 'Not found',
      statusCode: 404,
      errorCodeHeader: 'DeviceNotFound',
    });
    expect(missing?.error).toMatchObject({ statusCode: 404, errorCodeHeader: 'DeviceNotFound' });
    expect(x509?.error).toMatchObject({
      class: 'ArgumentError',
      statusCode: 400,
      errorCodeHeader: 'ArgumentInvalid',
    });
    expect(hubError({ body: x509?.error?.body ?? '' }).message).toBe(
      'authentication type "selfSigned" is not supported: dstream devices use symmetric keys (type "sas")',
    );
    // The device string made from keys the SDK gave works for dstream's agent.
    const shown = await runCli(['device', 'show', 'sdk-b'], env());
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain('enabled');
  });

  it("stream initiation through the SDK's REST client, then 10 MiB echoed on the stream socket", async () => {
    const [device, module] = await runApp([
      { op: 'initiateAndEcho', deviceId: 'sdk-dev', streamName: 'echo', bytes: 10 * 1024 * 1024 },
      {
        op: 'initiateAndEcho',
        deviceId: 'sdk-dev',
        moduleId: 'edge-module',
        streamName: 'echo',
        bytes: 64 * 1024,
      },
    ]);
    expect(device?.error).toBeUndefined();
    expect(device?.value).toMatchObject({ statusCode: 200, isAccepted: 'True' });
    // The streaming URL always carries its port.
    expect(device?.value?.url).toMatch(/^wss:\/\/127\.0\.0\.1:443\//);
    expect(device?.value?.echo).toEqual({
      sent: 10 * 1024 * 1024,
      received: 10 * 1024 * 1024,
      same: true,
      protocol: '',
    });
    // IoT Hub's module form reaches the device's agent.
    expect(module?.value).toMatchObject({ isAccepted: 'True', echo: { same: true } });
  });

  it('rejected, unknown device, offline, timeout and bad signature answer as IoT Hub does', async () => {
    const offlineAdded = await runCli(['device', 'add', 'sdk-offline'], env());
    expect(offlineAdded.code).toBe(0);
    // A device that connects and never answers.
    const mute = await runCli(['device', 'add', 'sdk-mute'], env());
    const cs = parseConnectionString(mute.stdout.trim()) as DeviceConnectionString;
    const ws = await openWebSocket(
      'wss://127.0.0.1:443/devices/sdk-mute/control',
      { tls: true, ca: readFileSync(ca.caFile, 'utf8') },
      {
        headers: {
          authorization: signSas({
            resource: '127.0.0.1/devices/sdk-mute',
            key: cs.sharedAccessKey,
            expiry: expiryIn(60),
          }),
        },
        protocols: [controlProtocol],
      },
    );
    try {
      const [rejected, unknown, offline, timeout, badSig] = await runApp([
        { op: 'initiate', deviceId: 'sdk-dev', streamName: 'not-allowed' },
        { op: 'initiate', deviceId: 'no-such-device', streamName: 'echo' },
        { op: 'initiate', deviceId: 'sdk-offline', streamName: 'echo', connectTimeout: '0' },
        { op: 'initiate', deviceId: 'sdk-mute', streamName: 'echo', responseTimeout: '1.5' },
        { op: 'initiate', deviceId: 'sdk-dev', streamName: 'echo', badKey: true },
      ]);
      expect(rejected).toEqual({ ok: true, value: { statusCode: 200, isAccepted: 'False' } });
      expect(unknown?.error).toMatchObject({
        class: 'Error',
        statusCode: 404,
        errorCodeHeader: 'DeviceNotFound',
      });
      expect(hubError({ body: unknown?.error?.body ?? '' }).errorCode).toBe('DeviceNotFound');
      expect(offline?.error).toMatchObject({ statusCode: 404, errorCodeHeader: 'DeviceNotOnline' });
      expect(hubError({ body: offline?.error?.body ?? '' }).message).toBe(
        "device 'sdk-offline' is not connected to the hub",
      );
      expect(timeout?.error).toMatchObject({
        class: 'GatewayTimeoutError',
        statusCode: 504,
        errorCodeHeader: 'GatewayTimeout',
      });
      expect(badSig?.error).toMatchObject({
        class: 'UnauthorizedError',
        statusCode: 401,
        errorCodeHeader: 'IotHubUnauthorizedAccess',
      });
    } finally {
      closeWebSocket(ws, 1000);
    }
  });
});
