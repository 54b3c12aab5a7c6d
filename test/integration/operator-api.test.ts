import { request as httpsRequest } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expiryIn, signSas } from '../../src/auth/sas.js';
import { hubRequest, type HubResponse } from '../../src/net/hub-client.js';
import { hubTarget, serviceToken } from '../../src/service/credentials.js';
import { closed, dial, waitFor } from '../helpers/net.js';
import { startEchoServer } from '../helpers/servers.js';
import { startTestTunnel, type TestTunnel } from '../helpers/tunnel.js';

// Issue 27: the REST reads behind the console (open streams, audit, live events, the hub),
// and ending a stream, with the same rights as the rest of the API.

let tunnel: TestTunnel;
let viewer: { name: string; key: string };

beforeAll(async () => {
  tunnel = await startTestTunnel(startEchoServer());
  const policy = await tunnel.t.state.registry.addPolicy('viewer', ['RegistryRead']);
  viewer = { name: policy.name, key: policy.key };
});
afterAll(async () => {
  await tunnel.close();
});

/** A request as the all-rights service policy, or with `token`. */
function call(method: string, path: string, token?: string, body?: unknown): Promise<HubResponse> {
  const service = tunnel.t.service;
  return hubRequest(hubTarget(service), {
    method,
    path,
    headers: {
      authorization: token ?? serviceToken(service),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

const viewerToken = (): string =>
  signSas({ resource: 'hub', key: viewer.key, keyName: viewer.name, expiry: expiryIn(600) });

const json = <T>(r: HubResponse): T => JSON.parse(r.body) as T;

interface StreamJson {
  id: string;
  deviceId: string;
  streamName: string;
  policy: string;
  state: string;
  bytesToDevice: number;
  bytesFromDevice: number;
}

interface AuditJson {
  records: { seq: number; device: string; outcome: string; policy: string; reason: string }[];
  next: number | null;
}

describe('GET /streams and DELETE /streams/{id}', () => {
  it('lists an open stream with its live byte counts, and an operator ends it (4001, audited)', async () => {
    const client = await dial(tunnel.proxy.port);
    client.write(Buffer.alloc(5000, 1));
    let echoed = 0;
    client.on('data', (d: Buffer) => (echoed += d.length));
    await waitFor(() => echoed === 5000, 20_000, 'the echo');
    const streams = json<StreamJson[]>(await call('GET', '/streams'));
    expect(streams).toHaveLength(1);
    expect(streams[0]).toMatchObject({
      deviceId: 'dev',
      streamName: 't',
      policy: 'service',
      state: 'open',
      bytesToDevice: 5000,
      bytesFromDevice: 5000,
    });
    expect(json<StreamJson[]>(await call('GET', '/streams?deviceId=other'))).toEqual([]);
    const id = streams[0]?.id ?? '';

    // Reading takes RegistryRead; ending takes RegistryWrite.
    expect((await call('GET', '/streams', viewerToken())).status).toBe(200);
    const refused = await call('DELETE', `/streams/${id}`, viewerToken());
    expect(refused.status).toBe(403);
    expect(refused.headers['iothub-errorcode']).toBe('IotHubUnauthorizedAccess');
    expect((await call('GET', '/streams', 'SharedAccessSignature sr=x&sig=AAAA&se=1')).status).toBe(
      401,
    );

    const gone = closed(client, 20_000);
    expect((await call('DELETE', `/streams/${id}`)).status).toBe(204);
    await gone;
    expect((await call('DELETE', `/streams/${id}`)).status).toBe(404);
    await waitFor(() => tunnel.t.hub.streams.size === 0, 20_000, 'the stream to end');
    const audit = json<AuditJson>(await call('GET', '/audit?deviceId=dev&limit=5'));
    // Newest first: the stream's own end line, then the operator's.
    expect(audit.records.map((r) => r.outcome).slice(0, 2)).toEqual(['completed', 'stream-ended']);
    expect(audit.records[0]?.reason).toBe("ended by policy 'service'");
    expect(audit.records[1]).toMatchObject({ policy: 'service' });
    expect(audit.records[1]?.reason).toBe(`ended by policy 'service' (stream ${id})`);
  });
});

describe('GET /audit', () => {
  it('filters by device, outcome and time, pages with a cursor, and refuses a bad query', async () => {
    for (let i = 0; i < 7; i++) await tunnel.t.registry.add(`audit-${i}`);
    await tunnel.t.registry.setStatus('audit-3', 'disabled');
    await tunnel.t.registry.regenerateKey('audit-4', 'primary');
    await tunnel.t.registry.remove('audit-5');

    const added = json<AuditJson>(await call('GET', '/audit?outcome=device-added&limit=3'));
    expect(added.records.map((r) => r.device)).toEqual(['audit-6', 'audit-5', 'audit-4']);
    expect(added.next).not.toBeNull();
    const older = json<AuditJson>(
      await call('GET', `/audit?outcome=device-added&limit=3&before=${added.next}`),
    );
    expect(older.records.map((r) => r.device)).toEqual(['audit-3', 'audit-2', 'audit-1']);
    const last = json<AuditJson>(
      await call('GET', `/audit?outcome=device-added&limit=3&before=${older.next}`),
    );
    expect(last.records.map((r) => r.device)).toEqual(['audit-0', 'dev']);
    expect(last.next).toBeNull();

    const three = json<AuditJson>(await call('GET', '/audit?deviceId=audit-3'));
    expect(three.records.map((r) => r.outcome)).toEqual(['device-disabled', 'device-added']);
    expect(json<AuditJson>(await call('GET', '/audit?deviceId=audit-4')).records[0]).toMatchObject({
      outcome: 'device-key-regenerated',
      reason: "device key regenerated by policy 'service': primary key",
      policy: 'service',
    });
    expect(json<AuditJson>(await call('GET', '/audit?deviceId=audit-5')).records[0]?.outcome).toBe(
      'device-removed',
    );
    const future = new Date(Date.now() + 3600_000).toISOString();
    expect(json<AuditJson>(await call('GET', `/audit?since=${future}`)).records).toEqual([]);
    expect(
      json<AuditJson>(await call('GET', `/audit?until=${future}&limit=500`)).records.length,
    ).toBeGreaterThan(10);

    for (const bad of ['limit=0', 'limit=501', 'limit=x', 'since=yesterday', 'before=-1']) {
      const r = await call('GET', `/audit?${bad}`);
      expect(r.status, bad).toBe(400);
      expect(r.headers['iothub-errorcode']).toBe('ArgumentInvalid');
    }
    expect((await call('GET', '/audit', viewerToken())).status).toBe(200);
    expect((await call('POST', '/audit')).status).toBe(405);
  });
});

describe('GET /hub and GET /hub/devices', () => {
  it("report the hub, the caller's rights, and each device's link and traffic", async () => {
    const hub = json<{
      caller: { policy: string; rights: string[] };
      devices: { online: number };
      history: unknown[];
      resumeWindowSeconds: number;
      auditOutcomes: string[];
    }>(await call('GET', '/hub', viewerToken()));
    expect(hub.auditOutcomes).toEqual(expect.arrayContaining(['completed', 'stream-ended']));
    expect(hub.caller).toEqual({ policy: 'viewer', rights: ['RegistryRead'] });
    expect(hub.devices.online).toBe(1);
    expect(hub.resumeWindowSeconds).toBe(120);
    tunnel.t.hub.activity.sample();
    const devices = json<
      { deviceId: string; online: boolean; protocol: string | null; bytesLastHour: number }[]
    >(await call('GET', '/hub/devices'));
    const dev = devices.find((d) => d.deviceId === 'dev');
    expect(dev).toMatchObject({ online: true, protocol: 'websocket' });
    // The 5000 bytes each way of the stream above.
    expect(dev?.bytesLastHour).toBe(10_000);
    expect(devices.find((d) => d.deviceId === 'audit-3')).toMatchObject({
      online: false,
      protocol: null,
    });
  });
});

describe('GET /events', () => {
  /** Open the event stream; collect its events until `done` says enough. */
  function follow(
    token: string,
  ): Promise<{ res: IncomingMessage; events: { type: string; data: unknown }[] }> {
    const { hub } = tunnel.t;
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: hub.port,
          path: '/events',
          headers: { authorization: token },
          rejectUnauthorized: false,
        },
        (res) => {
          const events: { type: string; data: unknown }[] = [];
          let buffer = '';
          res.setEncoding('utf8');
          res.on('data', (text: string) => {
            buffer += text;
            let end: number;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const type = /^event: (.*)$/m.exec(block)?.[1] ?? '';
              const data = /^data: (.*)$/m.exec(block)?.[1];
              if (data !== undefined) events.push({ type, data: JSON.parse(data) as unknown });
            }
          });
          resolve({ res, events });
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('streams device, audit and tick events to a RegistryRead policy; refuses without a token', async () => {
    const { res, events } = await follow(viewerToken());
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    await tunnel.t.registry.add('evented');
    await tunnel.t.registry.setStatus('dev', 'disabled');
    await waitFor(
      () =>
        events.some((e) => e.type === 'device' && JSON.stringify(e.data).includes('"dev"')) &&
        events.some((e) => e.type === 'audit' && JSON.stringify(e.data).includes('evented')) &&
        events.some((e) => e.type === 'tick'),
      20_000,
      'device, audit and tick events',
    );
    expect(events.find((e) => e.type === 'device')?.data).toEqual({
      deviceId: 'dev',
      online: false,
    });
    res.destroy();
    await waitFor(() => tunnel.t.hub.feed.size === 0, 10_000, 'the feed to forget the client');
    const refused = await call('GET', '/events', 'SharedAccessSignature sr=x&sig=AAAA&se=1');
    expect(refused.status).toBe(401);
  });
});
