import { once } from 'node:events';
import type { AuditRecord } from '../../src/hub/store/audit-log.js';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startAgent, type Agent } from '../../src/agent/agent.js';
import { createLogger, silentLogger } from '../../src/log/logger.js';
import { MuxSession } from '../../src/mux/mux-session.js';
import type { MuxStream } from '../../src/mux/mux-stream.js';
import { muxProtocol, writeMuxHeader, MuxFrameType } from '../../src/protocol/mux-frames.js';
import { parseIotHubError } from '../../src/protocol/iothub-error.js';
import { startProxy, type PortProxy } from '../../src/proxy/proxy.js';
import { hubTarget, serviceToken } from '../../src/service/credentials.js';
import { hubRequest } from '../../src/net/hub-client.js';
import { requestStream } from '../../src/service/stream-client.js';
import { expiryIn, signSas } from '../../src/auth/sas.js';
import {
  parseConnectionString,
  type DeviceConnectionString,
} from '../../src/auth/connection-string.js';
import { serviceLink, type Transport } from '../../src/service/service-carrier.js';
import { proxyTo, startTestHub, type TestHub } from '../helpers/hub.js';
import { closed, dial, randomBytes, readAll, sha256, waitEvent, waitFor } from '../helpers/net.js';
import { startDigestServer, startEchoServer, type TestServer } from '../helpers/servers.js';

// The multiplexed carrier on the service side (issue 28, step 2): the port proxy's streams are
// substreams of one carrier connection to the hub, which relays them to the agent's stream
// sockets with every check a stream socket gets.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

/**
 * A hub a test kills and starts again on the same data dir and port (`restart`, or `first.stop()`
 * then `start()`); whichever is running last is cleaned up.
 */
async function restartableHub(): Promise<{
  readonly first: TestHub;
  start(): Promise<TestHub>;
  restart(): Promise<TestHub>;
}> {
  const first = await startTestHub();
  let current = first;
  cleanups.push(() => current.cleanup());
  const start = async (): Promise<TestHub> =>
    (current = await startTestHub({ dataDir: first.dataDir, port: first.hub.port }));
  return {
    first,
    start,
    restart: async () => {
      await first.stop();
      return start();
    },
  };
}

async function chain(
  target: TestServer,
  transport: Transport,
  options: { resume?: boolean; t?: TestHub; agentTransport?: Transport } = {},
): Promise<{ t: TestHub; agent: Agent; proxy: PortProxy }> {
  const t = options.t ?? (await startTestHub());
  if (!options.t) cleanups.push(() => t.cleanup());
  const agent = startAgent(
    {
      credential: await t.addDevice('dev'),
      allow: new Map([['t', { host: '127.0.0.1', port: target.port }]]),
      reconnectMinMs: 50,
      reconnectMaxMs: 500,
      resume: options.resume ?? true,
      transport: options.agentTransport ?? 'ws',
    },
    silentLogger,
  );
  cleanups.push(() => agent.close());
  await waitEvent(agent, 'connected');
  // A mux agent opens its carrier connection beside its control connection: stream requests
  // are offers on it from then on.
  if (options.agentTransport === 'mux')
    await waitFor(() => t.hub.devices.takesOffers('dev'), 30_000, "the agent's carrier connection");
  const proxy = await startProxy(
    { ...proxyTo(t), resume: options.resume ?? true, transport },
    process.env.MUX_DEBUG
      ? createLogger({
          level: 'debug',
          format: 'json',
          write: (l) => process.stderr.write(`proxy ${l}\n`),
        })
      : silentLogger,
  );
  cleanups.push(() => proxy.close());
  return { t, agent, proxy };
}

async function server(start: Promise<TestServer>): Promise<TestServer> {
  const s = await start;
  cleanups.push(() => s.close());
  return s;
}

/** One connection through the proxy: send `payload`, half-close, read the digest server's answer. */
async function digestThrough(port: number, payload: Buffer): Promise<string> {
  const socket = await dial(port);
  const answer = readAll(socket, 120_000);
  socket.end(payload);
  return (await answer).toString();
}

/** A raw carrier connection to the hub, as a client of the framing would open one. */
function openCarrier(t: TestHub, authorization: string): WebSocket {
  const ws = new WebSocket(`wss://127.0.0.1:${t.hub.port}/mux`, muxProtocol, {
    rejectUnauthorized: false,
    headers: { authorization },
  });
  ws.on('error', () => undefined);
  cleanups.push(() => ws.terminate());
  return ws;
}

/** A device token for `device` on `t`'s hub. */
function deviceSas(t: TestHub, device: DeviceConnectionString): string {
  return signSas({
    resource: `127.0.0.1:${t.hub.port}/devices/${device.deviceId}`,
    key: device.sharedAccessKey,
    expiry: expiryIn(600),
  });
}

/**
 * A device's raw carrier connection, open, with a dialler session on it; `offers`: it says it
 * takes stream offers.
 */
async function deviceCarrier(
  t: TestHub,
  device: DeviceConnectionString,
  offers = false,
): Promise<{ ws: WebSocket; session: MuxSession }> {
  const ws = new WebSocket(
    `wss://127.0.0.1:${t.hub.port}/devices/${device.deviceId}/mux`,
    muxProtocol,
    {
      rejectUnauthorized: false,
      headers: {
        authorization: deviceSas(t, device),
        ...(offers && { 'dstream-stream-offers': '1' }),
      },
    },
  );
  ws.on('error', () => undefined);
  cleanups.push(() => ws.terminate());
  await once(ws, 'open');
  return { ws, session: new MuxSession(ws, { role: 'dialler' }) };
}

/** A device's raw control connection, open; the stream requests it receives, as text. */
async function deviceControl(t: TestHub, device: DeviceConnectionString): Promise<string[]> {
  const control = new WebSocket(
    `wss://127.0.0.1:${t.hub.port}/devices/${device.deviceId}/control`,
    'dstream.control.v1',
    { rejectUnauthorized: false, headers: { authorization: deviceSas(t, device) } },
  );
  control.on('error', () => undefined);
  cleanups.push(() => control.terminate());
  const requests: string[] = [];
  control.on('message', (data: Buffer) => requests.push(data.toString()));
  await once(control, 'open');
  return requests;
}

describe('multiplexed carrier, service side', () => {
  it('30 connections at once ride one carrier connection, byte-exact with their half-close, and leave nothing behind', async () => {
    const digest = await server(startDigestServer());
    const { t, proxy } = await chain(digest, 'mux');
    const sizes = Array.from({ length: 30 }, (_, i) =>
      i % 3 === 0 ? 2 * 1024 * 1024 + i : 100 * i + 1,
    );
    const results = await Promise.all(
      sizes.map(async (size) => {
        const payload = randomBytes(size);
        return {
          expected: `${size} ${sha256(payload)}`,
          got: await digestThrough(proxy.port, payload),
        };
      }),
    );
    for (const r of results) expect(r.got).toBe(r.expected);
    expect(t.hub.mux.size).toBe(1);
    await waitFor(() => t.hub.streams.size === 0, 30_000, 'every stream finished at the hub');
    await waitFor(() => t.hub.mux.substreams === 0, 30_000, 'no substream left');
    expect(t.hub.mux.size).toBe(1);
    const metrics = await fetchMetrics(t);
    expect(metrics).toMatch(/^dstream_carrier_connections 1$/m);
    expect(metrics).toMatch(/^dstream_carrier_substreams 0$/m);
    // Each stream was asked for on the carrier connection itself: no POST.
    expect(metrics).toMatch(/^dstream_stream_requests_total\{via="carrier"\} 30$/m);
    expect(metrics).toMatch(/^dstream_stream_requests_total\{via="post"\} 0$/m);
  });

  it("listeners sharing the process's link ride one carrier connection; closing one leaves the other streaming", async () => {
    const digest = await server(startDigestServer());
    const { t, proxy: first } = await chain(digest, 'mux');
    const link = serviceLink({
      transport: 'mux',
      credential: t.service,
      target: hubTarget(t.service),
      logger: silentLogger,
    });
    cleanups.push(() => link.close());
    const options = { ...proxyTo(t), resume: true, link };
    const a = await startProxy(options, silentLogger);
    cleanups.push(() => a.close());
    const b = await startProxy(options, silentLogger);
    cleanups.push(() => b.close());
    const payload = randomBytes(256 * 1024);
    const expected = `${payload.length} ${sha256(payload)}`;
    expect(await digestThrough(a.port, payload)).toBe(expected);
    expect(await digestThrough(b.port, payload)).toBe(expected);
    expect(await digestThrough(first.port, payload)).toBe(expected);
    // `first` has a link of its own; a and b share one.
    expect(t.hub.mux.size).toBe(2);
    await a.close();
    expect(await digestThrough(b.port, payload)).toBe(expected);
    expect(t.hub.mux.size).toBe(2);
    await b.close();
    link.close();
    await waitFor(() => t.hub.mux.size === 1, 30_000, 'the shared carrier connection closed');
  });

  it('--transport ws opens no carrier connection and carries the same bytes', async () => {
    const digest = await server(startDigestServer());
    const { t, proxy } = await chain(digest, 'ws');
    const payload = randomBytes(3 * 1024 * 1024);
    expect(await digestThrough(proxy.port, payload)).toBe(`${payload.length} ${sha256(payload)}`);
    expect(t.hub.mux.size).toBe(0);
    const metrics = await fetchMetrics(t);
    expect(metrics).toMatch(/^dstream_stream_requests_total\{via="post"\} 1$/m);
    expect(metrics).toMatch(/^dstream_stream_requests_total\{via="carrier"\} 0$/m);
  });

  it.each(['ws', 'mux'] as const)(
    'a hub killed mid-transfer takes the carrier connections with it; the streams resume on new ones, byte-exact (agent on %s)',
    async (agentTransport) => {
      const echo = await server(startEchoServer());
      const hub = await restartableHub();
      const { proxy } = await chain(echo, 'mux', { t: hub.first, agentTransport });
      const payload = randomBytes(16 * 1024 * 1024);
      const socket = await dial(proxy.port);
      const chunks: Buffer[] = [];
      let got = 0;
      socket.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
      });
      const done = new Promise<void>((resolve) => socket.on('end', () => resolve()));
      socket.write(payload.subarray(0, 6 * 1024 * 1024));
      await waitFor(() => got >= 2 * 1024 * 1024, 60_000, 'bytes flowing before the kill');
      const current = await hub.restart();
      socket.end(payload.subarray(6 * 1024 * 1024));
      await done;
      expect(got).toBe(payload.length);
      expect(sha256(Buffer.concat(chunks))).toBe(sha256(payload));
      expect(current.hub.mux.size).toBe(agentTransport === 'mux' ? 2 : 1);
    },
  );

  it('without resumption, a lost carrier connection resets its streams, and the next connection gets a new one', async () => {
    const echo = await server(startEchoServer());
    const hub = await restartableHub();
    const { proxy } = await chain(echo, 'mux', { t: hub.first, resume: false });
    const socket = await dial(proxy.port);
    let got = 0;
    socket.on('data', (c: Buffer) => (got += c.length));
    socket.write(randomBytes(1024 * 1024));
    await waitFor(() => got >= 1024 * 1024, 60_000, 'the echo');
    const gone = closed(socket, 60_000);
    await hub.first.stop();
    const how = await gone;
    // Cut, not ended: a reset (or an error), never a clean end of the stream.
    expect(how.hadError || how.error !== undefined).toBe(true);
    const current = await hub.start();
    await waitFor(() => current.hub.devices.size === 1, 60_000, 'the agent back');
    const payload = randomBytes(512 * 1024);
    const again = await dial(proxy.port);
    const back = readAll(again, 60_000);
    again.end(payload);
    expect(sha256(await back)).toBe(sha256(payload));
    expect(current.hub.mux.size).toBe(1);
  });

  it('refuses a carrier connection without a service token, and a substream with a wrong stream token (401, IoT Hub shape)', async () => {
    const t = await startTestHub();
    cleanups.push(() => t.cleanup());
    const refused = openCarrier(t, 'SharedAccessSignature sr=x&sig=y&se=1&skn=z');
    const [, response] = (await once(refused, 'unexpected-response')) as [
      unknown,
      { statusCode: number },
    ];
    expect(response.statusCode).toBe(401);

    const ws = openCarrier(t, serviceToken(t.service));
    await once(ws, 'open');
    const session = new MuxSession(ws, { role: 'dialler' });
    const stream = session.open('x', {
      path: '/bridges/no-such-stream',
      authorization: 'Bearer not-a-token',
      protocols: ['dstream.stream.v1'],
    });
    const [status, body] = (await once(stream, 'refused')) as [number, string];
    expect(status).toBe(401);
    expect(parseIotHubError(body)).toMatchObject({
      name: 'IotHubUnauthorizedAccess',
      message: 'invalid or expired stream token',
    });
    await waitFor(() => session.size === 0, 10_000, 'the refused id freed');
    await waitFor(() => t.hub.mux.substreams === 0, 10_000, 'and at the hub');
  });

  it('48 connections echoing 2 MiB each at once, both ends on carrier connections: every byte back (no stall between the two directions)', async () => {
    const echo = await server(startEchoServer());
    const { t, proxy } = await chain(echo, 'mux', { agentTransport: 'mux' });
    const results = await Promise.all(
      Array.from({ length: 48 }, async () => {
        const payload = randomBytes(2 * 1024 * 1024);
        const socket = await dial(proxy.port);
        const back = readAll(socket, 120_000);
        socket.end(payload);
        return sha256(await back) === sha256(payload);
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    await waitFor(() => t.hub.mux.substreams === 0, 30_000, 'no substream left');
  }, 180_000);

  it('a hostile carrier connection (malformed frames, unknown ids, window overflow, a frame flood) is closed with 1002 each time; the hub keeps serving and holds nothing of it', async () => {
    const digest = await server(startDigestServer());
    const { t, proxy } = await chain(digest, 'mux');
    const payload = randomBytes(200_000);
    // The proxy's carrier connection is up (its first stream opened it).
    expect(await digestThrough(proxy.port, payload)).toBe(`${payload.length} ${sha256(payload)}`);
    const frame = (type: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer => {
      const out = Buffer.alloc(9 + payload.length);
      writeMuxHeader(out, 0, type as MuxFrameType, id, payload.length);
      payload.copy(out, 9);
      return out;
    };
    const u32 = (n: number): Buffer =>
      Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
    // An open the hub refuses (no such stream): the id stays until this side closes it.
    const open = frame(
      1,
      1,
      Buffer.from(JSON.stringify({ path: '/bridges/x', authorization: 'Bearer y', protocols: [] })),
    );
    const attacks: Array<[string, Buffer[], RegExp]> = [
      ['truncated header', [Buffer.from([4, 0, 0, 0])], /truncated/],
      ['unknown id', [frame(4, 9, Buffer.from('x'))], /unknown stream 9/],
      ['window overflow', [open, frame(6, 1, u32(0x7fffffff))], /window overflow/],
      [
        'frame flood',
        // 250,000 one-credit window frames, within a second: past the 200,000 ceiling.
        [
          open,
          ...Array.from({ length: 5 }, () =>
            Buffer.concat(Array.from({ length: 50_000 }, () => frame(6, 1, u32(1)))),
          ),
        ],
        /frame flood/,
      ],
    ];
    for (const [name, messages, reason] of attacks) {
      const ws = openCarrier(t, serviceToken(t.service));
      await once(ws, 'open');
      for (const m of messages) ws.send(m);
      const [code, why] = (await once(ws, 'close', { signal: AbortSignal.timeout(30_000) })) as [
        number,
        Buffer,
      ];
      expect({ name, code }).toEqual({ name, code: 1002 });
      expect(why.toString()).toMatch(reason);
      await waitFor(
        () => t.hub.mux.size === 1,
        10_000,
        `${name}: only the proxy's connection left`,
      );
      expect(t.hub.mux.substreams).toBe(0);
    }
    expect(await digestThrough(proxy.port, payload)).toBe(`${payload.length} ${sha256(payload)}`);
  });

  it('closes a carrier connection that breaks the framing (1002) and keeps serving the others', async () => {
    const digest = await server(startDigestServer());
    const { t, proxy } = await chain(digest, 'mux');
    const payload = randomBytes(100_000);
    expect(await digestThrough(proxy.port, payload)).toBe(`${payload.length} ${sha256(payload)}`);

    const ws = openCarrier(t, serviceToken(t.service));
    await once(ws, 'open');
    expect(t.hub.mux.size).toBe(2);
    // Data for a stream id nobody opened.
    const frame = Buffer.alloc(10);
    writeMuxHeader(frame, 0, MuxFrameType.data, 5, 1);
    ws.send(frame);
    const [code] = (await once(ws, 'close')) as [number];
    expect(code).toBe(1002);
    await waitFor(() => t.hub.mux.size === 1, 10_000, 'the bad connection gone');
    expect(await digestThrough(proxy.port, payload)).toBe(`${payload.length} ${sha256(payload)}`);
  });
});

describe('multiplexed carrier, device side', () => {
  it('both ends on carrier connections: 20 streams byte-exact, two carrier connections at the hub, nothing left after', async () => {
    const digest = await server(startDigestServer());
    const { t, proxy } = await chain(digest, 'mux', { agentTransport: 'mux' });
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const payload = randomBytes(i % 2 === 0 ? 1024 * 1024 + i : 10 * i + 1);
        return {
          expected: `${payload.length} ${sha256(payload)}`,
          got: await digestThrough(proxy.port, payload),
        };
      }),
    );
    for (const r of results) expect(r.got).toBe(r.expected);
    expect(t.hub.mux.size).toBe(2);
    await waitFor(() => t.hub.mux.substreams === 0, 30_000, 'no substream left');
    await waitFor(() => t.hub.streams.size === 0, 30_000, 'no stream left');
  });

  it("a device's carrier connection opens only that device's halves; disabling the device ends its streams and then its carrier connection", async () => {
    const echo = await server(startEchoServer());
    const { t, proxy } = await chain(echo, 'ws', { agentTransport: 'mux' });
    // A service half's token on the device's carrier connection: refused as a wrong token.
    const grant = await requestStream(t.service, hubTarget(t.service), {
      deviceId: 'dev',
      streamName: 't',
    });
    const device = parseConnectionString(
      (await t.registry.show('dev')).connectionString ?? '',
    ) as DeviceConnectionString;
    const { ws, session } = await deviceCarrier(t, device);
    const stolen = session.open(grant.url, {
      path: new URL(grant.url).pathname,
      authorization: `Bearer ${grant.token}`,
      protocols: ['dstream.stream.v1'],
    });
    const [status] = (await once(stolen, 'refused')) as [number];
    expect(status).toBe(401);

    // A live stream through the agent's carrier connection, then the device disabled.
    const socket = await dial(proxy.port);
    let got = 0;
    socket.on('data', (c: Buffer) => (got += c.length));
    socket.write(randomBytes(1000));
    await waitFor(() => got === 1000, 30_000, 'the echo');
    const ends: { reason: string; suspended: boolean }[] = [];
    t.hub.streams.on('stream-end', (e) => ends.push({ reason: e.reason, suspended: e.suspended }));
    const carrierGone = once(ws, 'close');
    await t.registry.setStatus('dev', 'disabled');
    await closed(socket, 30_000);
    await waitFor(() => ends.length >= 1, 30_000, 'the stream ended at the hub');
    expect(ends[0]).toEqual({ reason: 'device disabled or removed', suspended: false });
    // Both of the device's carrier connections close once they carry nothing.
    const [code] = (await carrierGone) as [number];
    expect(code).toBe(4003);
    await waitFor(() => t.hub.mux.size === 0, 30_000, "the agent's carrier connection closed");
  });
});

async function fetchMetrics(t: TestHub): Promise<string> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: t.hub.port, path: '/metrics', rejectUnauthorized: false },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('asking for a stream on a carrier connection (the initiation in one frame)', () => {
  /** A hub with device `dev` (agent on ws, stream `t` to `target`) and a raw service carrier. */
  async function rawCarrier(
    target: TestServer,
    /** Audit writes fail for this device (as a full disk would). */
    failAuditOf?: string,
  ): Promise<{ t: TestHub; session: MuxSession; agent: Agent; audit: AuditRecord[] }> {
    const audit: AuditRecord[] = [];
    const write = (r: AuditRecord): void => {
      if (r.device !== undefined && r.device === failAuditOf) throw new Error('disk full');
      audit.push(r);
    };
    const t = await startTestHub({
      audit: { write, reopen: () => undefined, close: async () => {} },
    });
    cleanups.push(() => t.cleanup());
    const agent = startAgent(
      {
        credential: await t.addDevice('dev'),
        allow: new Map([['t', { host: '127.0.0.1', port: target.port }]]),
        transport: 'ws',
      },
      silentLogger,
    );
    cleanups.push(() => agent.close());
    await waitEvent(agent, 'connected');
    const ws = openCarrier(t, serviceToken(t.service));
    await once(ws, 'open');
    return { t, session: new MuxSession(ws, { role: 'dialler' }), agent, audit };
  }

  it('opens the stream in one frame: bytes sent before the answer arrive, the accept names the streaming path, the audit has it', async () => {
    const echo = await server(startEchoServer());
    const { t, session, audit } = await rawCarrier(echo);
    const stream = session.open('wss://hub/twins/dev/streams/t', {
      path: '/twins/dev/streams/t?api-version=2020-09-30',
      authorization: serviceToken(t.service),
      protocols: ['dstream.stream.v1'],
      headers: { 'iothub-streaming-response-timeout-in-seconds': '20' },
    });
    // The opener may send within its first window before the device has even been asked.
    const payload = randomBytes(200 * 1024);
    stream.send(payload, { binary: true });
    const back: Buffer[] = [];
    let got = 0;
    stream.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      back.push(Buffer.from(data));
      got += data.length;
    });
    stream.resume();
    await waitEvent(stream, 'open', 30_000);
    expect(stream.protocol).toBe('dstream.stream.v1');
    expect(stream.url).toMatch(/^wss:\/\/hub\/bridges\/[^/]+$/);
    await waitFor(() => got >= payload.length, 30_000, 'the echo');
    expect(sha256(Buffer.concat(back))).toBe(sha256(payload));
    stream.close(1000);
    await waitEvent(stream, 'close', 30_000);
    await waitFor(() => t.hub.streams.size === 0, 30_000, 'the stream finished at the hub');
    await waitFor(
      () => audit.some((r) => r.outcome === 'completed' && r.device === 'dev'),
      30_000,
      'the audit line',
    );
  });

  it('a request that fails inside the hub is refused 500 in IoT Hub shape, and the hub keeps serving', async () => {
    const echo = await server(startEchoServer());
    const { t, session } = await rawCarrier(echo, 'broken');
    const failed = session.open('wss://hub/twins/broken/streams/t', {
      path: '/twins/broken/streams/t',
      authorization: serviceToken(t.service),
      protocols: ['dstream.stream.v1'],
    });
    const [status, body] = (await once(failed, 'refused', {
      signal: AbortSignal.timeout(30_000),
    })) as [number, string];
    expect(status).toBe(500);
    expect(parseIotHubError(body)).toMatchObject({
      name: 'ServerError',
      message: 'the hub could not take the request',
    });
    // The same carrier connection goes on asking.
    const fine = session.open('wss://hub/twins/dev/streams/t', {
      path: '/twins/dev/streams/t',
      authorization: serviceToken(t.service),
      protocols: ['dstream.stream.v1'],
    });
    await waitEvent(fine, 'open', 30_000);
    fine.close(1000);
    await waitFor(() => t.hub.mux.substreams === 0, 30_000, 'no substream left');
  });

  it('an opener that leaves while the device is asked drops the stream at the hub (as a POST whose caller hangs up)', async () => {
    const t = await startTestHub();
    cleanups.push(() => t.cleanup());
    // A device that takes the stream request and never answers it.
    const requests = await deviceControl(t, await t.addDevice('silent'));
    await waitFor(() => t.hub.devices.size === 1, 10_000, 'the device online');
    const ws = openCarrier(t, serviceToken(t.service));
    await once(ws, 'open');
    const session = new MuxSession(ws, { role: 'dialler' });
    const stream = session.open('wss://hub/twins/silent/streams/22', {
      path: '/twins/silent/streams/22',
      authorization: serviceToken(t.service),
      protocols: ['dstream.stream.v1'],
    });
    await waitFor(
      () => requests.some((r) => r.includes('"stream-request"')),
      10_000,
      'the request at the device',
    );
    expect(t.hub.streams.size).toBe(1);
    stream.terminate();
    await waitFor(() => t.hub.streams.size === 0, 10_000, 'the stream dropped at the hub');
    await waitFor(() => t.hub.mux.substreams === 0, 10_000, 'no substream left');
    // The opener forgets its stream when the hub's answering close arrives, which may still be
    // on its way when the hub has forgotten its side (CI caught this under load).
    await waitFor(() => session.size === 0, 10_000, 'the opener to forget the stream');
  });

  it("a POST whose caller hangs up while the device is asked drops the stream at the hub, as a substream's opener does", async () => {
    const t = await startTestHub();
    cleanups.push(() => t.cleanup());
    const requests = await deviceControl(t, await t.addDevice('silent'));
    await waitFor(() => t.hub.devices.size === 1, 10_000, 'the device online');
    const caller = new AbortController();
    const post = hubRequest(hubTarget(t.service), {
      method: 'POST',
      path: '/twins/silent/streams/22',
      headers: { authorization: serviceToken(t.service) },
      signal: caller.signal,
    }).then(
      () => 'answered',
      () => 'hung up',
    );
    await waitFor(
      () => requests.some((r) => r.includes('"stream-request"')),
      10_000,
      'the request at the device',
    );
    expect(t.hub.streams.size).toBe(1);
    caller.abort();
    expect(await post).toBe('hung up');
    await waitFor(() => t.hub.streams.size === 0, 10_000, 'the stream dropped at the hub');
    // The hub still answers the next caller (nothing was left waiting on the hung-up one).
    const next = await hubRequest(hubTarget(t.service), {
      method: 'POST',
      path: '/twins/nobody/streams/22',
      headers: { authorization: serviceToken(t.service) },
    });
    expect(next.status).toBe(404);
  });

  it("answers what the POST would: the device's rejection (200, isAccepted false), IoT Hub's errors, a bad token; a device's carrier cannot ask", async () => {
    const echo = await server(startEchoServer());
    const { t, session, audit } = await rawCarrier(echo);
    const ask = async (
      path: string,
      authorization = serviceToken(t.service),
      on = session,
    ): Promise<{ status: number; body: string }> => {
      const stream = on.open(`wss://hub${path}`, {
        path,
        authorization,
        protocols: ['dstream.stream.v1'],
      });
      const [status, body] = (await once(stream, 'refused', {
        signal: AbortSignal.timeout(30_000),
      })) as [number, string];
      return { status, body };
    };
    const rejected = await ask('/twins/dev/streams/22');
    expect(rejected.status).toBe(200);
    expect(JSON.parse(rejected.body)).toEqual({
      isAccepted: false,
      reason: "stream '22' is not allowed on this device (it allows: t)",
    });
    const unknown = await ask('/twins/nobody/streams/t');
    expect(unknown.status).toBe(404);
    expect(parseIotHubError(unknown.body).name).toBe('DeviceNotFound');
    const badName = await ask('/twins/dev/streams/%ZZ');
    expect(badName.status).toBe(400);
    const unauthorized = await ask('/twins/dev/streams/t', 'SharedAccessSignature sr=x&sig=y');
    expect(unauthorized.status).toBe(401);
    expect(parseIotHubError(unauthorized.body).name).toBe('IotHubUnauthorizedAccess');
    // Audited as the POST's answers are (a malformed path is refused before, unaudited, as the
    // POST's route does).
    const outcomes = (): string[] =>
      audit.map((r) => r.outcome).filter((o) => o !== 'device-added');
    await waitFor(() => outcomes().length >= 3, 10_000, 'the audit lines');
    expect(outcomes()).toEqual(['rejected', 'not-found', 'unauthorized']);
    // A device's carrier connection opens its device's halves, and asks for nothing.
    const { session: deviceSession } = await deviceCarrier(t, await t.addDevice('other'));
    const forbidden = await ask('/twins/dev/streams/t', serviceToken(t.service), deviceSession);
    expect(forbidden.status).toBe(403);
    await waitFor(() => t.hub.mux.substreams === 0, 10_000, 'no substream left');
  });
});

describe("stream offers: the hub opens the device's half on the agent's carrier connection", () => {
  /** A device online by its control connection and a carrier connection that takes offers, both raw. */
  async function rawDevice(
    t: TestHub,
    name: string,
  ): Promise<{ requests: string[]; session: MuxSession }> {
    const device = await t.addDevice(name);
    const requests = await deviceControl(t, device);
    const { session } = await deviceCarrier(t, device, true);
    await waitFor(() => t.hub.devices.takesOffers(name), 10_000, 'the carrier taking offers');
    return { requests, session };
  }

  it('answers on the carrier connection: streams byte-exact, the same rejections and reasons, nothing on the control connection', async () => {
    const digest = await server(startDigestServer());
    const { t, proxy } = await chain(digest, 'mux', { agentTransport: 'mux' });
    const results = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const payload = randomBytes(i % 3 === 0 ? 2 * 1024 * 1024 + i : 100 * i + 1);
        return {
          expected: `${payload.length} ${sha256(payload)}`,
          got: await digestThrough(proxy.port, payload),
        };
      }),
    );
    for (const r of results) expect(r.got).toBe(r.expected);
    // Asked by POST too: the offer does not depend on how the service asked.
    const notAllowed = await requestStream(t.service, hubTarget(t.service), {
      deviceId: 'dev',
      streamName: '22',
    }).catch((e: unknown) => e as Error);
    expect(notAllowed).toBeInstanceOf(Error);
    expect((notAllowed as Error).message).toBe(
      "device 'dev' rejected stream '22': stream '22' is not allowed on this device (it allows: t)",
    );
    await digest.close();
    const unreachable = await requestStream(t.service, hubTarget(t.service), {
      deviceId: 'dev',
      streamName: 't',
    }).catch((e: unknown) => e as Error);
    expect((unreachable as Error).message).toMatch(
      new RegExp(
        `^device 'dev' rejected stream 't': cannot connect to 127\\.0\\.0\\.1:${digest.port}: .*ECONNREFUSED`,
      ),
    );
    const metrics = await fetchMetrics(t);
    expect(metrics).toMatch(/^dstream_device_requests_total\{via="carrier"\} 14$/m);
    expect(metrics).toMatch(/^dstream_device_requests_total\{via="control"\} 0$/m);
    await waitFor(() => t.hub.mux.substreams === 0, 30_000, 'no substream left');
    await waitFor(() => t.hub.streams.size === 0, 30_000, 'no stream left');
  });

  it('an offer the device does not answer is withdrawn when the request times out (504), and nothing is left', async () => {
    const t = await startTestHub();
    cleanups.push(() => t.cleanup());
    const { requests, session } = await rawDevice(t, 'slow');
    const offers: { path: string; headers: unknown; protocols: readonly string[] }[] = [];
    const withdrawn: number[] = [];
    session.on('open-request', (stream, request) => {
      offers.push({ path: request.path, headers: request.headers, protocols: request.protocols });
      stream.once('close', (code) => withdrawn.push(code));
    });
    const error = await requestStream(t.service, hubTarget(t.service), {
      deviceId: 'slow',
      streamName: 'ssh',
      responseTimeoutSeconds: 1,
    }).catch((e: unknown) => e as Error);
    expect((error as Error).message).toBe("device 'slow' did not answer within 1 s");
    expect(offers).toHaveLength(1);
    expect(offers[0]?.path).toMatch(/^\/bridges\/[^/]+$/);
    expect(offers[0]?.headers).toEqual({ 'stream-name': 'ssh' });
    expect(offers[0]?.protocols).toContain('dstream.stream.v1');
    await waitFor(() => withdrawn.length === 1, 10_000, 'the offer withdrawn at the device');
    expect(requests).toEqual([]);
    await waitFor(() => t.hub.mux.substreams === 0, 10_000, 'no substream left');
    expect(session.size).toBe(0);
    expect(t.hub.streams.size).toBe(0);
  });

  it("with a resumable service half already there, the device's first ticket follows the offer: the device's resume and bytes reach the service behind its own ticket", async () => {
    const t = await startTestHub();
    cleanups.push(() => t.cleanup());
    const { session: device, requests } = await rawDevice(t, 'fast');
    const offered = new Promise<MuxStream>((resolve) =>
      device.on('open-request', (stream) => resolve(stream)),
    );
    const ws = openCarrier(t, serviceToken(t.service));
    await once(ws, 'open');
    const service = new MuxSession(ws, { role: 'dialler' }).open(
      'wss://hub/twins/fast/streams/ssh',
      {
        path: '/twins/fast/streams/ssh',
        authorization: serviceToken(t.service),
        protocols: ['dstream.stream.v2', 'dstream.stream.v1'],
      },
    );
    const atDevice: string[] = [];
    const half = await offered;
    half.on('message', (data: Buffer, isBinary: boolean) =>
      atDevice.push(
        isBinary
          ? `bytes ${data.toString()}`
          : (JSON.parse(data.toString()) as { type: string }).type,
      ),
    );
    half.resume();
    await waitFor(() => atDevice.length >= 1, 10_000, 'the ticket behind the offer');
    expect(atDevice).toEqual(['ticket']);
    // The device accepts and speaks at once: resume, then its banner.
    half.accept('dstream.stream.v2');
    half.send(JSON.stringify({ type: 'resume', received: 0 }));
    half.send(Buffer.from('SSH-2.0-banner'));
    const atService: string[] = [];
    service.on('message', (data: Buffer, isBinary: boolean) =>
      atService.push(
        isBinary
          ? `bytes ${data.toString()}`
          : (JSON.parse(data.toString()) as { type: string }).type,
      ),
    );
    await once(service, 'open');
    expect(service.protocol).toBe('dstream.stream.v2');
    service.resume();
    await waitFor(() => atService.length >= 3, 10_000, "the device's frames at the service");
    expect(atService).toEqual(['ticket', 'resume', 'bytes SSH-2.0-banner']);
    // The pairing hands the device no second ticket (it has this one): the service's own
    // resume is the next thing it hears (tickets go out before anything is relayed).
    service.send(JSON.stringify({ type: 'resume', received: 0 }));
    await waitFor(() => atDevice.length >= 2, 10_000, "the service's resume at the device");
    expect(atDevice).toEqual(['ticket', 'resume']);
    expect(requests).toEqual([]);
  });

  it('a carrier connection lost before the device answered: the request goes on the control connection, and the stream opens', async () => {
    const echo = await server(startEchoServer());
    const { t, proxy } = await chain(echo, 'mux', { agentTransport: 'mux' });
    // A second carrier connection of the same device, newer, so offers go to it: it drops
    // as soon as one comes.
    const device = parseConnectionString(
      (await t.registry.show('dev')).connectionString ?? '',
    ) as DeviceConnectionString;
    const { ws, session } = await deviceCarrier(t, device, true);
    // The agent's and this one (the proxy opens its own with its first stream).
    await waitFor(() => t.hub.mux.size === 2, 10_000, 'two carrier connections');
    const offered = new Promise<void>((resolve) =>
      session.on('open-request', () => {
        ws.terminate();
        resolve();
      }),
    );
    const socket = await dial(proxy.port);
    const payload = randomBytes(64 * 1024);
    const echoed = readAll(socket, 30_000);
    socket.end(payload);
    await offered;
    expect(sha256(await echoed)).toBe(sha256(payload));
    const metrics = await fetchMetrics(t);
    expect(metrics).toMatch(/^dstream_device_requests_total\{via="carrier"\} 1$/m);
    expect(metrics).toMatch(/^dstream_device_requests_total\{via="control"\} 1$/m);
    await waitFor(() => t.hub.streams.size === 0, 30_000, 'no stream left');
  });
});
