/**
 * What a new stream costs each process, dstream against the floors with its shape, taking
 * turns: `npm run bench:setup-cpu [-- --rounds N --seconds S --variants a,b,... --warm W
 * --setups M --alternate]`. Each round starts every variant afresh, in an order turned by one
 * each round, warms it (W seconds of 50 openers, 8 by default: V8 compiles the per-stream paths only after
 * a few thousand streams), takes M sequential setups (500; p50, p99), then S seconds of 50
 * openers with the CPU time of the three processes a stream crosses and of this one (the load
 * generator and the targets). What scenario 10's rates alone do not show: where each variant's
 * CPU per stream goes. The load generator's own share is printed as a rough yardstick of the
 * machine's speed at the time; it is not an exact one (at a higher rate it handles more
 * streams per wake-up, so it costs less per stream beside a faster variant).
 *
 * With `--alternate`, the variants are started once and kept up, and each of N windows
 * measures S seconds of 50 openers on every variant in turn (the order reversed every other
 * window): this machine's speed swings by a fifth within minutes, and a variant started
 * afresh for each round meets another moment of the machine than the variant before it; two
 * windows a few seconds apart meet the same one. It prints each window, the medians, and each
 * variant's rate and three-process CPU over the first variant's in the same window: the
 * median ratio and in how many windows it was above (rate) or below (CPU) 1.
 *
 * Variants: `mux` (dstream as shipped: the multiplexed carrier, resumable streams),
 * `no-resume` (the same with --no-resume), `ws` (the per-stream carrier), `framing` (three Node
 * processes on dstream's MuxSession and nothing of dstream above it, mux-relay.ts), `frames`
 * (bare frames on TLS, lean-relay.ts), `relays` (three plain Node relays, no TLS).
 */
import { parseArgs } from 'node:util';
import { cpuSeconds, percentile } from './proc-stats.js';
import { startLeanChain, startRelayChain } from './relay-chain.js';
import { openOnce, openRate } from './scenarios/setup.js';
import { startStack, startTargets, stopTargets, type Targets } from './stack.js';

/** A started variant: the port a client connects to, the processes its stream crosses. */
interface Running {
  readonly port: number;
  /** Where the proxy, the hub and the agent stand, in that order. */
  readonly pids: readonly number[];
  stop(): Promise<void>;
}

const stackOf =
  (flags: readonly string[]) =>
  async (targets: Targets): Promise<Running> => {
    const s = await startStack(targets, { tls: true, endFlags: flags });
    return {
      port: s.ports.greet,
      pids: [s.proxy.pid, s.hub.pid, s.agent.pid],
      stop: () => s.stop(),
    };
  };

const variants: Record<string, (targets: Targets) => Promise<Running>> = {
  mux: stackOf(['--transport', 'mux']),
  'no-resume': stackOf(['--transport', 'mux', '--no-resume']),
  ws: stackOf(['--transport', 'ws']),
  framing: (t) => startLeanChain(t.greet.port, 'mux'),
  frames: (t) => startLeanChain(t.greet.port, 'frames'),
  relays: (t) => startRelayChain(t.greet.port),
};

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '5' },
    variants: { type: 'string', default: 'mux,framing' },
    warm: { type: 'string', default: '8' },
    setups: { type: 'string', default: '500' },
    alternate: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const warmSeconds = Number(values.warm);
const sequential = Number(values.setups);
const chosen = values.variants.split(',').filter(Boolean);
const unknown = chosen.filter((v) => !(v in variants));
if (
  !(Number.isInteger(rounds) && rounds > 0) ||
  !(Number.isInteger(seconds) && seconds > 0) ||
  !(Number.isInteger(warmSeconds) && warmSeconds > 0) ||
  !(Number.isInteger(sequential) && sequential > 0) ||
  chosen.length === 0 ||
  unknown.length > 0
) {
  console.error(
    `usage: setup-cpu [--rounds N] [--seconds S] [--variants ${Object.keys(variants).join(',')}] [--warm W] [--setups M] [--alternate] (whole numbers > 0${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''})`,
  );
  process.exit(2);
}

/** One variant's round: setup latency and rate, and ms of CPU per stream by process. */
interface Sample {
  readonly p50: number;
  readonly p99: number;
  readonly rate: number;
  readonly failed: number;
  /** proxy, hub, agent (or the relays standing there), then the load generator. */
  readonly cpu: readonly number[];
}

const selfSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Warm a started variant, then its sequential setups (ms each). */
async function warmed(run: Running): Promise<number[]> {
  await openOnce(run.port);
  await openRate(run.port, 50, warmSeconds);
  const setups: number[] = [];
  for (let i = 0; i < sequential; i++) setups.push(await openOnce(run.port));
  return setups;
}

/** S seconds of 50 openers: the rate, failures and ms of CPU per stream by process. */
async function rateSample(
  run: Running,
): Promise<{ rate: number; failed: number; cpu: readonly number[] }> {
  const before = [...run.pids.map(cpuSeconds), selfSeconds()];
  const rate = await openRate(run.port, 50, seconds);
  const after = [...run.pids.map(cpuSeconds), selfSeconds()];
  return {
    rate: rate.rate,
    failed: rate.failed,
    cpu: after.map((t, i) => ((t - (before[i] ?? 0)) * 1000) / Math.max(1, rate.ok)),
  };
}

/** Sequential setups' p50 and p99 (ms). */
function latencyOf(setups: readonly number[]): { p50: number; p99: number } {
  return { p50: percentile(setups, 50), p99: percentile(setups, 99) };
}

async function measure(run: Running): Promise<Sample> {
  const latency = latencyOf(await warmed(run));
  return Object.assign(latency, await rateSample(run));
}

const f = (n: number, d = 3): string => n.toFixed(d);
const roles = ['proxy', 'hub', 'agent'] as const;
const samples = new Map<string, Sample[]>(chosen.map((v) => [v, []]));
const targets = await startTargets();
try {
  if (values.alternate) await alternate();
  else await inTurns();
} finally {
  await stopTargets(targets);
}

/** Every variant started once and kept up, measured in alternating windows. */
async function alternate(): Promise<void> {
  console.log(
    `setup CPU in alternating windows: ${rounds} window${rounds === 1 ? '' : 's'} of ${seconds} s of 50 openers on each of ${chosen.join(', ')}, kept up (ms of CPU per stream)`,
  );
  const running: { name: string; run: Running; latency: { p50: number; p99: number } }[] = [];
  try {
    for (const name of chosen) {
      const run = await (variants[name] as (t: Targets) => Promise<Running>)(targets);
      running.push({ name, run, latency: { p50: 0, p99: 0 } });
    }
    for (const entry of running) {
      entry.latency = latencyOf(await warmed(entry.run));
      console.log(
        `  ${entry.name.padEnd(9)} warmed: ${sequential} sequential setups p50 ${f(entry.latency.p50, 2)} p99 ${f(entry.latency.p99, 2)} ms`,
      );
    }
    for (let w = 0; w < rounds; w++) {
      const order = w % 2 === 0 ? running : [...running].reverse();
      const line: string[] = [];
      for (const { name, run, latency } of order) {
        const s = await rateSample(run);
        samples.get(name)?.push(Object.assign({}, latency, s));
        line.push(`${name} ${f(s.rate, 0)}/s${s.failed ? ` (${s.failed} failed)` : ''}`);
      }
      console.log(`  w${w + 1} ${line.join('  ')}`);
    }
  } finally {
    for (const { run } of running) await run.stop();
  }
  const [first, ...others] = chosen;
  const base = samples.get(first ?? '') ?? [];
  const three = (s: Sample): number => (s.cpu[0] ?? 0) + (s.cpu[1] ?? 0) + (s.cpu[2] ?? 0);
  for (const name of others) {
    const list = samples.get(name) ?? [];
    const rates = list.map((s, i) => s.rate / (base[i]?.rate || 1));
    const cpus = list.map((s, i) => three(s) / (three(base[i] ?? s) || 1));
    console.log(
      `  ${name} over ${first ?? ''}, window by window: rate ${f(percentile(rates, 50))} (above 1 in ${rates.filter((x) => x > 1).length} of ${rates.length}), three-process CPU per stream ${f(percentile(cpus, 50))} (below 1 in ${cpus.filter((x) => x < 1).length} of ${cpus.length})`,
    );
  }
}

/** Each round, every variant started afresh, warmed and measured, in a turned order. */
async function inTurns(): Promise<void> {
  console.log(
    `setup CPU in turns: ${rounds} round${rounds === 1 ? '' : 's'} of ${chosen.join(', ')}; ${seconds} s of 50 openers measured after ${warmSeconds} s and ${sequential} sequential setups (ms of CPU per stream)`,
  );
  for (let r = 0; r < rounds; r++) {
    const order = chosen.map((_, i) => chosen[(i + r) % chosen.length] as string);
    for (const name of order) {
      const run = await (variants[name] as (t: Targets) => Promise<Running>)(targets);
      let s: Sample;
      try {
        s = await measure(run);
      } finally {
        await run.stop();
      }
      samples.get(name)?.push(s);
      const [proxy = 0, hub = 0, agent = 0, load = 0] = s.cpu;
      console.log(
        `  r${r + 1} ${name.padEnd(9)} ${f(s.rate, 0).padStart(5)}/s ${s.failed} failed  p50 ${f(s.p50, 2)} p99 ${f(s.p99, 2)} ms  proxy ${f(proxy)} hub ${f(hub)} agent ${f(agent)} (three ${f(proxy + hub + agent)})  load generator ${f(load)}`,
      );
    }
  }
}

const median = (xs: readonly number[]): number => percentile(xs, 50);
console.log(
  `medians over the ${values.alternate ? 'windows' : 'rounds'}; in brackets, each process's CPU per stream over the load generator's (a rough yardstick of the machine's speed):`,
);
for (const [name, list] of samples) {
  const cpu = (i: number): number => median(list.map((s) => s.cpu[i] ?? 0));
  const rel = (i: number): number => median(list.map((s) => (s.cpu[i] ?? 0) / (s.cpu[3] || 1)));
  console.log(
    `  ${name.padEnd(9)} ${f(median(list.map((s) => s.rate)), 0).padStart(5)}/s  p50 ${f(median(list.map((s) => s.p50)), 2)} p99 ${f(median(list.map((s) => s.p99)), 2)} ms  ` +
      roles.map((role, i) => `${role} ${f(cpu(i))} (${f(rel(i), 2)})`).join(' ') +
      `  load generator ${f(cpu(3))}`,
  );
}
