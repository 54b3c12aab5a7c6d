/**
 * Bulk throughput of the two carriers, taking turns: `npm run bench:turns [-- --rounds N
 * --mib M]`. On this two-core machine the speed drifts by a third within minutes, so scenario
 * 10's upload and download, each carrier measured once and minutes apart, can say either
 * (docs/benchmark.md, "Bulk per hop"). Here each round starts a fresh hub, agent and proxy for
 * each carrier in turn (TLS, as scenario 10 runs them), moves M MiB up and then down, and
 * reads each process's CPU time; the medians of the rounds are printed side by side, with the
 * three processes' CPU per MiB, which drifts less than the speed.
 */
import { parseArgs } from 'node:util';
import { cpuSeconds, percentile } from './proc-stats.js';
import { download, upload } from './scenarios/throughput.js';
import { startStack, startTargets, stopTargets, type Stack, type Targets } from './stack.js';

type Transport = 'mux' | 'ws';

interface Turn {
  readonly up: number;
  readonly down: number;
  /** CPU seconds of hub, agent and proxy together, per MiB moved, each way. */
  readonly upCpu: number;
  readonly downCpu: number;
}

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    mib: { type: 'string', default: '256' },
  },
});
const rounds = Number(values.rounds);
const mib = Number(values.mib);
if (!(Number.isInteger(rounds) && rounds > 0) || !(Number.isInteger(mib) && mib > 0)) {
  console.error('usage: bulk-turns [--rounds N (> 0)] [--mib M (> 0), each way per round]');
  process.exit(2);
}

const cpuOf = (stack: Stack): number =>
  cpuSeconds(stack.hub.pid) + cpuSeconds(stack.agent.pid) + cpuSeconds(stack.proxy.pid);

async function turn(targets: Targets, transport: Transport): Promise<Turn> {
  const stack = await startStack(targets, { tls: true, endFlags: ['--transport', transport] });
  try {
    const bytes = mib * 1024 * 1024;
    const start = cpuOf(stack);
    const up = await upload(targets, stack.ports.sink, bytes);
    const between = cpuOf(stack);
    const down = await download(stack.ports.source, bytes);
    const end = cpuOf(stack);
    return { up, down, upCpu: (between - start) / mib, downCpu: (end - between) / mib };
  } finally {
    await stack.stop();
  }
}

const targets = await startTargets();
const turns: Record<Transport, Turn[]> = { mux: [], ws: [] };
const f = (n: number, d = 0): string => n.toFixed(d);
try {
  console.log(
    `bulk, ${mib} MiB each way, the carriers in turns, ${rounds} round${rounds === 1 ? '' : 's'} (MB/s; ms CPU per MiB)`,
  );
  for (let round = 1; round <= rounds; round++)
    for (const transport of ['mux', 'ws'] as const) {
      const t = await turn(targets, transport);
      turns[transport].push(t);
      console.log(
        `  round ${round} ${transport.padEnd(3)}  up ${f(t.up).padStart(4)} (${f(t.upCpu * 1000, 1)})  down ${f(t.down).padStart(4)} (${f(t.downCpu * 1000, 1)})`,
      );
    }
} finally {
  await stopTargets(targets);
}
const median = (transport: Transport, key: keyof Turn): number =>
  percentile(
    turns[transport].map((t) => t[key]),
    50,
  );
console.log('medians           mux        ws     mux/ws');
for (const [label, key] of [
  ['upload MB/s', 'up'],
  ['download MB/s', 'down'],
  ['upload ms CPU/MiB', 'upCpu'],
  ['download ms CPU/MiB', 'downCpu'],
] as const) {
  const scale = key.endsWith('Cpu') ? 1000 : 1;
  const mux = median('mux', key) * scale;
  const ws = median('ws', key) * scale;
  console.log(
    `  ${label.padEnd(20)} ${f(mux, 1).padStart(6)} ${f(ws, 1).padStart(9)} ${f((mux / ws) * 100).padStart(8)}%`,
  );
}
