import type { BenchConfig } from '../config.js';
import { percentile, raiseOpenFileLimit } from '../proc-stats.js';
import { figure, type Figure } from '../result.js';
import { startBastion } from '../bastion.js';
import type { Child } from '../child.js';
import { startLeanChain, startRelayChain, type RelayChain } from '../relay-chain.js';
import { holdInChildProcess, startEchoProcess, type EchoProcess } from '../held-streams.js';
import { startStack, startWideStack, type Stack, type Targets } from '../stack.js';
import { measureHeld, runBusy } from './concurrency.js';
import { pingPong } from './round-trip.js';
import { openOnce, openRate } from './setup.js';
import { bulkInTurns, medianOf, pairedRatio, type Transport } from './bulk-in-turns.js';
import { download, upload } from './throughput.js';

interface SetupFigures {
  /** The first setups of fresh processes, before V8 has compiled their per-stream paths. */
  readonly cold: number[];
  readonly setup: number[];
  readonly rate: Awaited<ReturnType<typeof openRate>>;
}

interface CarrierFigures extends SetupFigures {
  readonly roundTrip: number[];
  readonly pingBesideBulk: number[];
}

/** The bastion's: one bulk transfer each way besides (OpenSSH is compiled ahead, never cold). */
interface BastionFigures extends CarrierFigures {
  readonly up: number;
  readonly down: number;
}

type Ports = Readonly<Record<keyof Targets, number>>;

/** A 64-byte ping-pong on one stream while another uploads flat out through the same ends. */
async function pingBesideBulk(ports: Ports, targets: Targets, cfg: BenchConfig): Promise<number[]> {
  let bulkDone = false;
  const bulk = (async () => {
    // Uploads back to back until the pings are done (each is timed until the sink has it all).
    while (!bulkDone) await upload(targets, ports.sink, 64 * 1024 * 1024);
  })();
  // Let the bulk stream get going first.
  await new Promise((r) => setTimeout(r, 300));
  const times = await pingPong(ports.echo, cfg.roundTrips);
  bulkDone = true;
  await bulk;
  return times;
}

/**
 * Sequential setups of fresh processes (cold); then, after the warm-up, sequential setups
 * again and the rate with concurrent openers, through `port`.
 */
async function measureSetup(port: number, cfg: BenchConfig): Promise<SetupFigures> {
  // The first stream may open a long-lived connection (a carrier); it is not what a stream costs.
  await openOnce(port);
  const cold: number[] = [];
  for (let i = 0; i < cfg.setups; i++) cold.push(await openOnce(port));
  // V8 runs a new process's code in its interpreter and compiles the hot paths in threads of
  // its own after thousands of calls: through dstream's ends and hub, setup p50 went from 3.5 ms
  // in the first 250 streams to 1.1-1.4 ms after 2,000, and in the first 5 s of 50 openers the
  // compiler threads took a third of the processes' CPU time. The targets are a running hub's,
  // so every stack gets the same warm-up before its figures (the cold ones are reported too).
  await openRate(port, cfg.rateOpeners, cfg.warmupSeconds);
  const setup: number[] = [];
  for (let i = 0; i < cfg.setups; i++) setup.push(await openOnce(port));
  return { cold, setup, rate: await openRate(port, cfg.rateOpeners, cfg.rateSeconds) };
}

/**
 * What scenario 10 measures through any tunnel's local ports, but bulk throughput (the
 * carriers' is measured in turns: `bulkInTurns`).
 */
async function measurePorts(
  ports: Ports,
  cfg: BenchConfig,
  targets: Targets,
): Promise<CarrierFigures> {
  const opened = await measureSetup(ports.greet, cfg);
  const roundTrip = await pingPong(ports.echo, cfg.roundTrips);
  const beside = await pingBesideBulk(ports, targets, cfg);
  return { ...opened, roundTrip, pingBesideBulk: beside };
}

async function measure(
  transport: Transport,
  cfg: BenchConfig,
  targets: Targets,
): Promise<{ figures: CarrierFigures; memory: Figure[]; busy: Figure[] }> {
  const endFlags = ['--transport', transport];
  const run = async <T>(f: (stack: Stack) => Promise<T>): Promise<T> => {
    const stack = await startStack(targets, { tls: true, endFlags });
    try {
      return await f(stack);
    } finally {
      await stack.stop();
    }
  };
  const figures = await run((stack) => measurePorts(stack.ports, cfg, targets));
  // Fresh stacks, so that memory and fairness are each their own.
  const memory = await measureMemory(transport, cfg, endFlags);
  const busy = await run((stack) => runBusy(cfg, stack, targets));
  return { figures, memory, busy };
}

/**
 * How the memory figures hold their streams: the issue's 20,000 (`carrierStreams`) where
 * descriptors allow. Limits are per process, so the streams are held and echoed by load
 * processes of their own and split over as many devices (each its own agent and proxy) as the
 * ends' descriptors need: one per stream at a multiplexed end (its local socket), two at a
 * per-stream WebSocket end, where the hub holds two per stream as well and so bounds how many
 * fit. The limit is raised first where this process may (its children inherit it).
 */
function memoryPlan(
  transport: Transport,
  cfg: BenchConfig,
): { streams: number; ends: number; note: string } {
  const wanted = cfg.carrierStreams;
  const spare = 2000;
  const limit = raiseOpenFileLimit(2 * wanted + spare);
  const perStream = transport === 'ws' ? 2 : 1;
  const hubFits = transport === 'ws' ? Math.floor((limit - spare) / 2) : Infinity;
  const streams = Math.min(wanted, hubFits);
  const ends = Math.max(cfg.carrierEnds, Math.ceil((streams * perStream) / (limit - spare)));
  const note =
    streams < wanted
      ? `; ${wanted} asked, ${streams} fit the hub's descriptor limit (${limit})`
      : '';
  return { streams, ends, note };
}

async function measureMemory(
  transport: Transport,
  cfg: BenchConfig,
  endFlags: readonly string[],
): Promise<Figure[]> {
  const plan = memoryPlan(transport, cfg);
  const procs: Child[] = [];
  try {
    const echoes: EchoProcess[] = [];
    for (let i = 0; i < plan.ends; i++) {
      const echo = await startEchoProcess();
      procs.push(echo.child);
      echoes.push(echo);
    }
    const stack = await startWideStack(
      echoes.map((e) => e.port),
      { tls: true, endFlags },
    );
    try {
      const ends = stack.ends.map((e) => {
        const holding = holdInChildProcess(e.port);
        procs.push(holding.child);
        return { holding, agentPid: e.agent.pid, proxyPid: e.proxy.pid };
      });
      return await measureHeld(stack.hub.pid, ends, plan.streams, plan.note);
    } finally {
      await stack.stop();
    }
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
}

/**
 * Scenario 10: the two carriers side by side in one run, each with a fresh hub, agent and
 * proxy (`--transport mux` and `--transport ws` on both ends), with issue 28's targets on the
 * multiplexed one and the per-stream WebSocket as its baseline.
 */
export async function runCarriers(cfg: BenchConfig, targets: Targets): Promise<Figure[]> {
  const ws = await measure('ws', cfg, targets);
  const mux = await measure('mux', cfg, targets);
  const coldBytes = Math.round(cfg.bulkBytes / 4);
  const bulk = await bulkInTurns(targets, {
    coldBytes,
    warmBytes: cfg.bulkWarmBytes,
    pairs: cfg.bulkPairs,
    pairBytes: cfg.bulkPairBytes,
  });
  const bastion = await startBastion(targets);
  let ssh: BastionFigures;
  try {
    const figures = await measurePorts(bastion.ports, cfg, targets);
    const up = await upload(targets, bastion.ports.sink, cfg.bulkBytes);
    const down = await download(bastion.ports.source, cfg.bulkBytes);
    ssh = { ...figures, up, down };
  } finally {
    await bastion.stop();
  }
  const floor = await measureChain(await startRelayChain(targets.greet.port), cfg);
  const lean = await measureChain(await startLeanChain(targets.greet.port), cfg);
  const framing = await measureChain(await startLeanChain(targets.greet.port, 'mux'), cfg);
  const m = mux.figures;
  const w = ws.figures;
  const relabel = (list: Figure[], label: string): Figure[] =>
    list.map((f) => ({ ...f, scenario: 10, name: `${label}: ${f.name}` }));
  const note = 'baseline: the per-stream WebSocket carrier (--transport ws), same run';
  const warm = `after a ${cfg.warmupSeconds} s warm-up`;
  const mib = (n: number): string => `${(n / 1024 ** 2).toFixed(0)} MiB`;
  const inTurns = `${note}; medians of ${cfg.bulkPairs} transfers of ${mib(cfg.bulkPairBytes)} each way, each next to one through the baseline, after ${mib(cfg.bulkWarmBytes)} each way unmeasured`;
  const paired = (key: 'up' | 'down' | 'upCpu' | 'downCpu'): string =>
    `median of the pairs' own ratios ${pairedRatio(bulk.mux, bulk.ws, key).toFixed(3)}`;
  const firstTransfer = `${note}; the first ${mib(coldBytes)} of fresh processes`;
  const ways = [
    ['upload', 'up'],
    ['download', 'down'],
  ] as const;
  return [
    figure({
      scenario: 10,
      name: 'mux: stream setup latency, p50',
      value: percentile(m.setup, 50),
      unit: 'ms',
      baseline: percentile(w.setup, 50),
      target: { op: '<', value: 1.5 },
      note: `${note}; ${warm}`,
    }),
    figure({
      scenario: 10,
      name: 'mux: stream setup latency, p99',
      value: percentile(m.setup, 99),
      unit: 'ms',
      baseline: percentile(w.setup, 99),
      target: { op: '<', value: 5 },
      note: `${note}; ${warm}`,
    }),
    figure({
      scenario: 10,
      name: 'mux: stream setup latency, p50, cold',
      value: percentile(m.cold, 50),
      unit: 'ms',
      baseline: percentile(w.cold, 50),
      note: `${note}; the first ${cfg.setups} setups of fresh processes`,
    }),
    figure({
      scenario: 10,
      name: 'mux: stream setup latency, p99, cold',
      value: percentile(m.cold, 99),
      unit: 'ms',
      baseline: percentile(w.cold, 99),
      note: `${note}; the first ${cfg.setups} setups of fresh processes`,
    }),
    figure({
      scenario: 10,
      name: `mux: new streams per second (${cfg.rateOpeners} openers)`,
      value: m.rate.rate,
      unit: '/s',
      baseline: w.rate.rate,
      target: { op: '>=', value: 2000 },
      note: `${note}; ${warm}`,
    }),
    figure({
      scenario: 10,
      name: 'mux: failed stream setups',
      value: m.rate.failed,
      unit: '',
      target: { op: '<', value: 1 },
      ...(m.rate.firstError ? { note: `first: ${m.rate.firstError}` } : {}),
    }),
    figure({
      scenario: 10,
      name: 'mux: round trip, p50',
      value: percentile(m.roundTrip, 50),
      unit: 'ms',
      baseline: percentile(w.roundTrip, 50),
      // "No worse than today": within this machine's noise (10%) of the per-stream carrier.
      target: { op: '<', value: percentile(w.roundTrip, 50) * 1.1 },
      note: `${note}; target: the baseline + 10%`,
    }),
    ...ways.map(([way, key]) =>
      figure({
        scenario: 10,
        name: `mux: ${way}`,
        value: medianOf(bulk.mux, key),
        unit: 'MB/s',
        baseline: medianOf(bulk.ws, key),
        ratioTarget: 1,
        note: `${inTurns}; ${paired(key)}`,
      }),
    ),
    ...ways.map(([way, key]) =>
      figure({
        scenario: 10,
        name: `mux: ${way}, CPU per MiB (hub, agent and proxy)`,
        value: medianOf(bulk.mux, `${key}Cpu`) * 1000,
        unit: 'ms',
        baseline: medianOf(bulk.ws, `${key}Cpu`) * 1000,
        note: `${inTurns}; ${paired(`${key}Cpu`)}`,
      }),
    ),
    ...ways.map(([way, key]) =>
      figure({
        scenario: 10,
        name: `mux: ${way}, cold`,
        value: bulk.mux.cold[key],
        unit: 'MB/s',
        baseline: bulk.ws.cold[key],
        note: firstTransfer,
      }),
    ),
    figure({
      scenario: 10,
      name: 'mux: 64 B round trip beside a bulk upload, p99',
      value: percentile(m.pingBesideBulk, 99),
      unit: 'ms',
      baseline: percentile(w.pingBesideBulk, 99),
      target: { op: '<', value: 20 },
      note,
    }),
    ...bastionFigures(ssh),
    ...setupFigures('three plain Node relays (no TLS, no protocol)', floor),
    ...setupFigures('three Node processes on two TLS connections (frames only)', lean),
    ...setupFigures(
      "three Node processes on dstream's framing (MuxSession on TLS WebSockets)",
      framing,
    ),
    ...relabel(mux.memory, 'mux').map((f) =>
      f.name.endsWith('memory per open stream')
        ? { ...f, ...figure({ ...f, target: { op: '<', value: 8 } }) }
        : f,
    ),
    ...relabel(ws.memory, 'ws'),
    ...relabel(mux.busy, 'mux').map((f) =>
      f.name.endsWith('slowest / mean')
        ? { ...f, ...figure({ ...f, target: { op: '>=', value: 0.5 } }) }
        : f,
    ),
    ...relabel(ws.busy, 'ws'),
  ];
}

/** `measureSetup` through a relay chain, which is stopped after. */
async function measureChain(chain: RelayChain, cfg: BenchConfig): Promise<SetupFigures> {
  try {
    return await measureSetup(chain.port, cfg);
  } finally {
    await chain.stop();
  }
}

/**
 * Setup latency p50 and p99 (cold and warm) and the rate of a reference with no targets of its
 * own (the bastion; three plain Node relays, and three Node processes with the carrier's shape,
 * bare frames or dstream's framing, relay-chain.ts: floors with the proxy's, hub's and agent's
 * processes doing nothing but pass bytes on), under its `label`.
 */
function setupFigures(label: string, f: SetupFigures): Figure[] {
  const name = (what: string): string => `${label}: ${what}`;
  return [
    figure({
      scenario: 10,
      name: name('setup latency, p50, cold'),
      value: percentile(f.cold, 50),
      unit: 'ms',
    }),
    figure({
      scenario: 10,
      name: name('setup latency, p50'),
      value: percentile(f.setup, 50),
      unit: 'ms',
    }),
    figure({
      scenario: 10,
      name: name('setup latency, p99'),
      value: percentile(f.setup, 99),
      unit: 'ms',
    }),
    figure({
      scenario: 10,
      name: name('new streams per second'),
      value: f.rate.rate,
      unit: '/s',
      note: `${f.rate.failed} failed${f.rate.firstError ? `; first: ${f.rate.firstError}` : ''}`,
    }),
  ];
}

/** The OpenSSH bastion's figures: the reference the issue names, no targets of its own. */
function bastionFigures(ssh: BastionFigures): Figure[] {
  const label = 'OpenSSH bastion (ssh -R, ssh -L)';
  const name = (what: string): string => `${label}: ${what}`;
  return [
    ...setupFigures(label, ssh),
    figure({
      scenario: 10,
      name: name('round trip, p50'),
      value: percentile(ssh.roundTrip, 50),
      unit: 'ms',
    }),
    figure({ scenario: 10, name: name('upload'), value: ssh.up, unit: 'MB/s' }),
    figure({ scenario: 10, name: name('download'), value: ssh.down, unit: 'MB/s' }),
    figure({
      scenario: 10,
      name: name('64 B round trip beside a bulk upload, p99'),
      value: percentile(ssh.pingBesideBulk, 99),
      unit: 'ms',
    }),
  ];
}
