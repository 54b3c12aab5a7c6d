import type { Socket } from 'node:net';
import { dial, readExactly, waitUntil } from '../client.js';
import { parseConnectionString } from '../../src/auth/connection-string.js';
import { hubRequest } from '../../src/net/hub-client.js';
import { hubTarget } from '../../src/service/credentials.js';
import type { BenchConfig } from '../config.js';
import { msSince, rssBytes } from '../proc-stats.js';
import { figure, type Figure } from '../result.js';
import type { Stack, Targets } from '../stack.js';

const payload = Buffer.alloc(32, 7);

/**
 * Streams held open, echoing a small payload every second while echoes are on; failures
 * counted (a close counts until the streams are let go).
 */
async function holdStreams(
  port: number,
  count: number,
): Promise<{
  sockets: Socket[];
  failures: () => number;
  ms: number;
  startEchoes: () => void;
  stopEchoes: () => Promise<void>;
  letGo: () => void;
}> {
  const sockets: Socket[] = [];
  let failures = 0;
  let closing = false;
  const start = process.hrtime.bigint();
  // Ramp in batches: each batch's streams are up (first echo back) before the next starts.
  const batch = 100;
  for (let i = 0; i < count; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, async () => {
        try {
          const socket = await dial(port);
          socket.once('close', () => {
            if (!closing) failures++;
          });
          const back = readExactly(socket, payload.length);
          socket.write(payload);
          await back;
          sockets.push(socket);
        } catch {
          failures++;
        }
      }),
    );
  }
  const ms = msSince(start);
  let pending = 0;
  let timer: NodeJS.Timeout | undefined;
  const round = (): void => {
    for (const s of sockets) {
      pending++;
      readExactly(s, payload.length, 20_000)
        .catch(() => failures++)
        .finally(() => pending--);
      s.write(payload);
    }
  };
  return {
    sockets,
    failures: () => failures,
    ms,
    startEchoes: () => void (timer ??= setInterval(round, 1000)),
    stopEchoes: async () => {
      clearInterval(timer);
      timer = undefined;
      // Every echo sent is answered or has timed out (and was counted) before counting.
      await waitUntil(() => pending === 0, 30_000, 'the last echoes');
    },
    letGo: () => void (closing = true),
  };
}

async function closeAll(sockets: readonly Socket[]): Promise<void> {
  await Promise.all(
    sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.closed) return resolve();
          s.once('close', () => resolve());
          s.end();
          setTimeout(() => s.destroy(), 10_000).unref();
        }),
    ),
  );
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
  note = '',
): Promise<Figure[]> {
  const procs = { hub: stack.hub.pid, agent: stack.agent.pid, proxy: stack.proxy.pid };
  type Reading = Record<keyof typeof procs, number>;
  const read = (): Reading => ({
    hub: rssBytes(procs.hub),
    agent: rssBytes(procs.agent),
    proxy: rssBytes(procs.proxy),
  });
  // Two echo rounds on every stream while they are open, before each reading.
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 2500));
  const before = read();
  const half = Math.floor(n / 2);
  // Echoes are off while streams are being opened: a ramp beside thousands of echoing streams
  // measures the echoes, not the streams.
  const first = await holdStreams(stack.ports.echo, half);
  first.startEchoes();
  await settle();
  const mid = read();
  await first.stopEchoes();
  const second = await holdStreams(stack.ports.echo, n - half);
  first.startEchoes();
  second.startEchoes();
  await settle();
  const after = read();
  await Promise.all([first.stopEchoes(), second.stopEchoes()]);
  first.letGo();
  second.letGo();
  const sockets = [...first.sockets, ...second.sockets];
  const failures = first.failures() + second.failures() + (n - sockets.length);
  await closeAll(sockets);
  const perStream = (name: keyof typeof procs): number => (after[name] - before[name]) / 1024 / n;
  const perAdded = (name: keyof typeof procs): number =>
    (after[name] - mid[name]) / 1024 / (n - half);
  const slopeNote = `RSS growth from ${half} to ${n} streams / ${n - half}`;
  return [
    figure({
      scenario: 5,
      name: `${n} concurrent streams: failures`,
      value: failures,
      unit: '',
      target: { op: '<', value: 1 },
      note: `ramp took ${((first.ms + second.ms) / 1000).toFixed(1)} s${note}`,
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
    }),
    figure({
      scenario: 5,
      name: 'proxy memory per open stream',
      value: perStream('proxy'),
      unit: 'KiB',
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
