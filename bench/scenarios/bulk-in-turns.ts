import { cpuSeconds, percentile } from '../proc-stats.js';
import { startStack, type Stack, type Targets } from '../stack.js';
import { download, upload } from './throughput.js';

export type Transport = 'mux' | 'ws';
const transports: readonly Transport[] = ['mux', 'ws'];

/** One transfer each way through one stack. */
export interface BulkTurn {
  /** MB/s. */
  readonly up: number;
  readonly down: number;
  /** CPU seconds of hub, agent and proxy together, per MiB moved, each way. */
  readonly upCpu: number;
  readonly downCpu: number;
}

/** What one carrier did: its fresh processes' first transfer, then the measured rounds. */
export interface BulkFigures {
  readonly cold: BulkTurn;
  readonly warm: readonly BulkTurn[];
}

export interface BulkInTurnsOptions {
  /** Bytes of each transfer, each way. */
  readonly bytes: number;
  /** Measured rounds, after the first transfer each way. */
  readonly rounds: number;
  /** Called after each transfer pair, for progress lines. */
  readonly onTurn?: ((transport: Transport, round: number, turn: BulkTurn) => void) | undefined;
}

const cpuOf = (stack: Stack): number =>
  cpuSeconds(stack.hub.pid) + cpuSeconds(stack.agent.pid) + cpuSeconds(stack.proxy.pid);

async function turn(stack: Stack, targets: Targets, bytes: number): Promise<BulkTurn> {
  const mib = bytes / (1024 * 1024);
  const start = cpuOf(stack);
  const up = await upload(targets, stack.ports.sink, bytes);
  const between = cpuOf(stack);
  const down = await download(stack.ports.source, bytes);
  const end = cpuOf(stack);
  return { up, down, upCpu: (between - start) / mib, downCpu: (end - between) / mib };
}

/**
 * Bulk through both carriers, taking turns: a fresh hub, agent and proxy for each (TLS,
 * `--transport mux` and `--transport ws`), side by side; first one transfer each way through
 * each (the cold figures), then `rounds` rounds of one transfer each way through each in turn.
 *
 * Why turns: this two-core machine's speed drifts by a third within minutes, so two carriers
 * measured once each, minutes apart, can say either. Why the first transfer apart: a fresh
 * process runs its data path in V8's interpreter until it has been called often enough to be
 * compiled, and a bulk transfer calls it once per 64 KiB, so the first few hundred MiB through
 * fresh processes cost up to five times the CPU per MiB of later ones (docs/benchmark.md,
 * "Cold and warm bulk"). A running hub and its ends are past that; the targets are theirs.
 */
export async function bulkInTurns(
  targets: Targets,
  options: BulkInTurnsOptions,
): Promise<Record<Transport, BulkFigures>> {
  const stacks = new Map<Transport, Stack>();
  try {
    for (const t of transports)
      stacks.set(t, await startStack(targets, { tls: true, endFlags: ['--transport', t] }));
    // Each carrier's rounds, the first one (cold) included.
    const turns: Record<Transport, BulkTurn[]> = { mux: [], ws: [] };
    for (let round = 0; round <= options.rounds; round++)
      for (const [t, stack] of stacks) {
        const next = await turn(stack, targets, options.bytes);
        turns[t].push(next);
        options.onTurn?.(t, round, next);
      }
    const figuresOf = ([cold, ...warm]: BulkTurn[]): BulkFigures => ({
      cold: cold as BulkTurn,
      warm,
    });
    return { mux: figuresOf(turns.mux), ws: figuresOf(turns.ws) };
  } finally {
    for (const stack of stacks.values()) await stack.stop();
  }
}

/** The median of one figure over the measured rounds. */
export function medianOf(figures: BulkFigures, key: keyof BulkTurn): number {
  return percentile(
    figures.warm.map((t) => t[key]),
    50,
  );
}
