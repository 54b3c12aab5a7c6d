import type { ChildProcess } from 'node:child_process';
import { cpSync, readFileSync, rmSync } from 'node:fs';
import { behindBalancerFlags, listenForBalancer, startHaproxy } from '../../bench/cluster-procs.js';
import { join } from 'node:path';
import { expect } from 'vitest';
import {
  parseConnectionString,
  type ServiceConnectionString,
} from '../../src/auth/connection-string.js';
import { hubRequest, type HubTarget } from '../../src/net/hub-client.js';
import { runCli, spawnCli, type CliProcess } from './cli.js';
import { makeTempDir } from './hub.js';
import { startRedis, type TestRedis } from './redis.js';

/** One `dstream hub --redis` process. */
export interface ClusterNodeProcess {
  readonly name: string;
  readonly port: number;
  readonly proc: CliProcess;
  /** Where to send requests to this node itself (not through the balancer). */
  readonly target: HubTarget;
}

export interface TestCluster {
  readonly dir: string;
  readonly redis: TestRedis;
  readonly nodes: ClusterNodeProcess[];
  /** The load balancer's port (haproxy, round robin, health checks on /readyz). */
  readonly lbPort: number;
  /** Service connection string naming the balancer. */
  readonly serviceString: string;
  readonly service: ServiceConnectionString;
  /** What verifies the nodes (PEM): the seed's self-signed certificate, or the CA's. */
  readonly ca: string;
  /** Start one more node (e.g. after one was killed). */
  addNode(name: string): Promise<ClusterNodeProcess>;
  /** Control connections a node holds, from its /metrics. */
  connectedDevices(node: ClusterNodeProcess): Promise<number>;
  /**
   * The node holding the one connected device's control connection (and so its streams):
   * waits until exactly one of `live` (default: all) reports one.
   */
  ownerOf(live?: readonly ClusterNodeProcess[]): Promise<ClusterNodeProcess>;
  stop(): Promise<void>;
}

export interface TestClusterOptions {
  /** Every node (and the seed's `hub init`) serves these files, issued by the CA in `caFile`. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
  /** More `dstream hub` flags for every node. */
  readonly nodeFlags?: readonly string[];
  /** More `dstream hub` flags for one node, by its name (`n1`, `n2`, `n3`). */
  readonly flagsOf?: (name: string) => readonly string[];
}

/** Redis, `hub init`, three hub nodes and haproxy in front of them: all real processes. */
export async function startTestCluster(options: TestClusterOptions = {}): Promise<TestCluster> {
  const tlsFlags = options.tls
    ? ['--tls-cert', options.tls.certFile, '--tls-key', options.tls.keyFile]
    : [];
  const dir = makeTempDir('dstream-cluster-');
  const redis = await startRedis(dir);
  const lb = await listenForBalancer();
  const seed = join(dir, 'seed');
  const init = await runCli([
    'hub',
    'init',
    '--data-dir',
    seed,
    '--redis',
    redis.url,
    '--public-url',
    `https://127.0.0.1:${lb.port}`,
    ...tlsFlags,
  ]);
  if (init.code !== 0) throw new Error(`hub init failed: ${init.stderr}`);
  const serviceString = init.stdout.trim();
  const ca = readFileSync(options.tls?.caFile ?? join(seed, 'tls', 'cert.pem'), 'utf8');
  const printed = parseConnectionString(serviceString) as ServiceConnectionString;
  // Unpinned strings (a CA-issued certificate) verify by the CA, as a client's --ca would.
  const service = options.tls ? { ...printed, hub: { ...printed.hub, ca } } : printed;
  const nodes: ClusterNodeProcess[] = [];
  const children: CliProcess[] = [];

  const addNode = async (name: string): Promise<ClusterNodeProcess> => {
    // As an operator would: the seed data dir (certificate) copied to each node.
    const dataDir = join(dir, name);
    cpSync(seed, dataDir, { recursive: true });
    const proc = spawnCli([
      'hub',
      '--data-dir',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      '--redis',
      redis.url,
      '--heartbeat-interval',
      '1',
      ...behindBalancerFlags,
      ...tlsFlags,
      ...(options.nodeFlags ?? []),
      ...(options.flagsOf?.(name) ?? []),
    ]);
    children.push(proc);
    const m = await proc.waitForLine(/hub listening on https:\/\/127\.0\.0\.1:(\d+)/);
    const port = Number(m[1]);
    const node = { name, port, proc, target: { ...service.hub, port } };
    nodes.push(node);
    return node;
  };
  let balancer: ChildProcess | undefined;
  try {
    await Promise.all(Array.from({ length: 3 }, (_, i) => addNode(`n${i + 1}`)));
    nodes.sort((a, b) => a.name.localeCompare(b.name));
    balancer = await startHaproxy(
      dir,
      lb,
      nodes.map((n) => n.port),
    );
    // Ready when a request through it reaches a node.
    const exited = balancer;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (exited.exitCode !== null) throw new Error('haproxy exited at start');
      const res = await hubRequest(
        { ...service.hub, port: lb.port },
        { method: 'GET', path: '/readyz', timeoutMs: 1000 },
      ).catch(() => undefined);
      if (res?.status === 200) break;
      if (Date.now() > deadline) throw new Error('haproxy did not pass requests within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    lb.server.close();
    await Promise.all(children.map((c) => c.stop('SIGKILL')));
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const connectedDevices = async (node: ClusterNodeProcess): Promise<number> => {
    const res = await hubRequest(node.target, { method: 'GET', path: '/metrics' });
    const m = /^dstream_connected_devices (\d+)$/m.exec(res.body);
    if (!m) throw new Error(`no dstream_connected_devices in /metrics of ${node.name}`);
    return Number(m[1]);
  };
  return {
    dir,
    redis,
    nodes,
    lbPort: lb.port,
    serviceString,
    service,
    ca,
    addNode,
    connectedDevices,
    ownerOf: async (live = nodes) => {
      let holders: ClusterNodeProcess[] = [];
      await expect
        .poll(
          async () => {
            const counts = await Promise.all(live.map((n) => connectedDevices(n)));
            holders = live.filter((_, i) => (counts[i] ?? 0) > 0);
            return counts.reduce((a, b) => a + b, 0);
          },
          { timeout: 15_000 },
        )
        .toBe(1);
      return holders[0] as ClusterNodeProcess;
    },
    stop: async () => {
      balancer?.kill('SIGTERM');
      // Clean-up only: graceful shutdown is tested elsewhere, and a node a test left
      // stopped (SIGSTOP) would not act on SIGTERM.
      await Promise.all(children.map((c) => c.stop('SIGKILL')));
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
