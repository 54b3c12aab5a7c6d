import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hubError } from '../helpers/hub-error.js';
import WebSocket from 'ws';
import {
  formatServiceConnectionString,
  parseConnectionString,
  type DeviceConnectionString,
  type ServiceConnectionString,
} from '../../src/auth/connection-string.js';
import { expiryIn, signSas } from '../../src/auth/sas.js';
import { DstreamError } from '../../src/errors.js';
import { createAuditLog } from '../../src/hub/store/audit-log.js';
import { createLogger } from '../../src/log/logger.js';
import {
  hubRequest,
  openWebSocket,
  UpgradeRefusedError,
  type HubTarget,
} from '../../src/net/hub-client.js';
import { controlProtocol, streamProtocol } from '../../src/protocol/constants.js';
import { hubTarget, serviceToken } from '../../src/service/credentials.js';
import { PolicyClient } from '../../src/service/policy-client.js';
import { RegistryClient } from '../../src/service/registry-client.js';
import { openServiceStream } from '../../src/service/stream-client.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';
import { dial, readAll, waitEvent, waitFor } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { startConnectedAgent, startTestProxy } from '../helpers/tunnel.js';

/** The misuse table of docs/security.md, row by row, against a real hub. */
describe('credential misuse', () => {
  let t: TestHub;
  let echo: TestServer;
  let logs: string[];
  let secrets: string[];
  const cleanups: (() => Promise<unknown> | void)[] = [];

  async function setUp(guard = {}): Promise<void> {
    logs = [];
    const logger = createLogger({ level: 'debug', format: 'json', write: (l) => logs.push(l) });
    t = await startTestHub({ logger, guard });
    cleanups.push(() => t.cleanup());
    echo = await startEchoServer();
    cleanups.push(() => echo.close());
    secrets = [t.state.servicePolicy.key];
  }

  afterEach(async () => {
    // Whatever happened, no key or token reached a log line.
    for (const secret of secrets ?? [])
      for (const line of logs ?? []) expect(line).not.toContain(secret);
    for (const line of logs ?? []) expect(line).not.toMatch(/sig=|SharedAccessKey=|Bearer /);
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  const target = (): HubTarget => hubTarget(t.service);
  const post = (path: string, authorization: string) =>
    hubRequest(target(), { method: 'POST', path, headers: { authorization } });
  const serviceTokenFor = (
    o: { key?: string; keyName?: string; expiry?: number; resource?: string } = {},
  ) =>
    signSas({
      resource: `127.0.0.1:${t.hub.port}`,
      key: t.state.servicePolicy.key,
      keyName: 'service',
      expiry: expiryIn(3600),
      ...o,
    });

  async function device(id: string): Promise<DeviceConnectionString> {
    const info = await t.registry.add(id);
    secrets.push(
      info.authentication?.symmetricKey.primaryKey ?? '',
      info.authentication?.symmetricKey.secondaryKey ?? '',
    );
    return parseConnectionString(info.connectionString ?? '') as DeviceConnectionString;
  }

  async function controlWith(id: string, token: string): Promise<unknown> {
    return openWebSocket(`wss://127.0.0.1:${t.hub.port}/devices/${id}/control`, t.service.hub, {
      headers: { authorization: token },
      protocols: [controlProtocol],
    }).catch((e: unknown) => e);
  }

  const deviceToken = (id: string, key: string, expiry = expiryIn(3600)) =>
    signSas({ resource: `h/devices/${id}`, key, expiry });

  it('service: wrong key, expired, valid too long, device token on the service API', async () => {
    await setUp();
    const pi = await device('pi');
    const wrong = await post(
      '/twins/pi/streams/22',
      serviceTokenFor({ key: Buffer.alloc(32, 1).toString('base64') }),
    );
    expect([wrong.status, hubError(wrong)]).toEqual([
      401,
      { errorCode: 'IotHubUnauthorizedAccess', message: 'invalid token signature or policy' },
    ]);
    const expired = await post(
      '/twins/pi/streams/22',
      serviceTokenFor({ expiry: expiryIn(-3600) }),
    );
    expect([expired.status, hubError(expired).message]).toEqual([401, 'the token has expired']);
    const tooLong = await post(
      '/twins/pi/streams/22',
      serviceTokenFor({ expiry: expiryIn(48 * 3600) }),
    );
    expect([tooLong.status, hubError(tooLong).message]).toEqual([
      401,
      'the token is valid for longer than this hub allows (86400 s)',
    ]);
    // A device key cannot act on the service API, with or without a policy name.
    for (const token of [
      deviceToken('pi', pi.sharedAccessKey),
      signSas({ resource: 'h', key: pi.sharedAccessKey, keyName: 'service', expiry: expiryIn(60) }),
    ]) {
      expect((await post('/twins/pi/streams/22', token)).status).toBe(401);
      expect(
        (
          await hubRequest(target(), {
            method: 'GET',
            path: '/devices',
            headers: { authorization: token },
          })
        ).status,
      ).toBe(401);
    }
  });

  it("device: another device's token, a removed device, a disabled device, a rotated key", async () => {
    await setUp();
    const a = await device('a');
    const b = await device('b');
    const other = (await controlWith(
      'b',
      deviceToken('a', a.sharedAccessKey),
    )) as UpgradeRefusedError;
    expect([other.status, hubError(other).message]).toEqual([
      401,
      'the token is not scoped to this device',
    ]);
    const forged = (await controlWith(
      'b',
      deviceToken('b', a.sharedAccessKey),
    )) as UpgradeRefusedError;
    expect([forged.status, hubError(forged).message]).toEqual([401, 'invalid device credentials']);
    await t.registry.setStatus('b', 'disabled');
    expect(
      ((await controlWith('b', deviceToken('b', b.sharedAccessKey))) as UpgradeRefusedError).status,
    ).toBe(403);
    await t.registry.remove('b');
    expect(
      ((await controlWith('b', deviceToken('b', b.sharedAccessKey))) as UpgradeRefusedError).status,
    ).toBe(401);

    // Rotation: the secondary key keeps working while the primary is replaced; the old one dies.
    const info = await t.registry.show('a');
    const secondary = info.authentication?.symmetricKey.secondaryKey ?? '';
    const rotated = await t.registry.regenerateKey('a', 'primary');
    secrets.push(rotated.authentication?.symmetricKey.primaryKey ?? '');
    expect(
      ((await controlWith('a', deviceToken('a', a.sharedAccessKey))) as UpgradeRefusedError).status,
    ).toBe(401);
    const viaSecondary = await controlWith('a', deviceToken('a', secondary));
    expect(viaSecondary).toBeInstanceOf(WebSocket);
    (viaSecondary as WebSocket).terminate();
    const newKey = rotated.authentication?.symmetricKey.primaryKey ?? '';
    expect(newKey).not.toBe(a.sharedAccessKey);
    const viaNew = await controlWith('a', deviceToken('a', newKey));
    expect(viaNew).toBeInstanceOf(WebSocket);
    (viaNew as WebSocket).terminate();
  });

  it("rights: a policy without ServiceConnect cannot open streams; RegistryRead cannot write; no granting beyond one's own rights", async () => {
    await setUp();
    await device('pi');
    const policies = new PolicyClient(t.service, target());
    const reader = await policies.add('reader', ['RegistryRead']);
    const readerCs = parseConnectionString(
      reader.connectionString ?? '',
    ) as ServiceConnectionString;
    secrets.push(readerCs.sharedAccessKey);
    const stream = (await openServiceStream(readerCs, hubTarget(readerCs), {
      deviceId: 'pi',
      streamName: 'e',
    }).catch((e: unknown) => e)) as DstreamError;
    expect([stream.code, stream.message]).toEqual([
      'ERR_FORBIDDEN',
      "policy 'reader' lacks the ServiceConnect right",
    ]);
    const readerRegistry = new RegistryClient(readerCs, hubTarget(readerCs));
    expect((await readerRegistry.list()).map((d) => d.deviceId)).toEqual(['pi']);
    const write = (await readerRegistry.add('x').catch((e: unknown) => e)) as DstreamError;
    expect(write.message).toBe("policy 'reader' lacks the RegistryWrite right");

    const writer = await policies.add('writer', ['RegistryRead', 'RegistryWrite']);
    const writerCs = parseConnectionString(
      writer.connectionString ?? '',
    ) as ServiceConnectionString;
    secrets.push(writerCs.sharedAccessKey);
    const writerPolicies = new PolicyClient(writerCs, hubTarget(writerCs));
    // Registry rights do not reach policies: no copy of itself, no removing the service policy.
    const copy = (await writerPolicies
      .add('copy', ['RegistryRead', 'RegistryWrite'])
      .catch((e: unknown) => e)) as DstreamError;
    expect(copy.message).toBe("policy 'writer' lacks the PolicyWrite right");
    const removeAll = (await writerPolicies
      .remove('service')
      .catch((e: unknown) => e)) as DstreamError;
    expect(removeAll.message).toBe("policy 'writer' lacks the PolicyWrite right");

    const manager = await policies.add('manager', ['RegistryRead', 'PolicyWrite']);
    const managerCs = parseConnectionString(
      manager.connectionString ?? '',
    ) as ServiceConnectionString;
    secrets.push(managerCs.sharedAccessKey);
    const managerPolicies = new PolicyClient(managerCs, hubTarget(managerCs));
    const escalate = (await managerPolicies
      .add('sneaky', ['ServiceConnect'])
      .catch((e: unknown) => e)) as DstreamError;
    expect(escalate.message).toBe("policy 'manager' cannot grant ServiceConnect, which it lacks");
    const selfRemove = (await managerPolicies
      .remove('manager')
      .catch((e: unknown) => e)) as DstreamError;
    expect(selfRemove.message).toBe("policy 'manager' cannot remove itself; use another policy");
    expect((await policies.list()).map((p) => [p.name, p.rights.join(',')])).toEqual([
      ['manager', 'RegistryRead,PolicyWrite'],
      ['reader', 'RegistryRead'],
      ['service', 'ServiceConnect,RegistryRead,RegistryWrite,PolicyWrite'],
      ['writer', 'RegistryRead,RegistryWrite'],
    ]);
    await policies.remove('reader');
    const gone = (await readerRegistry.list().catch((e: unknown) => e)) as DstreamError;
    expect(gone.code).toBe('ERR_UNAUTHORIZED');
  });

  it('stream tokens: replayed, swapped to the other stream, or used by the wrong side: 401, logged', async () => {
    await setUp();
    const cs = await device('pi');
    const agent = await startConnectedAgent(
      cs,
      new Map([['e', { host: '127.0.0.1', port: echo.port }]]),
    );
    cleanups.push(() => agent.close());
    const ask = async () => {
      const res = await post('/twins/pi/streams/e', serviceToken(t.service));
      secrets.push(res.headers['iothub-streaming-auth-token'] as string);
      return {
        url: res.headers['iothub-streaming-url'] as string,
        token: res.headers['iothub-streaming-auth-token'] as string,
      };
    };
    const s1 = await ask();
    const s2 = await ask();
    const open = (url: string, token: string) =>
      openWebSocket(url, t.service.hub, {
        headers: { authorization: `Bearer ${token}` },
        protocols: [streamProtocol],
      }).catch((e: unknown) => e);
    // Stream 1's token on stream 2: refused.
    expect(((await open(s2.url, s1.token)) as UpgradeRefusedError).status).toBe(401);
    const first = (await open(s1.url, s1.token)) as WebSocket;
    expect(first).toBeInstanceOf(WebSocket);
    expect(((await open(s1.url, s1.token)) as UpgradeRefusedError).body).toContain(
      'stream token already used',
    );
    first.terminate();
    expect(logs.some((l) => l.includes('stream connection refused: token already used'))).toBe(
      true,
    );
    expect(
      logs.some((l) => l.includes('stream connection refused: unknown stream or invalid token')),
    ).toBe(true);
    const second = (await open(s2.url, s2.token)) as WebSocket;
    second.terminate();
  });

  it("the other side's stream token: once the device used it, nobody else can", async () => {
    await setUp();
    const cs = await device('fake');
    // A device speaking the control protocol by hand, to see its own stream token.
    const control = (await controlWith(
      'fake',
      deviceToken('fake', cs.sharedAccessKey),
    )) as WebSocket;
    const request = new Promise<{ requestId: string; url: string; authorizationToken: string }>(
      (resolve) =>
        control.once('message', (d: Buffer) =>
          resolve(
            JSON.parse(d.toString()) as {
              requestId: string;
              url: string;
              authorizationToken: string;
            },
          ),
        ),
    );
    control.resume();
    const asked = post('/twins/fake/streams/x', serviceToken(t.service));
    const req = await request;
    secrets.push(req.authorizationToken);
    control.send(
      JSON.stringify({ type: 'stream-response', requestId: req.requestId, accepted: true }),
    );
    const res = await asked;
    const svcToken = res.headers['iothub-streaming-auth-token'] as string;
    secrets.push(svcToken);
    const open = (token: string) =>
      openWebSocket(req.url, t.service.hub, {
        headers: { authorization: `Bearer ${token}` },
        protocols: [streamProtocol],
      }).catch((e: unknown) => e);
    const deviceSide = (await open(req.authorizationToken)) as WebSocket;
    expect(deviceSide).toBeInstanceOf(WebSocket);
    const stolen = (await open(req.authorizationToken)) as UpgradeRefusedError;
    expect([stolen.status, hubError(stolen)]).toEqual([
      401,
      { errorCode: 'IotHubUnauthorizedAccess', message: 'stream token already used' },
    ]);
    const serviceSide = (await open(svcToken)) as WebSocket;
    expect(serviceSide).toBeInstanceOf(WebSocket);
    for (const ws of [deviceSide, serviceSide, control]) ws.terminate();
  });

  it('too many failed authentications from one address: 429 with Retry-After, for the rest of the minute', async () => {
    await setUp({ authFailuresPerMinute: 3 });
    await device('pi');
    for (let i = 0; i < 3; i++)
      expect((await post('/twins/pi/streams/e', 'SharedAccessSignature nope')).status).toBe(401);
    const limited = await post('/twins/pi/streams/e', serviceToken(t.service));
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(hubError(limited).errorCode).toBe('ThrottlingException');
    const upgrade = (await controlWith('pi', 'SharedAccessSignature nope')) as UpgradeRefusedError;
    expect(upgrade.status).toBe(429);
  });

  it('unauthenticated connections per address are capped; authenticated ones are not counted', async () => {
    await setUp({ unauthenticatedPerIp: 3 });
    const idle = await Promise.all([dial(t.hub.port), dial(t.hub.port), dial(t.hub.port)]);
    const extra = await dial(t.hub.port);
    // The hub drops it at once: our side sees EOF (dial allows half-open, so no 'close' yet).
    await once(extra, 'end');
    extra.destroy();
    for (const s of idle) s.destroy();
    // Once those are gone the address may connect again; authenticated requests are not counted.
    await waitFor(
      () => t.hub.guard.unauthenticatedFrom('127.0.0.1') === 0,
      5000,
      'the count to drop',
    );
    expect((await t.registry.list()).length).toBe(0);
    await waitFor(
      () => t.hub.guard.unauthenticatedFrom('127.0.0.1') === 0,
      5000,
      'the count to stay 0',
    );
  });

  it('an oversized or malformed control message closes the control socket with 1008 and a log line', async () => {
    await setUp();
    const cs = await device('pi');
    for (const payload of ['x'.repeat(17 * 1024), '{"type":"nope"}', Buffer.from([1, 2, 3])]) {
      const ws = (await controlWith('pi', deviceToken('pi', cs.sharedAccessKey))) as WebSocket;
      ws.resume();
      const closedWith = waitEvent<number>(ws, 'close');
      ws.send(payload);
      expect(await closedWith).toBe(1008);
    }
    expect(logs.filter((l) => l.includes('device sent an invalid control message')).length).toBe(3);
  });
});

describe('audit log', () => {
  it('one JSON line per stream attempt, with outcome, bytes and no secrets', async () => {
    const t = await startTestHub({});
    const file = join(t.dataDir, 'audit.log');
    await t.stop();
    const t2 = await startTestHub({ dataDir: t.dataDir, audit: createAuditLog({ file }) });
    const echo = await startEchoServer();
    try {
      const cs = await t2.addDevice('pi');
      const agent = await startConnectedAgent(
        cs,
        new Map([['e', { host: '127.0.0.1', port: echo.port }]]),
      );
      const proxy = await startTestProxy(t2, 'pi', 'e');
      const client = await dial(proxy.port);
      client.end('hello');
      expect((await readAll(client)).toString()).toBe('hello');
      const ended = waitEvent(t2.hub.streams, 'stream-end');
      await ended.catch(() => undefined);
      await openServiceStream(t2.service, hubTarget(t2.service), {
        deviceId: 'pi',
        streamName: 'nope',
      }).catch(() => undefined);
      const wrong = parseConnectionString(
        formatServiceConnectionString(
          t2.service.hub,
          'service',
          Buffer.alloc(32, 5).toString('base64'),
        ),
      ) as ServiceConnectionString;
      await openServiceStream(wrong, hubTarget(wrong), { deviceId: 'pi', streamName: 'e' }).catch(
        () => undefined,
      );
      await proxy.close();
      await agent.close();
      await t2.stop();
      const lines = readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).toEqual([
        // The operator's action first (issue 27), then one line per stream attempt.
        expect.objectContaining({
          policy: 'service',
          device: 'pi',
          stream: '',
          outcome: 'device-added',
          remote: '127.0.0.1',
        }),
        expect.objectContaining({
          policy: 'service',
          device: 'pi',
          stream: 'e',
          outcome: 'completed',
          bytesToDevice: 5,
          bytesFromDevice: 5,
          remote: '127.0.0.1',
        }),
        expect.objectContaining({
          policy: 'service',
          device: 'pi',
          stream: 'nope',
          outcome: 'rejected',
          reason: "stream 'nope' is not allowed on this device (it allows: e)",
        }),
        expect.objectContaining({
          device: 'pi',
          stream: 'e',
          outcome: 'unauthorized',
          reason: 'invalid token signature or policy',
        }),
      ]);
      for (const line of lines)
        expect(Object.keys(line).sort()).toEqual(
          [
            'bytesFromDevice',
            'bytesToDevice',
            'device',
            'durationMs',
            'outcome',
            'reason',
            'remote',
            'stream',
            'time',
            ...(line.policy ? ['policy'] : []),
          ].sort(),
        );
      const text = readFileSync(file, 'utf8');
      expect(text).not.toContain(t2.state.servicePolicy.key);
      expect(text).not.toContain(cs.sharedAccessKey);
    } finally {
      await echo.close();
      await t2.cleanup();
    }
  });
});
