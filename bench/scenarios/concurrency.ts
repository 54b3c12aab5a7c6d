import { dial, waitUntil } from '../client.js';
import { StreamHolder, type Holding } from '../held-streams.js';
import { parseConnectionString } from '../../src/auth/connection-string.js';
import { hubRequest } from '../../src/net/hub-client.js';
import { hubTarget } from '../../src/service/credentials.js';
import type { BenchConfig } from '../config.js';
import { msSince, rssBytes } from '../proc-stats.js';
import { figure, type Figure } from '../result.js';
import type { Stack, Targets } from '../stack.js';

/** One agent and proxy pair through which streams are held, and what holds them. */
export interface HeldEnds {
  readonly holding: Holding;
  readonly agentPid: number;
  readonly proxyPid: number;
}

/**
 * Scenario 5a: N concurrent streams; memory per open stream on each process, as the growth over
 * all N, and as the growth over the second half alone (what one more stream costs once the
 * process's fixed part, its young generation and code, has grown with the first half).
 */
export async function runConcurrency(
  cfg: BenchConfig,
  stack: Stack,
  n = cfg.concurrentStreams,
): Promise<Figure[]> {
  const ends = {
    holding: new StreamHolder(stack.ports.echo),
    agentPid: stack.agent.pid,
    proxyPid: stack.proxy.pid,
  };
  return measureHeld(stack.hub.pid, [ends], n);
}

/**
 * Memory per open stream with `n` streams held through one hub, split evenly over `ends` (each
 * its own device with its agent and proxy): the hub's figure is its growth over all `n`; the
 * agents' and proxies' figures are their growth summed over all `n` (the same as one pair's
 * when there is one).
 */
export async function measureHeld(
  hubPid: number,
  ends: readonly HeldEnds[],
  n: number,
  note = '',
): Promise<Figure[]> {
  type Reading = { hub: number; agent: number; proxy: number };
  const sum = (pids: readonly number[]): number => pids.reduce((a, pid) => a + rssBytes(pid), 0);
  const read = (): Reading => ({
    hub: rssBytes(hubPid),
    agent: sum(ends.map((e) => e.agentPid)),
    proxy: sum(ends.map((e) => e.proxyPid)),
  });
  const share = (total: number, i: number): number =>
    Math.floor(total / ends.length) + (i < total % ends.length ? 1 : 0);
  const all = async (f: (e: HeldEnds, i: number) => Promise<unknown>): Promise<void> =>
    void (await Promise.all(ends.map(f)));
  // Two echo rounds on every stream while they are open, before each reading.
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 2500));
  const before = read();
  const half = Math.floor(n / 2);
  let rampMs = 0;
  const ramp = async (count: number): Promise<void> => {
    const ms = await Promise.all(ends.map((e, i) => e.holding.open(share(count, i))));
    rampMs += Math.max(...ms);
  };
  // Echoes are off while streams are being opened: a ramp beside thousands of echoing streams
  // measures the echoes, not the streams.
  await ramp(half);
  await all((e) => e.holding.startEchoes());
  await settle();
  const mid = read();
  await all((e) => e.holding.stopEchoes());
  await ramp(n - half);
  await all((e) => e.holding.startEchoes());
  await settle();
  const after = read();
  await all((e) => e.holding.stopEchoes());
  const tallies = await Promise.all(ends.map((e) => e.holding.tally()));
  const held = tallies.reduce((a, t) => a + t.held, 0);
  const failures = tallies.reduce((a, t) => a + t.failures, 0) + (n - held);
  await all((e) => e.holding.close());
  const perStream = (name: keyof Reading): number => (after[name] - before[name]) / 1024 / n;
  const perAdded = (name: keyof Reading): number => (after[name] - mid[name]) / 1024 / (n - half);
  const slopeNote = `RSS growth from ${half} to ${n} streams / ${n - half}`;
  const split =
    ends.length > 1
      ? `; ${ends.length} devices, each its own agent and proxy, ${share(n, 0)} streams each`
      : '';
  return [
    figure({
      scenario: 5,
      name: `${n} concurrent streams: failures`,
      value: failures,
      unit: '',
      target: { op: '<', value: 1 },
      note: `ramp took ${(rampMs / 1000).toFixed(1)} s${split}${note}`,
    }),
    figure({
      scenario: 5,
      name: 'hub memory per open stream',
      value: perStream('hub'),
      unit: 'KiB',
      target: { op: '<', value: 64 },
      note: 'RSS growth / streams',
    }),
    figure({
      scenario: 5,
      name: 'agent memory per open stream',
      value: perStream('agent'),
      unit: 'KiB',
      ...(ends.length > 1 ? { note: "the agents' RSS growth / streams" } : {}),
    }),
    figure({
      scenario: 5,
      name: 'proxy memory per open stream',
      value: perStream('proxy'),
      unit: 'KiB',
      ...(ends.length > 1 ? { note: "the proxies' RSS growth / streams" } : {}),
    }),
    ...(['hub', 'agent', 'proxy'] as const).map((name) =>
      figure({
        scenario: 5,
        name: `${name} memory per added stream (second half)`,
        value: perAdded(name),
        unit: 'KiB',
        note: slopeNote,
      }),
    ),
  ];
}

/** Aggregate MB/s and fairness of `count` streams each sending as fast as it can for `seconds`. */
async function busy(
  targets: Targets,
  port: number,
  count: number,
  seconds: number,
  /** Timed once mid-window: how long a newcomer waits while everyone is busy. */
  probe: () => Promise<number> = () => Promise.resolve(NaN),
): Promise<{ aggregate: number; fairness: number; probeMs: number }> {
  const chunk = Buffer.alloc(64 * 1024, 3);
  const sockets = await Promise.all(Array.from({ length: count }, () => dial(port)));
  let running = true;
  for (const s of sockets) {
    const pump = (): void => {
      while (running && s.write(chunk));
      if (running) s.once('drain', pump);
    };
    pump();
  }
  // Every stream must be up at the sink before the window opens (setup takes a while at 100).
  await waitUntil(
    () => targets.sink.liveCounts().length === count,
    60_000,
    `${count} streams at the sink`,
  );
  await new Promise((r) => setTimeout(r, 500));
  const a = targets.sink.liveCounts();
  const t0 = process.hrtime.bigint();
  const probeMs = await probe();
  await new Promise((r) => setTimeout(r, Math.max(0, seconds * 1000 - msSince(t0))));
  const b = targets.sink.liveCounts();
  const dt = msSince(t0) / 1000;
  running = false;
  for (const s of sockets) s.destroy();
  if (a.length !== count || b.length !== count)
    throw new Error(
      `busy streams: expected ${count} open at the sink, saw ${a.length}/${b.length}`,
    );
  const rates = b.map((v, i) => (v - (a[i] ?? 0)) / 1e6 / dt);
  const sum = rates.reduce((x, y) => x + y, 0);
  // The next measurement must not see these connections at the sink.
  await waitUntil(() => targets.sink.liveCounts().length === 0, 30_000, 'the sink to drain');
  return { aggregate: sum, fairness: Math.min(...rates) / (sum / count), probeMs };
}

/** Scenario 5b: many streams busy at once: aggregate throughput and fairness. */
export async function runBusy(cfg: BenchConfig, stack: Stack, targets: Targets): Promise<Figure[]> {
  const direct = await busy(targets, targets.sink.port, cfg.busyStreams, cfg.busySeconds);
  const target = hubTarget(parseConnectionString(stack.serviceString));
  const tunnel = await busy(
    targets,
    stack.ports.sink,
    cfg.busyStreams,
    cfg.busySeconds,
    async () => {
      const start = process.hrtime.bigint();
      const res = await hubRequest(target, { method: 'GET', path: '/healthz', timeoutMs: 60_000 });
      if (res.status !== 200) throw new Error(`/healthz answered ${res.status}`);
      return msSince(start);
    },
  );
  return [
    figure({
      scenario: 5,
      name: `${cfg.busyStreams} busy streams: aggregate`,
      value: tunnel.aggregate,
      unit: 'MB/s',
      baseline: direct.aggregate,
    }),
    figure({
      scenario: 5,
      name: `${cfg.busyStreams} busy streams: slowest / mean`,
      value: tunnel.fairness,
      unit: '',
      baseline: direct.fairness,
      target: { op: '>=', value: 0.5 },
    }),
    figure({
      scenario: 5,
      name: `new connection + GET /healthz while ${cfg.busyStreams} streams are busy`,
      value: tunnel.probeMs,
      unit: 'ms',
      note: 'a new TLS connection to the hub: what a new stream or device waits for under load',
    }),
  ];
}
