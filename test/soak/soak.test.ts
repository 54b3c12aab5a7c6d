/**
 * Soak test (not in `npm test`): `npm run soak`. Runs hub, agent and proxy as separate
 * processes and hammers them with concurrent streams of random sizes, some aborted at random,
 * for SOAK_SECONDS (default 180) with SOAK_CONCURRENCY workers (default 64). Afterwards every
 * completed transfer must have echoed byte-exact, and the hub's open file descriptors and
 * memory must be back near their values after warm-up. Prints a JSON summary line. Runs twice:
 * against one hub, and through haproxy against a 3-node cluster (redis-server and haproxy
 * required), where the same books must balance on every node.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { runCli, spawnCli, startCliHub } from '../helpers/cli.js';
import { startTestCluster } from '../helpers/cluster.js';
import { makeTempDir } from '../helpers/hub.js';
import { dial, waitFor } from '../helpers/net.js';
import { startEchoServer } from '../helpers/servers.js';

const seconds = Number(process.env.SOAK_SECONDS ?? 180);
const concurrency = Number(process.env.SOAK_CONCURRENCY ?? 64);

function hubFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function hubRssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

/** One stream: send a random payload, half-close, expect it echoed; or abort midway. */
async function oneStream(
  port: number,
  abort: boolean,
): Promise<'ok' | 'aborted' | 'mismatch' | 'error'> {
  const size =
    Math.random() < 0.8
      ? Math.floor(Math.random() * 64 * 1024)
      : Math.floor(Math.random() * 2 * 1024 * 1024);
  const payload = randomBytes(size);
  const client = await dial(port);
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    let got = 0;
    let settled = false;
    const settle = (r: 'ok' | 'aborted' | 'mismatch' | 'error'): void => {
      if (settled) return;
      settled = true;
      resolve(r);
    };
    const abortAt = abort ? Math.floor(Math.random() * (size + 1)) : -1;
    client.on('data', (d: Buffer) => {
      got += d.length;
      hash.update(d);
      if (abort && got >= abortAt) {
        client.resetAndDestroy();
        settle('aborted');
      }
    });
    client.on('end', () => {
      const same =
        got === size && hash.digest('hex') === createHash('sha256').update(payload).digest('hex');
      settle(abort ? 'aborted' : same ? 'ok' : 'mismatch');
      client.end();
    });
    client.on('error', () => settle(abort ? 'aborted' : 'error'));
    client.on('close', () => settle(abort ? 'aborted' : 'error'));
    client.end(payload);
  });
}

/**
 * Hammer `port` (a proxy) with concurrent streams for `seconds`, then check the books: every
 * completed stream byte-exact, and each hub process's descriptors and memory back near their
 * post-warm-up values. `slackFds`: descriptors a process may hold beyond its baseline (cluster
 * nodes see the balancer's health checks come and go).
 */
async function soak(port: number, pids: readonly number[], slackFds = 2): Promise<void> {
  const counts = { ok: 0, aborted: 0, mismatch: 0, error: 0 };
  const run = async (until: number): Promise<void> => {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < until) counts[await oneStream(port, Math.random() < 0.1)]++;
      }),
    );
  };
  const settled = (limit: (pid: number) => number): boolean =>
    pids.every((pid) => hubFds(pid) <= limit(pid));
  // Warm up (JIT, TLS session state, allocator pools), then take the baseline.
  await run(Date.now() + Math.min(5000, seconds * 100));
  await waitFor(
    () => settled(() => 30 + slackFds),
    15_000,
    'hub fds to settle after warm-up',
  ).catch(() => undefined);
  const base = new Map(pids.map((pid) => [pid, { fds: hubFds(pid), rssMiB: hubRssMiB(pid) }]));
  const baseOf = (pid: number): { fds: number; rssMiB: number } =>
    base.get(pid) ?? { fds: 0, rssMiB: 0 };
  await run(Date.now() + seconds * 1000);
  // Every stream is closed by now on our side; the hubs must let go of their sockets.
  await waitFor(
    () => settled((pid) => baseOf(pid).fds + slackFds),
    15_000,
    'hub fds back near their baseline',
  );
  const after = pids.map((pid) => ({ pid, fds: hubFds(pid), rssMiB: hubRssMiB(pid) }));
  const summary = { seconds, concurrency, ...counts, base: [...base.values()], after };
  console.log(`soak summary ${JSON.stringify(summary)}`);
  expect(counts.mismatch).toBe(0);
  expect(counts.error).toBe(0);
  expect(counts.ok).toBeGreaterThan(0);
  for (const a of after) {
    expect(a.fds).toBeLessThanOrEqual(baseOf(a.pid).fds + slackFds);
    // V8 keeps some heap it grew into; a leak would grow with the run length instead.
    expect(a.rssMiB).toBeLessThan(baseOf(a.pid).rssMiB * 1.5 + 64);
  }
}

const stops: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** Agent for device `soak` (echo on its port) and a proxy to it, given the service string. */
async function agentAndProxy(serviceString: string, echoPort: number): Promise<number> {
  const env = { DSTREAM_SERVICE_CONNECTION_STRING: serviceString };
  const added = await runCli(['device', 'add', 'soak'], env);
  expect(added.code).toBe(0);
  const agent = spawnCli(['agent', '--port', String(echoPort)], {
    DSTREAM_DEVICE_CONNECTION_STRING: added.stdout.trim(),
  });
  // Each process must exit on SIGTERM, and cleanly: an agent on the multiplexed carrier once
  // spun at full CPU instead (a reset socket's handle left behind; src/net/reset.ts).
  stops.push(async () => expect(await agent.stop()).toBe(0));
  await agent.waitForLine(/connected to the hub/);
  const proxy = spawnCli(
    ['proxy', '--device', 'soak', '--local-port', '0', '--remote-port', String(echoPort)],
    env,
  );
  stops.push(async () => expect(await proxy.stop()).toBe(0));
  return Number((await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/))[1]);
}

it(
  `soak: ${concurrency} concurrent streams for ${seconds} s`,
  async () => {
    const dir = makeTempDir('dstream-soak-');
    stops.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
    const echo = await startEchoServer();
    stops.push(() => echo.close());
    const hub = await startCliHub(join(dir, 'hub'));
    stops.push(() => hub.stop());
    const port = await agentAndProxy(hub.serviceString, echo.port);
    await soak(port, [hub.hub.child.pid ?? 0]);
  },
  (seconds + 120) * 1000,
);

it(
  `soak through a 3-node cluster: ${concurrency} concurrent streams for ${seconds} s`,
  async () => {
    const echo = await startEchoServer();
    stops.push(() => echo.close());
    const cluster = await startTestCluster();
    stops.push(() => cluster.stop());
    // Agent and proxy both go through haproxy; stream requests land on every node.
    const port = await agentAndProxy(cluster.serviceString, echo.port);
    await soak(
      port,
      cluster.nodes.map((n) => n.proc.child.pid ?? 0),
      4,
    );
  },
  (seconds + 120) * 1000,
);
