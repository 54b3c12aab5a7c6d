import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { cliPath, runCliOnce, spawnChild, type Child } from './child.js';
import {
  behindBalancerFlags,
  listenForBalancer,
  startHaproxy,
  startRedisServer,
} from './cluster-procs.js';
import { benchDevice, hubTuning, type Targets } from './stack.js';

/** A cluster as an operator runs one: redis-server, N hub nodes, haproxy, agent and proxy. */
export interface ClusterStack {
  readonly nodes: readonly Child[];
  /** Proxy port of the greeter stream. */
  readonly greetPort: number;
  /** Warnings and errors the cluster's processes logged (to explain failures). */
  problems(): string[];
  stop(): Promise<void>;
}

/**
 * Start `nodeCount` hub nodes sharing one Redis, with haproxy in front; the agent and the
 * proxy both reach the cluster through haproxy, so stream requests land on any node.
 */
export async function startClusterStack(
  targets: Targets,
  nodeCount: number,
): Promise<ClusterStack> {
  const dir = mkdtempSync(join(tmpdir(), 'dstream-bench-cluster-'));
  const children: Child[] = [];
  let redisStop: (() => Promise<void>) | undefined;
  let balancer: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    for (const c of children.reverse()) await c.stop();
    balancer?.kill('SIGTERM');
    await redisStop?.();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const redis = await startRedisServer(dir);
    redisStop = () => redis.stop();
    const lb = await listenForBalancer();
    const seed = join(dir, 'seed');
    const serviceString = (
      await runCliOnce([
        ...['hub', 'init', '--data-dir', seed, '--redis', redis.url],
        ...['--public-url', `https://127.0.0.1:${lb.port}`],
      ])
    ).trim();
    const ports = await Promise.all(
      Array.from({ length: nodeCount }, async (_, i) => {
        const dataDir = join(dir, `n${i + 1}`);
        cpSync(seed, dataDir, { recursive: true });
        const node = spawnChild(process.execPath, [
          cliPath,
          ...['hub', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--redis', redis.url],
          ...behindBalancerFlags,
          ...hubTuning,
        ]);
        children.push(node);
        return Number((await node.waitFor(/hub listening on https:\/\/127\.0\.0\.1:(\d+)/))[1]);
      }),
    );
    // Saturated nodes answer /readyz slowly; a benchmark must not take them out for that.
    balancer = await startHaproxy(dir, lb, ports, { checkTimeoutMs: 2000 });
    const deviceString = (
      await runCliOnce(['device', 'add', benchDevice, '--connection-string', serviceString])
    ).trim();
    const agent = spawnChild(process.execPath, [
      ...[cliPath, 'agent', '--connection-string', deviceString],
      ...['--target', `greet=127.0.0.1:${targets.greet.port}`],
    ]);
    children.push(agent);
    await agent.waitFor(/connected to the hub/);
    const proxy = spawnChild(
      process.execPath,
      [cliPath, 'proxy', '--json', '-L', `0:${benchDevice}:greet`],
      { DSTREAM_SERVICE_CONNECTION_STRING: serviceString },
    );
    children.push(proxy);
    const m = await proxy.waitFor(/"port":(\d+),"device":"[^"]+","stream":"greet"/);
    const problems = (): string[] =>
      children.flatMap((c) =>
        c
          .output()
          .split('\n')
          .filter((line) => /^(WARN|ERROR)|"level":"(warn|error)"/.test(line)),
      );
    return { nodes: children.slice(0, nodeCount), greetPort: Number(m[1]), problems, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
