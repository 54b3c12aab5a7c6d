import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hubError } from '../helpers/hub-error.js';
import WebSocket from 'ws';
import type { Agent } from '../../src/agent/agent.js';
import {
  formatServiceConnectionString,
  parseConnectionString,
  type ServiceConnectionString,
} from '../../src/auth/connection-string.js';
import { expiryIn, signSas } from '../../src/auth/sas.js';
import { DstreamError } from '../../src/errors.js';
import { closeWebSocket } from '../../src/net/close.js';
import { hubRequest, openWebSocket, UpgradeRefusedError } from '../../src/net/hub-client.js';
import { controlProtocol, streamProtocol } from '../../src/protocol/constants.js';
import type { ProxyStreamEnd } from '../../src/proxy/proxy.js';
import { hubTarget, serviceToken } from '../../src/service/credentials.js';
import { openServiceStream } from '../../src/service/stream-client.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';
import { closed, dial, readAll, waitEvent } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { startConnectedAgent, startTestProxy } from '../helpers/tunnel.js';

async function expectDstreamError(
  promise: Promise<unknown>,
  code: string,
  message: string,
): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DstreamError);
  expect((error as DstreamError).code).toBe(code);
  expect((error as DstreamError).message).toContain(message);
}

describe('stream outcomes', () => {
  let t: TestHub;
  let echo: TestServer;
  let agent: Agent;

  beforeEach(async () => {
    t = await startTestHub({ pairTimeoutMs: 1000 });
    echo = await startEchoServer();
    agent = await startConnectedAgent(
      await t.addDevice('pi-01'),
      new Map([
        ['echo', { host: '127.0.0.1', port: echo.port }],
        // A port where nothing listens: the device must reject with the reason.
        ['dead', { host: '127.0.0.1', port: 1 }],
      ]),
    );
  });

  afterEach(async () => {
    await agent.close();
    await echo.close();
    await t.cleanup();
  });

  const open = (deviceId: string, streamName: string, cs: ServiceConnectionString = t.service) =>
    openServiceStream(cs, hubTarget(cs), { deviceId, streamName, responseTimeoutSeconds: 5 });

  async function echoWorks(): Promise<void> {
    const proxy = await startTestProxy(t, 'pi-01', 'echo');
    const client = await dial(proxy.port);
    client.end('still serving');
    expect((await readAll(client)).toString()).toBe('still serving');
    await proxy.close();
  }

  it('a stream name not in the allow-list is rejected with the reason, and the proxy closes that client', async () => {
    await expectDstreamError(
      open('pi-01', '23'),
      'ERR_STREAM_REJECTED',
      "stream '23' is not allowed on this device",
    );
    const proxy = await startTestProxy(t, 'pi-01', '23');
    const ended = waitEvent<ProxyStreamEnd>(proxy, 'stream-end');
    const client = await dial(proxy.port);
    expect(await readAll(client)).toHaveLength(0);
    expect(await ended).toMatchObject({
      outcome: 'failed',
      reason: expect.stringContaining('not allowed') as string,
    });
    await proxy.close();
    await echoWorks();
  });

  it('stream names are only looked up in the allow-list, never parsed as hosts or ports', async () => {
    for (const name of ['127.0.0.1:22', 'localhost:22', 'echo:1', '22', 'ECHO']) {
      const error = (await open('pi-01', name).catch((e: unknown) => e)) as DstreamError;
      expect([error.code, error.message]).toEqual([
        'ERR_STREAM_REJECTED',
        `device 'pi-01' rejected stream '${name}': stream '${name}' is not allowed on this device (it allows: echo, dead)`,
      ]);
    }
    // Names outside the alphabet never reach the device.
    for (const name of ['../22', '22 ', 'a/b']) {
      const error = (await open('pi-01', name).catch((e: unknown) => e)) as DstreamError;
      expect(error.code).toBe('ERR_USAGE');
    }
  });

  it('a target that refuses makes the device reject the stream with that reason', async () => {
    await expectDstreamError(
      open('pi-01', 'dead'),
      'ERR_STREAM_REJECTED',
      'cannot connect to 127.0.0.1:1',
    );
    await echoWorks();
  });

  it('unknown device: 404 DeviceNotFound', async () => {
    await expectDstreamError(
      open('ghost', 'echo'),
      'ERR_DEVICE_NOT_FOUND',
      "device 'ghost' is not registered",
    );
  });

  it('offline device: 404 DeviceNotOnline', async () => {
    await t.registry.add('pi-02');
    const res = await hubRequest(hubTarget(t.service), {
      method: 'POST',
      path: '/twins/pi-02/streams/echo',
      headers: { authorization: serviceToken(t.service) },
    });
    expect(res.status).toBe(404);
    expect(hubError(res)).toEqual({
      errorCode: 'DeviceNotOnline',
      message: "device 'pi-02' is not connected to the hub",
    });
  });

  it('connect timeout: the hub waits for an offline device to come online', async () => {
    const cs = await t.addDevice('late');
    const pending = openServiceStream(t.service, hubTarget(t.service), {
      deviceId: 'late',
      streamName: 'echo',
      connectTimeoutSeconds: 10,
    });
    const late = await startConnectedAgent(
      cs,
      new Map([['echo', { host: '127.0.0.1', port: echo.port }]]),
    );
    const ws = await pending;
    closeWebSocket(ws, 1000);
    await late.close();
  });

  it('disabled device: its agent is disconnected and refused, streams get 403', async () => {
    const gone = waitEvent(agent, 'disconnected');
    await t.registry.setStatus('pi-01', 'disabled');
    await gone;
    await expectDstreamError(
      open('pi-01', 'echo'),
      'ERR_DEVICE_DISABLED',
      "device 'pi-01' is disabled",
    );
    // Enable again: the agent comes back by itself.
    await t.registry.setStatus('pi-01', 'enabled');
    await waitEvent(agent, 'connected', 40_000);
    await echoWorks();
  }, 60_000);

  it('bad service key: 401, and the hub keeps serving', async () => {
    const wrong = parseConnectionString(
      formatServiceConnectionString(
        t.service.hub,
        'service',
        Buffer.alloc(32, 9).toString('base64'),
      ),
    ) as ServiceConnectionString;
    await expectDstreamError(
      open('pi-01', 'echo', wrong),
      'ERR_UNAUTHORIZED',
      'invalid token signature or policy',
    );
    await expectDstreamError(
      t.registry.list().then(() => open('pi-01', 'echo', wrong)),
      'ERR_UNAUTHORIZED',
      'invalid',
    );
    await echoWorks();
  });

  it('bad device key: the control connection is refused with 401', async () => {
    const cs = await t.addDevice('pi-03');
    const token = signSas({
      resource: 'x/devices/pi-03',
      key: Buffer.alloc(32, 3).toString('base64'),
      expiry: expiryIn(60),
    });
    const url = `wss://127.0.0.1:${t.hub.port}/devices/pi-03/control`;
    const error = await openWebSocket(url, cs.hub, {
      headers: { authorization: token },
      protocols: [controlProtocol],
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpgradeRefusedError);
    expect((error as UpgradeRefusedError).status).toBe(401);
    expect((error as UpgradeRefusedError).body).toContain('invalid device credentials');
  });

  it('a device that never answers gives 504', async () => {
    const cs = await t.addDevice('mute');
    const token = signSas({
      resource: `x/devices/mute`,
      key: cs.sharedAccessKey,
      expiry: expiryIn(60),
    });
    const ws = await openWebSocket(`wss://127.0.0.1:${t.hub.port}/devices/mute/control`, cs.hub, {
      headers: { authorization: token },
      protocols: [controlProtocol],
    });
    const error = await openServiceStream(t.service, hubTarget(t.service), {
      deviceId: 'mute',
      streamName: 'echo',
      responseTimeoutSeconds: 1,
    }).catch((e: unknown) => e);
    expect((error as DstreamError).code).toBe('ERR_TIMEOUT');
    expect((error as DstreamError).message).toBe("device 'mute' did not answer within 1 s");
    closeWebSocket(ws, 1000);
  });

  it('malformed requests get clear status codes', async () => {
    const target = hubTarget(t.service);
    const auth = { authorization: serviceToken(t.service) };
    const cases: [string, string, Record<string, string>, number, string][] = [
      [
        'POST',
        '/twins/pi-01/streams/echo',
        { authorization: 'SharedAccessSignature nonsense' },
        401,
        'malformed SharedAccessSignature',
      ],
      ['POST', '/twins/pi-01/streams/echo', {}, 401, 'missing Authorization header'],
      [
        'POST',
        '/twins/a%20b/streams/echo',
        auth,
        400,
        "device ID 'a b' may not contain a space: use letters",
      ],
      ['POST', '/twins/pi-01/streams/%ZZ', auth, 400, 'bad percent-encoding'],
      // Never normalised into another stream or device: refused as sent.
      ['POST', '/twins/pi-01/streams/22/../echo', auth, 400, 'dot segments (. and ..)'],
      ['POST', '/twins/pi-01/streams/%2e%2E/echo', auth, 400, 'dot segments (. and ..)'],
      ['POST', '/twins/pi-01/./streams/echo', auth, 400, 'dot segments (. and ..)'],
      ['POST', '/twins/pi-01/streams/ec%2Fho', auth, 400, 'encoded slashes'],
      ['GET', '/devices/pi%5C01', auth, 400, 'encoded slashes'],
      [
        'POST',
        '/twins/pi-01/streams/echo',
        { ...auth, 'iothub-streaming-response-timeout-in-seconds': 'soon' },
        400,
        'must be a number of seconds from 0 to 300',
      ],
      [
        'POST',
        '/twins/pi-01/streams/echo',
        { ...auth, 'iothub-streaming-connect-timeout-in-seconds': '300.5' },
        400,
        'must be a number of seconds from 0 to 300',
      ],
      [
        'POST',
        '/twins/pi-01/streams/echo',
        { ...auth, 'iothub-streaming-connect-timeout-in-seconds': '1e3' },
        400,
        'must be a number of seconds from 0 to 300',
      ],
      ['GET', '/twins/pi-01/streams/echo', auth, 405, 'stream initiation is POST'],
      ['GET', '/nothing/here', auth, 404, 'no such endpoint'],
      ['PATCH', '/devices/pi-01', auth, 400, 'body must be'],
      ['POST', '/devices', auth, 405, 'POST is not supported'],
    ];
    for (const [method, path, headers, status, message] of cases) {
      const res = await hubRequest(target, { method, path, headers });
      expect({ path, status: res.status }).toEqual({ path, status });
      expect(res.body).toContain(message);
    }
    await echoWorks();
  });

  it("a body over 64 KiB is answered 413 in IoT Hub's shape (PATCH and PUT), and the hub serves on", async () => {
    const target = hubTarget(t.service);
    const auth = { authorization: serviceToken(t.service), 'content-type': 'application/json' };
    const big = JSON.stringify({ status: 'enabled', pad: 'x'.repeat(70 * 1024) });
    for (const [method, path] of [
      ['PATCH', '/devices/pi-01'],
      ['PATCH', '/policies/service'],
      ['PUT', '/devices/big-one'],
    ] as const) {
      const res = await hubRequest(target, { method, path, headers: auth, body: big });
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 413 });
      expect(hubError(res)).toEqual({
        errorCode: 'ArgumentInvalid',
        message: 'request body larger than 65536 bytes',
      });
    }
    await echoWorks();
  });

  it('stream tokens are single-use and bound to their stream', async () => {
    const res = await hubRequest(hubTarget(t.service), {
      method: 'POST',
      path: '/twins/pi-01/streams/echo',
      headers: { authorization: serviceToken(t.service) },
    });
    expect(res.headers['iothub-streaming-is-accepted']).toBe('True');
    const url = res.headers['iothub-streaming-url'] as string;
    const token = res.headers['iothub-streaming-auth-token'] as string;
    expect(url).toMatch(new RegExp(`^wss://127\\.0\\.0\\.1:${t.hub.port}/bridges/[A-Za-z0-9_-]+$`));
    const opts = { headers: { authorization: `Bearer ${token}` }, protocols: [streamProtocol] };
    // Wrong stream id with a real token: refused.
    const wrong = await openWebSocket(url.replace(/[^/]+$/, 'AAAA'), t.service.hub, opts).catch(
      (e: unknown) => e,
    );
    expect((wrong as UpgradeRefusedError).status).toBe(401);
    const first = await openWebSocket(url, t.service.hub, opts);
    const replay = await openWebSocket(url, t.service.hub, opts).catch((e: unknown) => e);
    expect((replay as UpgradeRefusedError).status).toBe(401);
    expect((replay as UpgradeRefusedError).body).toContain('stream token already used');
    first.send(Buffer.from('abc'));
    first.send(JSON.stringify({ type: 'eof' }));
    const echoed = new Promise<Buffer>((resolve) =>
      first.once('message', (d: Buffer) => resolve(d)),
    );
    first.resume();
    expect((await echoed).toString()).toBe('abc');
    closeWebSocket(first, 1000);
  });

  it('a stream whose second side never arrives is dropped', async () => {
    // Ask the hub directly and never connect the service side: the device side waits, then is closed.
    const dropped = waitEvent<{ paired: boolean; reason: string }>(
      t.hub.streams,
      'stream-end',
      10_000,
    );
    const res = await hubRequest(hubTarget(t.service), {
      method: 'POST',
      path: '/twins/pi-01/streams/echo',
      headers: { authorization: serviceToken(t.service) },
    });
    expect(res.status).toBe(200);
    expect(await dropped).toMatchObject({
      paired: false,
      reason: 'the other side did not connect in time',
    });
    await waitEvent(agent, 'stream-end');
    expect(agent.activeStreams).toBe(0);
  });

  it.each([
    [[], ''],
    // Azure's C device sample offers MQTT; a strict client drops a socket that echoes none.
    [['MQTT'], 'MQTT'],
    [['x.one', 'x.two'], 'x.one'],
    [['MQTT', streamProtocol], streamProtocol],
  ])('a raw-bytes peer offering %j gets %j and relays raw bytes', async (offered, chosen) => {
    const res = await hubRequest(hubTarget(t.service), {
      method: 'POST',
      path: '/twins/pi-01/streams/echo',
      headers: {
        authorization: serviceToken(t.service),
        // C# sends TimeSpan.TotalSeconds, which may be a decimal.
        'iothub-streaming-response-timeout-in-seconds': '2.5',
      },
    });
    expect(res.status).toBe(200);
    const ws = new WebSocket(res.headers['iothub-streaming-url'] as string, offered, {
      headers: { authorization: `Bearer ${res.headers['iothub-streaming-auth-token'] as string}` },
      rejectUnauthorized: false,
    });
    ws.on('error', () => undefined);
    await waitEvent(ws, 'open');
    expect(ws.protocol).toBe(chosen);
    if (chosen === streamProtocol) {
      ws.close();
      return;
    }
    // ws offers permessage-deflate by default; stream sockets never take it.
    expect(ws.extensions).toBe('');
    ws.send(Buffer.from('raw bytes'));
    const [data, isBinary] = await new Promise<[Buffer, boolean]>((resolve) =>
      ws.once('message', (d: Buffer, b: boolean) => resolve([d, b])),
    );
    expect([data.toString(), isBinary]).toEqual(['raw bytes', true]);
    const done = waitEvent(agent, 'stream-end');
    ws.close();
    await done;
  });

  it('GET /healthz answers 200 without credentials', async () => {
    const res = await hubRequest(hubTarget(t.service), { method: 'GET', path: '/healthz' });
    expect(res).toMatchObject({ status: 200, body: '{"status":"ok"}' });
  });

  it('unknown stream socket paths and ids are refused', async () => {
    const error = await openWebSocket(`wss://127.0.0.1:${t.hub.port}/bridges/nope`, t.service.hub, {
      headers: { authorization: 'Bearer x' },
      protocols: [streamProtocol],
    }).catch((e: unknown) => e);
    expect((error as UpgradeRefusedError).status).toBe(401);
    const client = await dial(t.hub.port);
    client.end('GET / HTTP/1.1\r\n\r\n');
    await closed(client);
    await echoWorks();
  });
});
