/**
 * Bulk throughput of the two carriers, taking turns: `npm run bench:turns [-- --pairs N --mib M
 * --warm-mib W --cold-mib C]`. A fresh hub, agent and proxy for each carrier (TLS, as scenario
 * 10 runs them), side by side; C MiB up and then down through each (cold), W MiB each way
 * unmeasured, then N pairs of M MiB transfers, the carriers back to back; with the three
 * processes' CPU per MiB. Scenario 10's bulk figures are measured the same way
 * (scenarios/bulk-in-turns.ts says why).
 */
import { parseArgs } from 'node:util';
import {
  bulkInTurns,
  medianOf,
  pairedRatio,
  type BulkFigures,
  type BulkTurn,
  type Transport,
} from './scenarios/bulk-in-turns.js';
import { startTargets, stopTargets } from './stack.js';

const { values } = parseArgs({
  options: {
    pairs: { type: 'string', default: '16' },
    mib: { type: 'string', default: '64' },
    'warm-mib': { type: 'string', default: '2048' },
    'cold-mib': { type: 'string', default: '256' },
  },
});
const pairs = Number(values.pairs);
const mib = Number(values.mib);
const warmMib = Number(values['warm-mib']);
const coldMib = Number(values['cold-mib']);
const positive = (n: number): boolean => Number.isInteger(n) && n > 0;
if (!positive(pairs) || !positive(mib) || !positive(warmMib) || !positive(coldMib)) {
  console.error(
    'usage: bulk-turns [--pairs N] [--mib M, each transfer] [--warm-mib W, unmeasured] [--cold-mib C, the first transfer] (whole numbers > 0)',
  );
  process.exit(2);
}

const f = (n: number, d = 0): string => n.toFixed(d);
const line = (label: string, t: BulkTurn): string =>
  `  ${label.padEnd(13)} up ${f(t.up).padStart(4)} (${f(t.upCpu * 1000, 1)})  down ${f(t.down).padStart(4)} (${f(t.downCpu * 1000, 1)})`;

const targets = await startTargets();
let figures: Record<Transport, BulkFigures>;
try {
  console.log(
    `bulk, the carriers side by side: ${coldMib} MiB each way through fresh processes (cold), ${warmMib} MiB unmeasured, then ${pairs} pair${pairs === 1 ? '' : 's'} of ${mib} MiB transfers (MB/s; ms CPU per MiB)`,
  );
  const MiB = 1024 * 1024;
  figures = await bulkInTurns(targets, {
    coldBytes: coldMib * MiB,
    warmBytes: warmMib * MiB,
    pairs,
    pairBytes: mib * MiB,
    onTurn: (t, pair, turn) =>
      console.log(line(`${pair === 0 ? 'cold' : `pair ${pair}`} ${t}`, turn)),
  });
} finally {
  await stopTargets(targets);
}
const row = (label: string, mux: number, ws: number, ratio = mux / ws): void =>
  console.log(
    `  ${label.padEnd(28)} ${f(mux, 1).padStart(6)} ${f(ws, 1).padStart(9)} ${f(ratio * 100).padStart(8)}%`,
  );
console.log(`${' '.repeat(32)}mux        ws     mux/ws (medians; warm: of the pairs' own ratios)`);
for (const [label, key] of [
  ['upload MB/s', 'up'],
  ['download MB/s', 'down'],
  ['upload ms CPU/MiB', 'upCpu'],
  ['download ms CPU/MiB', 'downCpu'],
] as const) {
  const scale = key.endsWith('Cpu') ? 1000 : 1;
  row(
    `${label}, median`,
    medianOf(figures.mux, key) * scale,
    medianOf(figures.ws, key) * scale,
    pairedRatio(figures.mux, figures.ws, key),
  );
  row(`${label}, cold`, figures.mux.cold[key] * scale, figures.ws.cold[key] * scale);
}
