/**
 * Bulk throughput of the two carriers, taking turns: `npm run bench:turns [-- --rounds N
 * --mib M]`. A fresh hub, agent and proxy for each carrier (TLS, as scenario 10 runs them),
 * side by side; M MiB up and then down through each, their first transfer (cold), then N
 * rounds of the same through each in turn; with the three processes' CPU per MiB, which drifts
 * less than the speed. Scenario 10's bulk figures are measured the same way
 * (scenarios/bulk-in-turns.ts says why).
 */
import { parseArgs } from 'node:util';
import {
  bulkInTurns,
  medianOf,
  type BulkFigures,
  type BulkTurn,
  type Transport,
} from './scenarios/bulk-in-turns.js';
import { startTargets, stopTargets } from './stack.js';

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

const f = (n: number, d = 0): string => n.toFixed(d);
const line = (label: string, t: BulkTurn): string =>
  `  ${label.padEnd(13)} up ${f(t.up).padStart(4)} (${f(t.upCpu * 1000, 1)})  down ${f(t.down).padStart(4)} (${f(t.downCpu * 1000, 1)})`;

const targets = await startTargets();
let figures: Record<Transport, BulkFigures>;
try {
  console.log(
    `bulk, ${mib} MiB each way, the carriers in turns: a first transfer (cold), then ${rounds} round${rounds === 1 ? '' : 's'} (MB/s; ms CPU per MiB)`,
  );
  figures = await bulkInTurns(targets, {
    bytes: mib * 1024 * 1024,
    rounds,
    onTurn: (t, round, turn) =>
      console.log(line(`${round === 0 ? 'cold' : `round ${round}`} ${t}`, turn)),
  });
} finally {
  await stopTargets(targets);
}
const row = (label: string, mux: number, ws: number): void =>
  console.log(
    `  ${label.padEnd(28)} ${f(mux, 1).padStart(6)} ${f(ws, 1).padStart(9)} ${f((mux / ws) * 100).padStart(8)}%`,
  );
console.log(`${' '.repeat(32)}mux        ws     mux/ws`);
for (const [label, key] of [
  ['upload MB/s', 'up'],
  ['download MB/s', 'down'],
  ['upload ms CPU/MiB', 'upCpu'],
  ['download ms CPU/MiB', 'downCpu'],
] as const) {
  const scale = key.endsWith('Cpu') ? 1000 : 1;
  row(`${label}, median`, medianOf(figures.mux, key) * scale, medianOf(figures.ws, key) * scale);
  row(`${label}, cold`, figures.mux.cold[key] * scale, figures.ws.cold[key] * scale);
}
