import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hubError } from '../helpers/hub-error.js';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { serviceToken } from '../../src/service/credentials.js';
import { openServiceStream } from '../../src/service/stream-client.js';
import { hubRequest, openWebSocket, type HubTarget } from '../../src/net/hub-client.js';
import {
  apiVersion,
  headers as h,
  resumableStreamProtocol,
  streamProtocol,
} from '../../src/protocol/constants.js';
import { formatStreamFrame, parseStreamFrame } from '../../src/protocol/stream-frames.js';
import {
  runCli,
  runCliWithInput,
  spawnCli,
  type CliProcess,
  withoutInstallLines,
} from '../helpers/cli.js';
import {
  startTestCluster,
  type ClusterNodeProcess,
  type TestCluster,
  type TestClusterOptions,
} from '../helpers/cluster.js';
import { collect, dial, randomBytes, readUntil, sha256, waitFor } from '../helpers/net.js';
import { MuxSession } from '../../src/mux/mux-session.js';
import { answerOf, type MuxStream } from '../../src/mux/mux-stream.js';
import { muxProtocol } from '../../src/protocol/mux-frames.js';
import { parseIotHubError } from '../../src/protocol/iothub-error.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { makeTempDir } from '../helpers/hub.js';
import { startRedis } from '../helpers/redis.js';
import { startCutter, type Cutter } from '../helpers/cutter.js';

/**
 * Cluster mode end to end: redis-server, three `dstream hub --redis` processes and haproxy
 * in front of them, all real processes on loopback; agents connect through the balancer.
 */
describe('cluster: three hub nodes sharing Redis behind haproxy', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setUp(
    options: TestClusterOptions = {},
  ): Promise<{ cluster: TestCluster; echo: TestServer }> {
    const cluster = await startTestCluster(options);
    cleanups.push(() => cluster.stop());
    const echo = await startEchoServer();
    cleanups.push(() => echo.close());
    return { cluster, echo };
  }

  /** Register a device and run its agent, through the balancer unless `hubPort` says where. */
  async function startDevice(
    cluster: TestCluster,
    echo: TestServer,
    deviceId: string,
    hubPort?: number,
  ): Promise<CliProcess> {
    return runAgent(cluster, echo, await addDevice(cluster, deviceId), hubPort);
  }

  async function addDevice(cluster: TestCluster, deviceId: string): Promise<string> {
    const added = await runCli(['device', 'add', deviceId], {
      DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString,
    });
    expect(withoutInstallLines(added.stderr)).toBe('');
    expect(added.code).toBe(0);
    const deviceString = added.stdout.trim();
    expect(deviceString).toContain(`HostName=127.0.0.1:${cluster.lbPort};`);
    return deviceString;
  }

  /** The device's agent, connected through the balancer unless `hubPort` names a node. */
  async function runAgent(
    cluster: TestCluster,
    echo: TestServer,
    deviceString: string,
    hubPort?: number,
  ): Promise<CliProcess> {
    const agent = spawnCli(
      ['agent', '--target', `echo=127.0.0.1:${echo.port}`, '--heartbeat-interval', '1'],
      {
        DSTREAM_DEVICE_CONNECTION_STRING:
          hubPort === undefined
            ? deviceString
            : deviceString.replace(`:${cluster.lbPort};`, `:${hubPort};`),
      },
    );
    cleanups.push(async () => void (await agent.stop('SIGKILL')));
    await agent.waitForLine(/connected to the hub/);
    return agent;
  }

  /** The node holding a device's control connection: exactly one node reports it. */
  const ownerOf = (cluster: TestCluster, live = cluster.nodes): Promise<ClusterNodeProcess> =>
    cluster.ownerOf(live);

  function others(cluster: TestCluster, node: ClusterNodeProcess): ClusterNodeProcess[] {
    return cluster.nodes.filter((n) => n !== node);
  }

  /** Open a stream through `via` and check that `bytes` come back unchanged. */
  async function echoThrough(
    cluster: TestCluster,
    via: HubTarget,
    deviceId: string,
    bytes: Buffer,
  ): Promise<void> {
    const ws = await openServiceStream(cluster.service, via, { deviceId, streamName: 'echo' });
    try {
      expect(sha256(await exchange(ws, bytes))).toBe(sha256(bytes));
    } finally {
      ws.close();
    }
  }

  /** Send bytes on a stream socket and collect as many back. */
  function exchange(ws: WebSocket, bytes: Buffer, timeoutMs = 15_000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let n = 0;
      const timer = setTimeout(
        () => reject(new Error(`echo: got ${n} of ${bytes.length} bytes`)),
        timeoutMs,
      );
      const onMessage = (data: Buffer): void => {
        chunks.push(data);
        n += data.length;
        if (n >= bytes.length) {
          clearTimeout(timer);
          ws.off('message', onMessage);
          resolve(Buffer.concat(chunks));
        }
      };
      ws.on('message', onMessage);
      // Stream sockets come back paused, so that no byte arrives before a listener.
      ws.resume();
      for (let i = 0; i < bytes.length; i += 64 * 1024) ws.send(bytes.subarray(i, i + 64 * 1024));
    });
  }

  /** Write `bytes` to a local TCP connection through the tunnel and collect as many back. */
  function echoOver(socket: Socket, bytes: Buffer, explain: () => string): Promise<Buffer> {
    const back = collect(socket, bytes.length, undefined, explain, 30_000);
    socket.write(bytes);
    return back;
  }

  /** POST a stream request to one node and return its status, body, headers and time taken. */
  async function requestStream(
    cluster: TestCluster,
    via: HubTarget,
    deviceId: string,
  ): Promise<{ status: number; body: string; url?: string; token?: string; ms: number }> {
    const started = Date.now();
    const res = await hubRequest(via, {
      method: 'POST',
      path: `/twins/${deviceId}/streams/echo?api-version=${apiVersion}`,
      headers: { authorization: serviceToken(cluster.service) },
    });
    const url = res.headers[h.url];
    const token = res.headers[h.authToken];
    return {
      status: res.status,
      body: res.body,
      ...(typeof url === 'string' && { url }),
      ...(typeof token === 'string' && { token }),
      ms: Date.now() - started,
    };
  }

  /** A service's carrier connection to one node itself (not through the balancer). */
  async function carrierTo(
    cluster: TestCluster,
    node: ClusterNodeProcess,
  ): Promise<{ ws: WebSocket; session: MuxSession }> {
    const ws = await openWebSocket(`wss://127.0.0.1:${node.port}/mux`, node.target, {
      headers: { authorization: serviceToken(cluster.service) },
      protocols: [muxProtocol],
    });
    ws.resume();
    const session = new MuxSession(ws, { role: 'dialler' });
    cleanups.push(() => Promise.resolve(session.close(1000, 'done')));
    return { ws, session };
  }

  /** One sample from a node's /metrics, e.g. metric(n, 'dstream_cluster_redis_up'). */
  async function metric(node: ClusterNodeProcess, sample: string): Promise<number> {
    const body = (await hubRequest(node.target, { method: 'GET', path: '/metrics' })).body;
    const line = body.split('\n').find((l) => l.startsWith(`${sample} `));
    if (!line) throw new Error(`${node.name} /metrics has no ${sample}`);
    return Number(line.slice(sample.length + 1));
  }

  /**
   * A device whose agent reaches the cluster through a relay the test steers, as through a
   * balancer that restarts (its control connection moves; its carrier connection, to the
   * node's own address, does not), with its control connection at the first node and one
   * stream open to it through the third, echoing.
   */
  async function roamingDevice(deviceId: string): Promise<{
    cluster: TestCluster;
    nodes: [ClusterNodeProcess, ClusterNodeProcess, ClusterNodeProcess];
    cutter: Cutter;
    agent: CliProcess;
    open: WebSocket;
  }> {
    const { cluster, echo } = await setUp();
    const [a, b, c] = cluster.nodes as [ClusterNodeProcess, ClusterNodeProcess, ClusterNodeProcess];
    const cutter = await startCutter();
    cleanups.push(() => cutter.close());
    cutter.setTarget(a.port);
    const agent = await runAgent(cluster, echo, await addDevice(cluster, deviceId), cutter.port);
    expect(await ownerOf(cluster)).toBe(a);
    expect(await readUntil(() => metric(a, 'dstream_carrier_connections'), 1, 30_000)).toBe(1);
    const open = await openServiceStream(cluster.service, c.target, {
      deviceId,
      streamName: 'echo',
    });
    const first = randomBytes(100_000);
    expect(sha256(await exchange(open, first))).toBe(sha256(first));
    expect(await metric(a, 'dstream_device_requests_total{via="carrier"}')).toBe(1);
    return { cluster, nodes: [a, b, c], cutter, agent, open };
  }

  /**
   * Steer a roaming device's control connection to `to` (its flow through the relay cut) and
   * wait until that node holds the device and a carrier connection of it.
   */
  async function moveControl(
    cluster: TestCluster,
    cutter: Cutter,
    to: ClusterNodeProcess,
  ): Promise<void> {
    cutter.setTarget(to.port);
    expect(cutter.cut()).toBeGreaterThan(0);
    expect(await ownerOf(cluster)).toBe(to);
    expect(await readUntil(() => metric(to, 'dstream_carrier_connections'), 1, 30_000)).toBe(1);
  }

  async function readyz(node: ClusterNodeProcess): Promise<string> {
    return (await hubRequest(node.target, { method: 'GET', path: '/readyz' })).body;
  }

  it('1. device on node A, stream requested through node B: bytes echo both ways', async () => {
    const { cluster, echo } = await setUp();
    await startDevice(cluster, echo, 'pi-01');
    const a = await ownerOf(cluster);
    for (const b of others(cluster, a)) {
      const payload = randomBytes(1024 * 1024 + 17);
      await echoThrough(cluster, b.target, 'pi-01', payload);
    }
    // The streaming URL names the owner, where both sides meet.
    const [b] = others(cluster, a) as [ClusterNodeProcess];
    expect(await metric(b, 'dstream_cluster_routed_requests_total{result="answered"}')).toBe(1);
    expect(await metric(a, 'dstream_cluster_routed_requests_total{result="answered"}')).toBe(0);
    expect(await metric(b, 'dstream_cluster_redis_up')).toBe(1);
    const res = await requestStream(cluster, b.target, 'pi-01');
    expect(res.status).toBe(200);
    expect(res.url).toMatch(new RegExp(`^wss://127\\.0\\.0\\.1:${a.port}/bridges/`));
    // And through the balancer, as users do: the CLI, stdin to stdout.
    const payload = randomBytes(200_000).toString('base64');
    const out = await runCliWithInput(['connect', 'pi-01', '--stream', 'echo'], payload, {
      DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString,
    });
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(sha256(Buffer.from(out.stdout))).toBe(sha256(Buffer.from(payload)));
    // Every node reports the device connected, not only the one holding it.
    for (const n of cluster.nodes) {
      const one = await hubRequest(n.target, {
        method: 'GET',
        path: '/devices/pi-01',
        headers: { authorization: serviceToken(cluster.service) },
      });
      expect(JSON.parse(one.body)).toMatchObject({ connectionState: 'Connected' });
      const all = await hubRequest(n.target, {
        method: 'GET',
        path: '/devices',
        headers: { authorization: serviceToken(cluster.service) },
      });
      expect(JSON.parse(all.body)).toMatchObject([
        { deviceId: 'pi-01', connectionState: 'Connected' },
      ]);
    }
    // An unknown device and an offline one answer as on a single hub.
    const unknown = await requestStream(cluster, b.target, 'nobody');
    expect([unknown.status, hubError(unknown)]).toEqual([
      404,
      { errorCode: 'DeviceNotFound', message: "device 'nobody' is not registered on this hub" },
    ]);
  });

  it('2. a stream socket sent to node C on purpose is forwarded to the owner and works', async () => {
    const { cluster, echo } = await setUp();
    await startDevice(cluster, echo, 'pi-02');
    const a = await ownerOf(cluster);
    const [b, c] = others(cluster, a) as [ClusterNodeProcess, ClusterNodeProcess];
    const res = await requestStream(cluster, b.target, 'pi-02');
    expect(res.status).toBe(200);
    const wrong = (res.url as string).replace(`:${a.port}/`, `:${c.port}/`);
    const ws = await openWebSocket(wrong, c.target, {
      headers: { authorization: `Bearer ${res.token as string}` },
      protocols: [streamProtocol],
    });
    const payload = randomBytes(512 * 1024 + 3);
    expect(sha256(await exchange(ws, payload))).toBe(sha256(payload));
    // The bytes were relayed by A (its stream), C only carried them.
    const active = async (n: ClusterNodeProcess): Promise<number> => {
      const body = (await hubRequest(n.target, { method: 'GET', path: '/metrics' })).body;
      return Number(/^dstream_active_streams (\d+)$/m.exec(body)?.[1]);
    };
    expect(await active(a)).toBe(1);
    expect(await active(c)).toBe(0);
    ws.close();
    // A stream id naming no live node is refused, not forwarded anywhere.
    const bogus = wrong.replace(/bridges\/[^.]+\./, 'bridges/nonode.');
    await expect(
      openWebSocket(bogus, c.target, {
        headers: { authorization: `Bearer ${res.token as string}` },
        protocols: [streamProtocol],
      }),
    ).rejects.toMatchObject({ status: 404 });
  });

  it('3. kill -9 node A: requests answer offline within a second; the device moves; new streams work', async () => {
    const { cluster, echo } = await setUp();
    await startDevice(cluster, echo, 'moving');
    const a = await ownerOf(cluster);
    // A second device talks to A directly, not through the balancer: once A is gone it has
    // nowhere to go, so requests for it must be answered "offline", and quickly.
    await startDevice(cluster, echo, 'stranded', a.port);
    const [b] = others(cluster, a) as [ClusterNodeProcess];
    expect((await requestStream(cluster, b.target, 'stranded')).status).toBe(200);

    a.proc.child.kill('SIGKILL');
    await a.proc.stop();
    const res = await requestStream(cluster, b.target, 'stranded');
    expect(res.status).toBe(404);
    expect(hubError(res)).toMatchObject({ errorCode: 'DeviceNotOnline' });
    expect(res.ms).toBeLessThan(1000);
    expect(
      await metric(b, 'dstream_cluster_routed_requests_total{result="node_unreachable"}'),
    ).toBeGreaterThanOrEqual(1);

    const live = others(cluster, a);
    const newOwner = await ownerOf(cluster, live);
    expect(newOwner).not.toBe(a);
    for (const via of live) await echoThrough(cluster, via.target, 'moving', randomBytes(300_000));
    // Still offline, still fast, once A's lease has expired too.
    const later = await requestStream(cluster, b.target, 'stranded');
    expect([later.status, later.ms < 1000]).toEqual([404, true]);
  });

  it('4. SIGSTOP then SIGCONT node A: no duplicate ownership survives', async () => {
    const { cluster, echo } = await setUp();
    await startDevice(cluster, echo, 'paused');
    const a = await ownerOf(cluster);
    a.proc.child.kill('SIGSTOP');
    cleanups.push(() => Promise.resolve(void a.proc.child.kill('SIGCONT')));
    // The agent finds A silent (two missed pings) and comes back through the balancer,
    // which by then sends new connections elsewhere (A fails its /readyz checks).
    const moved = await ownerOf(cluster, others(cluster, a));
    a.proc.child.kill('SIGCONT');
    // A wakes up still holding its old connection and registration; it must let go.
    await expect.poll(() => cluster.connectedDevices(a), { timeout: 10_000 }).toBe(0);
    expect(await ownerOf(cluster)).toBe(moved);
    expect(await readyz(a)).toBe('{"status":"ready"}');
    // Through A, the request is routed to the device's real node.
    await echoThrough(cluster, a.target, 'paused', randomBytes(100_000));
    const res = await requestStream(cluster, a.target, 'paused');
    expect(res.url).toMatch(new RegExp(`^wss://127\\.0\\.0\\.1:${moved.port}/`));
    expect(a.proc.output()).toMatch(/this node was away longer than its lease|stale connection/);
  });

  it('5. restart Redis: nodes keep local streams, report not ready, and recover without restarting', async () => {
    const { cluster, echo } = await setUp();
    await startDevice(cluster, echo, 'steady');
    const owner = await ownerOf(cluster);
    const [other] = others(cluster, owner) as [ClusterNodeProcess];
    const ws = await openServiceStream(cluster.service, other.target, {
      deviceId: 'steady',
      streamName: 'echo',
    });
    cleanups.push(() => Promise.resolve(ws.close()));
    const before = randomBytes(100_000);
    expect(sha256(await exchange(ws, before))).toBe(sha256(before));

    const latecomerString = await addDevice(cluster, 'latecomer');

    await cluster.redis.kill();
    for (const n of cluster.nodes)
      await expect
        .poll(() => readyz(n), { timeout: 10_000 })
        .toBe('{"status":"redis-unreachable"}');
    expect(await metric(owner, 'dstream_cluster_redis_up')).toBe(0);
    // The stream in progress does not need Redis.
    const during = randomBytes(100_000);
    expect(sha256(await exchange(ws, during))).toBe(sha256(during));
    // The owner still serves its own device; another node cannot reach it and says why.
    await echoThrough(cluster, owner.target, 'steady', randomBytes(50_000));
    const refused = await requestStream(cluster, other.target, 'steady');
    expect(refused.status).toBe(503);
    expect(hubError(refused)).toMatchObject({ errorCode: 'ServiceUnavailable' });
    // Registry writes cannot be made: a clear 503, not a 500. (Asked of a node directly: the
    // balancer has taken every node out of rotation, as their /readyz told it to.)
    const write = await runCli(['device', 'add', 'during-outage'], {
      DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString.replace(
        `:${cluster.lbPort};`,
        `:${other.port};`,
      ),
    });
    expect(write.code).toBe(1);
    expect(write.stderr).toMatch(
      /^error: .*cannot add a device: the cluster store \(redis\) is unreachable/,
    );
    // A device that connects meanwhile is served, and registered once Redis is back.
    await runAgent(cluster, echo, latecomerString, other.port);
    await echoThrough(cluster, other.target, 'latecomer', randomBytes(50_000));

    await cluster.redis.restart();
    for (const n of cluster.nodes)
      await expect.poll(() => readyz(n), { timeout: 10_000 }).toBe('{"status":"ready"}');
    for (const n of cluster.nodes)
      await echoThrough(cluster, n.target, 'steady', randomBytes(50_000));
    const after = randomBytes(100_000);
    expect(sha256(await exchange(ws, after))).toBe(sha256(after));
    const added = await runCli(['device', 'add', 'after-outage'], {
      DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString,
    });
    expect(added.code).toBe(0);
    await echoThrough(cluster, owner.target, 'latecomer', randomBytes(50_000));
    expect(await cluster.connectedDevices(owner)).toBe(1);
    expect(await cluster.connectedDevices(other)).toBe(1);
  });

  it('a device disabled or re-keyed through one node is cut off on the node that holds it', async () => {
    const { cluster, echo } = await setUp();
    const agent = await startDevice(cluster, echo, 'revoked');
    const a = await ownerOf(cluster);
    const [b, c] = others(cluster, a) as [ClusterNodeProcess, ClusterNodeProcess];
    const viaB = cluster.serviceString.replace(`:${cluster.lbPort};`, `:${b.port};`);
    const disabled = await runCli(['device', 'disable', 'revoked'], {
      DSTREAM_SERVICE_CONNECTION_STRING: viaB,
    });
    expect([disabled.code, disabled.stderr]).toEqual([0, '']);
    await expect.poll(() => cluster.connectedDevices(a), { timeout: 5000 }).toBe(0);
    await agent.waitForLine(/lost the hub connection/);
    for (const n of cluster.nodes) {
      const res = await requestStream(cluster, n.target, 'revoked');
      expect([res.status, hubError(res)]).toEqual([
        403,
        { errorCode: 'DeviceDisabled', message: "device 'revoked' is disabled" },
      ]);
    }
    // Enabled again through C, the agent gets back in (its retry runs at the backoff cap,
    // so this waits on the agent's next attempt rather than on the cluster).
    const enabled = await runCli(['device', 'enable', 'revoked'], {
      DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString.replace(
        `:${cluster.lbPort};`,
        `:${c.port};`,
      ),
    });
    expect(enabled.code).toBe(0);
    for (const n of cluster.nodes)
      expect(hubError(await requestStream(cluster, n.target, 'revoked'))).toMatchObject({
        errorCode: 'DeviceNotOnline',
      });

    // (Its agent would come back at its next retry, up to 30 s away: stop it, so that the
    // device below is the only one connected.)
    await agent.stop('SIGKILL');

    // A new key, made through a node other than the device's: the old connection is closed
    // there, and the agent's old key no longer gets in anywhere.
    const rekeyed = await startDevice(cluster, echo, 'rekeyed');
    const holder = await ownerOf(cluster);
    const [elsewhere] = others(cluster, holder) as [ClusterNodeProcess];
    const rotated = await runCli(['device', 'rotate-key', 'rekeyed'], {
      DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString.replace(
        `:${cluster.lbPort};`,
        `:${elsewhere.port};`,
      ),
    });
    expect(rotated.code).toBe(0);
    await rekeyed.waitForLine(/lost the hub connection/);
    await rekeyed.waitForLine(/the hub refused this device/);
    await expect.poll(() => cluster.connectedDevices(holder), { timeout: 5000 }).toBe(0);
  });

  it('a registration that timed out while Redis stayed up is made good', async () => {
    const { cluster, echo } = await setUp();
    const redisCli = (...args: string[]): string =>
      execFileSync('redis-cli', ['-s', cluster.redis.socket, ...args], { encoding: 'utf8' }).trim();
    const [a] = cluster.nodes as [ClusterNodeProcess];
    // Writes wait in Redis until the node has said its claim timed out (2 s), although Redis
    // never went away; then they go through. Events, not a pause length that load can beat.
    const deviceString = await addDevice(cluster, 'slow-claim');
    redisCli('CLIENT', 'PAUSE', '120000', 'WRITE');
    let agent: CliProcess;
    try {
      agent = await runAgent(cluster, echo, deviceString, a.port);
      await a.proc.waitForLine(
        /a cluster presence update failed; retried at the next lease refresh .*device=slow-claim/,
        60_000,
      );
    } finally {
      redisCli('CLIENT', 'UNPAUSE');
    }
    await a.proc.waitForLine(/checked local devices against the cluster/, 60_000);
    await expect
      .poll(() => redisCli('GET', 'dstream:owner:slow-claim'), { timeout: 30_000 })
      .toMatch(/^.+:\d+$/);
    // The node knows its registration again, so it removes it when the device leaves.
    await agent.stop('SIGKILL');
    await expect
      .poll(() => redisCli('GET', 'dstream:owner:slow-claim'), { timeout: 30_000 })
      .toBe('');
  }, 240_000);

  it("carrier connections: a stream asked for on another node opens in one hop, offered on the agent's carrier connection at its node; no POST anywhere", async () => {
    const { cluster, echo } = await setUp();
    await startDevice(cluster, echo, 'pi-mux');
    const a = await ownerOf(cluster);
    // The hub named its node in the control connection's answer: the agent's carrier
    // connection is there (through the balancer it could have landed anywhere).
    expect(await readUntil(() => metric(a, 'dstream_carrier_connections'), 1, 30_000)).toBe(1);
    const [b, c] = others(cluster, a) as [ClusterNodeProcess, ClusterNodeProcess];
    expect(await metric(b, 'dstream_carrier_connections')).toBe(0);
    expect(await metric(c, 'dstream_carrier_connections')).toBe(0);
    // The service side reaches node C only: each `connect` asks on its carrier connection there.
    const viaC = cluster.serviceString.replace(`:${cluster.lbPort};`, `:${c.port};`);
    for (let i = 0; i < 3; i++) {
      const payload = randomBytes(300_000 + i).toString('base64');
      const out = await runCliWithInput(['connect', 'pi-mux', '--stream', 'echo'], payload, {
        DSTREAM_SERVICE_CONNECTION_STRING: viaC,
      });
      expect([out.code, out.stderr]).toEqual([0, '']);
      expect(sha256(Buffer.from(out.stdout))).toBe(sha256(Buffer.from(payload)));
    }
    expect(await metric(c, 'dstream_stream_requests_total{via="carrier"}')).toBe(3);
    for (const n of cluster.nodes)
      expect(await metric(n, 'dstream_stream_requests_total{via="post"}')).toBe(0);
    // Routed to A over Redis, offered there on the agent's carrier connection.
    expect(await metric(c, 'dstream_cluster_routed_requests_total{result="answered"}')).toBe(3);
    expect(await metric(a, 'dstream_device_requests_total{via="carrier"}')).toBe(3);
    expect(await metric(a, 'dstream_device_requests_total{via="control"}')).toBe(0);
    // A relayed the bytes (its streams); C passed its substreams on without counting them.
    const relayed = (n: ClusterNodeProcess): Promise<number> =>
      metric(n, 'dstream_relayed_bytes_total{direction="to_device"}');
    expect(await relayed(a)).toBeGreaterThanOrEqual(3 * 400_000);
    expect(await relayed(c)).toBe(0);
    for (const n of cluster.nodes)
      expect(await readUntil(() => metric(n, 'dstream_carrier_substreams'), 0, 30_000)).toBe(0);
  });

  it("the agent's control connection moves to another node while the first stays up: the carrier connection at the first finishes its stream and closes; new streams are offered at the second", async () => {
    const { cluster, nodes, cutter, agent, open } = await roamingDevice('roams');
    const [a, b, c] = nodes;

    await moveControl(cluster, cutter, b);
    // The stream on A's carrier connection carries on there...
    expect(await metric(a, 'dstream_carrier_connections')).toBe(1);
    const during = randomBytes(200_000);
    expect(sha256(await exchange(open, during))).toBe(sha256(during));
    // ...and once it ends, nothing holds that connection open.
    open.close();
    expect(await readUntil(() => metric(a, 'dstream_carrier_connections'), 0, 30_000)).toBe(0);
    expect(agent.output()).not.toMatch(/carrier connection silent/);
    // New streams are offered on the carrier connection at B.
    const after = randomBytes(300_000);
    await echoThrough(cluster, c.target, 'roams', after);
    expect(await metric(b, 'dstream_device_requests_total{via="carrier"}')).toBe(1);
    expect(await metric(a, 'dstream_device_requests_total{via="carrier"}')).toBe(1);
    expect(await metric(b, 'dstream_device_requests_total{via="control"}')).toBe(0);
  });

  it('the control connection comes back to the first node while its carrier connection still finishes a stream: that connection takes new streams again, no second one is opened', async () => {
    const { cluster, nodes, cutter, agent, open } = await roamingDevice('returns');
    const [a, b, c] = nodes;

    // Away to B: A's connection finishes the open stream and would then close...
    await moveControl(cluster, cutter, b);
    // ...but control comes back to A before that stream ends.
    await moveControl(cluster, cutter, a);
    // B's connection, idle, retires at once.
    expect(await readUntil(() => metric(b, 'dstream_carrier_connections'), 0, 30_000)).toBe(0);
    // New streams are offered at A, on the connection that was finishing (before, it refused
    // them with 403 until a second connection arrived).
    const next = randomBytes(300_000);
    await echoThrough(cluster, c.target, 'returns', next);
    expect(await metric(a, 'dstream_device_requests_total{via="carrier"}')).toBe(2);
    expect(await metric(a, 'dstream_carrier_connections')).toBe(1);
    // The first stream still carries, and once it ends the connection stays.
    const during = randomBytes(200_000);
    expect(sha256(await exchange(open, during))).toBe(sha256(during));
    open.close();
    expect(await readUntil(() => metric(a, 'dstream_active_streams'), 0, 30_000)).toBe(0);
    const last = randomBytes(50_000);
    await echoThrough(cluster, c.target, 'returns', last);
    expect(await metric(a, 'dstream_device_requests_total{via="carrier"}')).toBe(3);
    expect(await metric(a, 'dstream_carrier_connections')).toBe(1);
    expect(await metric(a, 'dstream_device_requests_total{via="control"}')).toBe(0);
    expect(agent.output()).not.toMatch(/carrier connection silent/);
  });

  it('a resumable stream on the carrier connection at a node offers left is cut: the agent resumes it at that node, byte-exact, on a connection that retires once the stream ends; offers stay where control is', async () => {
    // Node A's own address (its --node-url) goes through a relay the test can cut, so that the
    // agent's carrier connection to A can be lost while A stays up and holds the stream.
    const toA = await startCutter();
    cleanups.push(() => toA.close());
    const { cluster, echo } = await setUp({
      flagsOf: (name) => (name === 'n1' ? ['--node-url', `https://127.0.0.1:${toA.port}`] : []),
    });
    const [a, b, c] = cluster.nodes as [ClusterNodeProcess, ClusterNodeProcess, ClusterNodeProcess];
    toA.setTarget(a.port);
    const control = await startCutter();
    cleanups.push(() => control.close());
    control.setTarget(a.port);
    const agent = await runAgent(cluster, echo, await addDevice(cluster, 'comeback'), control.port);
    expect(await ownerOf(cluster)).toBe(a);
    expect(await readUntil(() => metric(a, 'dstream_carrier_connections'), 1, 30_000)).toBe(1);
    // A laptop's proxy (resumable streams, as by default), at A too: its carrier connection
    // is then the only other one there.
    const proxy = spawnCli(
      ['proxy', '--device', 'comeback', '--local-port', '0', '--stream', 'echo'],
      {
        DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString.replace(
          `:${cluster.lbPort};`,
          `:${toA.port};`,
        ),
      },
    );
    cleanups.push(async () => void (await proxy.stop('SIGKILL')));
    const listening = await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/);
    const client = await dial(Number(listening[1]));
    cleanups.push(() => Promise.resolve(void client.destroy()));
    const logs = (): string =>
      `agent:\n${agent.output()}\nproxy:\n${proxy.output()}\nA:\n${a.proc.output()}`;
    const first = randomBytes(300_000);
    expect(sha256(await echoOver(client, first, logs))).toBe(sha256(first));
    // The stream is A's, its device half on the agent's carrier connection there.
    expect(await metric(a, 'dstream_active_streams')).toBe(1);
    expect(await metric(a, 'dstream_device_requests_total{via="carrier"}')).toBe(1);
    expect(await metric(a, 'dstream_carrier_connections')).toBe(2);

    // Control moves to B: offers come from B now; A's connection keeps carrying the stream.
    await moveControl(cluster, control, b);
    // The agent's flow to A is lost (its NAT dropped it; the proxy's stays up).
    expect(toA.cutProcess(agent.child.pid ?? 0)).toBeGreaterThan(0);
    // The stream resumes where it lives, at A, on a new connection the agent opens there.
    const during = randomBytes(500_000);
    expect(sha256(await echoOver(client, during, logs))).toBe(sha256(during));
    await agent.waitForLine(/stream resumed/);
    expect(await metric(a, 'dstream_streams_resumed_total')).toBe(1);
    expect(await metric(b, 'dstream_active_streams')).toBe(0);
    // Once it ends, that connection closes: A keeps only the proxy's (the lost one's hub side
    // goes at A's heartbeat: the relay reset only the agent's side, as a NAT forgets a flow),
    // and the agent has no flow to A left (no spare either).
    client.end();
    expect(await readUntil(() => metric(a, 'dstream_active_streams'), 0, 30_000)).toBe(0);
    expect(await readUntil(() => metric(a, 'dstream_carrier_connections'), 1, 30_000)).toBe(1);
    expect(
      await readUntil(() => Promise.resolve(toA.flowsOf(agent.child.pid ?? 0)), 0, 30_000),
    ).toBe(0);
    expect(await ownerOf(cluster)).toBe(b);
    // New streams are offered at B, on the agent's carrier connection there.
    const next = randomBytes(100_000);
    await echoThrough(cluster, c.target, 'comeback', next);
    expect(await metric(b, 'dstream_device_requests_total{via="carrier"}')).toBe(1);
    expect(await metric(a, 'dstream_device_requests_total{via="carrier"}')).toBe(1);
    expect(await metric(b, 'dstream_carrier_connections')).toBe(1);
    expect(agent.output()).not.toMatch(/carrier connection silent|could not be resumed/);
  });

  it("a substream for another node's stream is passed there in one hop; that node's refusals come back as they were", async () => {
    const { cluster, echo } = await setUp();
    await startDevice(cluster, echo, 'pi-hop');
    const a = await ownerOf(cluster);
    const [b, c] = others(cluster, a) as [ClusterNodeProcess, ClusterNodeProcess];
    const { session } = await carrierTo(cluster, c);
    const open = async (token: string, streamUrl: string): Promise<MuxStream> => {
      const stream = session.open(streamUrl, {
        path: new URL(streamUrl).pathname,
        authorization: `Bearer ${token}`,
        protocols: [streamProtocol],
      });
      const refused = await answerOf(stream);
      if (refused) throw Object.assign(new Error(refused.body), refused);
      return stream;
    };
    // Asked for through B: the stream is A's, its substream opened on C's carrier connection.
    const res = await requestStream(cluster, b.target, 'pi-hop');
    expect(res.status).toBe(200);
    const stream = await open(res.token as string, res.url as string);
    const payload = randomBytes(2 * 1024 * 1024 + 5);
    const back: Buffer[] = [];
    let got = 0;
    stream.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      back.push(Buffer.from(data));
      got += data.length;
    });
    stream.resume();
    for (let i = 0; i < payload.length; i += 64 * 1024)
      stream.send(payload.subarray(i, i + 64 * 1024), { binary: true });
    await waitFor(() => got >= payload.length, 60_000, 'the echo through the hop');
    expect(sha256(Buffer.concat(back))).toBe(sha256(payload));
    expect(await metric(a, 'dstream_active_streams')).toBe(1);
    expect(await metric(c, 'dstream_active_streams')).toBe(0);
    expect(await metric(c, 'dstream_carrier_substreams')).toBe(1);
    stream.close(1000);
    expect(await readUntil(() => metric(a, 'dstream_active_streams'), 0, 30_000)).toBe(0);
    expect(await readUntil(() => metric(c, 'dstream_carrier_substreams'), 0, 30_000)).toBe(0);
    // A spent token is refused by A (401 in IoT Hub's shape), through C.
    const again = await open(res.token as string, res.url as string).catch((e: unknown) => e);
    expect(again).toMatchObject({ status: 401 });
    expect(parseIotHubError((again as { body: string }).body).name).toBe(
      'IotHubUnauthorizedAccess',
    );
    // A stream id naming no live node: 404 from C, not passed anywhere.
    const bogus = (res.url as string).replace(/bridges\/[^.]+\./, 'bridges/nonode.');
    const none = await open('x', bogus).catch((e: unknown) => e);
    expect(none).toMatchObject({ status: 404 });
    // C keeps serving on the same carrier connection.
    const next = await requestStream(cluster, b.target, 'pi-hop');
    const second = await open(next.token as string, next.url as string);
    const small = randomBytes(1000);
    const echoed = new Promise<Buffer>((resolve) =>
      second.on('message', (data: Buffer) => resolve(Buffer.from(data))),
    );
    second.resume();
    second.send(small, { binary: true });
    expect(sha256(await echoed)).toBe(sha256(small));
    second.close(1000);
  });

  it("a resumable substream on another node's carrier connection resumes there: its ticket is checked, it meets its other half at the stream's node, the hub's tickets pass the hop", async () => {
    const { cluster, echo } = await setUp();
    await startDevice(cluster, echo, 'pi-back');
    const a = await ownerOf(cluster);
    const [b, c] = others(cluster, a) as [ClusterNodeProcess, ClusterNodeProcess];
    const carrierToC = (): Promise<{ ws: WebSocket; session: MuxSession }> => carrierTo(cluster, c);
    /** A raw v2 end: what it received, and the tickets the hub sent it. */
    const end = { received: 0, tickets: [] as string[], peerResumes: 0 };
    const attach = (stream: MuxStream): void => {
      stream.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) end.received += data.length;
        else {
          const frame = parseStreamFrame(data.toString());
          if (frame?.type === 'ticket') end.tickets.push(frame.ticket);
          if (frame?.type === 'resume') end.peerResumes++;
        }
      });
      stream.resume();
    };
    const res = await requestStream(cluster, b.target, 'pi-back');
    expect(res.status).toBe(200);
    const first = await carrierToC();
    const stream = first.session.open(res.url as string, {
      path: new URL(res.url as string).pathname,
      authorization: `Bearer ${res.token as string}`,
      protocols: [resumableStreamProtocol],
    });
    expect(await answerOf(stream)).toBeUndefined();
    expect(stream.protocol).toBe(resumableStreamProtocol);
    attach(stream);
    stream.send(randomBytes(1000), { binary: true });
    await waitFor(() => end.received === 1000 && end.tickets.length >= 1, 30_000, 'echo, ticket');
    // The carrier connection is lost (not closed): the stream is suspended at A.
    first.ws.terminate();
    const ticketsBefore = end.tickets.length;
    const resumesBefore = end.peerResumes;
    const second = await carrierToC();
    const back = second.session.open(res.url as string, {
      path: new URL(res.url as string).pathname,
      authorization: `Resume ${end.tickets.at(-1) as string}`,
      protocols: [resumableStreamProtocol],
    });
    expect(await answerOf(back)).toBeUndefined();
    attach(back);
    back.send(formatStreamFrame({ type: 'resume', received: end.received }));
    // As a real end does: bytes only once the other end has resumed too (its `resume` says
    // what it holds). A resuming half that sends bytes before its peer is back is closed
    // (policy violation): sent at once, this echo failed when the agent was slow to resume.
    await waitFor(() => end.peerResumes === resumesBefore + 1, 30_000, "the device end's resume");
    back.send(randomBytes(500), { binary: true });
    await waitFor(() => end.received === 1500, 30_000, 'the echo after resuming');
    // A's next ticket came through C's relay (the hub's frames pass a hop).
    await waitFor(() => end.tickets.length > ticketsBefore, 30_000, 'a new ticket');
    expect(await metric(a, 'dstream_streams_resumed_total')).toBe(1);
    expect(await metric(c, 'dstream_active_streams')).toBe(0);
    // The spent ticket, presented again through C: refused, and C says why.
    const third = await carrierToC();
    const replayed = third.session.open(res.url as string, {
      path: new URL(res.url as string).pathname,
      authorization: `Resume ${end.tickets[ticketsBefore - 1] as string}`,
      protocols: [resumableStreamProtocol],
    });
    const refused = await answerOf(replayed);
    expect(refused?.status).toBeGreaterThanOrEqual(400);
    expect(refused?.status).toBeLessThan(500);
    back.close(1000);
  });

  it('SIGTERM on one node: its devices move to the others, which route to them at once', async () => {
    const { cluster, echo } = await setUp();
    await startDevice(cluster, echo, 'drained');
    const a = await ownerOf(cluster);
    expect(await a.proc.stop('SIGTERM')).toBe(0);
    const live = others(cluster, a);
    await ownerOf(cluster, live);
    for (const n of live) await echoThrough(cluster, n.target, 'drained', randomBytes(64_000));
  });
});

describe('cluster: bad settings are one clear line', () => {
  it('refuses --node-url without --redis, a bad --redis, a Redis that is down, a node without the certificate', async () => {
    const dir = makeTempDir('dstream-cluster-cli-');
    try {
      const noRedis = await runCli(['hub', '--node-url', 'wss://n1:8443']);
      expect([noRedis.code, noRedis.stderr]).toEqual([
        2,
        'error: --node-url is for cluster mode: give --redis too\n',
      ]);
      const sameAsBalancer = await runCli([
        ...['hub', '--redis', 'redis://127.0.0.1:6379', '--public-url', 'https://hub.example:443'],
        ...['--node-url', 'wss://hub.example'],
      ]);
      expect([sameAsBalancer.code, sameAsBalancer.stderr.split('\n')[0]]).toEqual([
        2,
        'error: --node-url must reach this node itself, not the balancer (--public-url)',
      ]);
      const badUrl = await runCli(['hub', '--redis', 'http://x:1']);
      expect(badUrl.code).toBe(2);
      expect(badUrl.stderr).toBe(
        'error: --redis http://x:1: expected redis://HOST:PORT, rediss://HOST:PORT or unix:/PATH\n',
      );
      const down = await runCli([
        ...['hub', '--data-dir', join(dir, 'hub'), '--listen', '127.0.0.1:0'],
        ...['--redis', `unix:${join(dir, 'no.sock')}`],
      ]);
      expect(down.code).toBe(1);
      expect(down.stderr.split('\n')[0]).toBe(
        `error: cannot reach redis at unix:${dir}/no.sock: connect ENOENT ${dir}/no.sock`,
      );
      expect(down.stderr).not.toMatch(/\n\s+at /);
      // A password in --redis never reaches the terminal or a log.
      const withPassword = await runCli([
        ...['hub', '--data-dir', join(dir, 'hub'), '--listen', '127.0.0.1:0', '-v'],
        ...['--redis', 'redis://dstream:s3cr3t-pw@127.0.0.1:1'],
      ]);
      expect(withPassword.code).toBe(1);
      expect(withPassword.stderr).toMatch(
        /^error: cannot reach redis at redis:\/\/dstream:\*\*\*@127\.0\.0\.1:1: /m,
      );
      expect(withPassword.stderr).not.toContain('s3cr3t-pw');
      // The same from the environment, which keeps the password out of `ps` as well.
      const fromEnv = await runCli(
        ['hub', '--data-dir', join(dir, 'hub'), '--listen', '127.0.0.1:0'],
        { DSTREAM_REDIS_URL: 'redis://dstream:s3cr3t-pw@127.0.0.1:1' },
      );
      expect([fromEnv.code, fromEnv.stderr.split('\n')[0]]).toEqual([
        1,
        'error: cannot reach redis at redis://dstream:***@127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1',
      ]);
      const redis = await startRedis(dir);
      try {
        const noCert = await runCli([
          ...['hub', '--data-dir', join(dir, 'empty'), '--listen', '127.0.0.1:0'],
          ...['--redis', redis.url],
        ]);
        expect(noCert.code).toBe(1);
        expect(noCert.stderr.split('\n')[0]).toBe(
          `error: no TLS certificate in ${join(dir, 'empty', 'tls')}`,
        );
        expect(noCert.stderr).toMatch(/run `dstream hub init --redis <url>` once/);
      } finally {
        await redis.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
