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

/** What one carrier did: its fresh processes' first transfer, then one turn per measured pair. */
export interface BulkFigures {
  readonly cold: BulkTurn;
  /** The i-th turn of each carrier was measured next to the other's i-th turn. */
  readonly warm: readonly BulkTurn[];
}

export interface BulkInTurnsOptions {
  /** Bytes of the first transfer each way through fresh processes (the cold figures). */
  readonly coldBytes: number;
  /** Bytes then moved each way through each stack, unmeasured, before the pairs. */
  readonly warmBytes: number;
  /** Measured pairs: in each, one transfer each way through each carrier, next to each other. */
  readonly pairs: number;
  /** Bytes of each measured transfer. */
  readonly pairBytes: number;
  /** Called after each carrier's turn, for progress lines (pair 0: the cold transfer). */
  readonly onTurn?: ((transport: Transport, pair: number, turn: BulkTurn) => void) | undefined;
}

const cpuOf = (stack: Stack): number =>
  cpuSeconds(stack.hub.pid) + cpuSeconds(stack.agent.pid) + cpuSeconds(stack.proxy.pid);

type Way = 'up' | 'down';

/** One transfer through `stack`: MB/s and CPU seconds per MiB. */
async function transfer(
  stack: Stack,
  targets: Targets,
  way: Way,
  bytes: number,
): Promise<[rate: number, cpuPerMib: number]> {
  const start = cpuOf(stack);
  const rate =
    way === 'up'
      ? await upload(targets, stack.ports.sink, bytes)
      : await download(stack.ports.source, bytes);
  return [rate, (cpuOf(stack) - start) / (bytes / (1024 * 1024))];
}

/**
 * Bulk through both carriers, side by side: a fresh hub, agent and proxy for each (TLS,
 * `--transport mux` and `--transport ws`). First one transfer each way through each (the cold
 * figures); then `warmBytes` each way through each, unmeasured; then `pairs` pairs, in each one
 * transfer up through either carrier back to back, then one down, the order swapped every
 * pair (mux first, then ws first) so that neither carrier always follows the other.
 *
 * Why pairs of short transfers: this two-core machine's speed drifts by a third within
 * minutes, and a bulk transfer here is bound by the CPU all the processes share (MB/s times
 * CPU per MiB stays about constant while either swings), so only transfers taken close
 * together compare the carriers; a pair's two transfers are a fraction of a second apart.
 * Why the warm-up: a fresh process runs its data path in V8's interpreter until it has been
 * called often enough to be compiled, and keeps getting cheaper per byte for a GiB or more
 * (the carrier's processes the longer: it has more code on the path, some of it called per
 * `window` frame, a few times per MiB); the first few hundred MiB cost up to five times the
 * CPU per MiB of later ones (docs/benchmark.md, "Cold and warm bulk"). A running hub and its
 * ends are past that; the targets are theirs.
 */
export async function bulkInTurns(
  targets: Targets,
  options: BulkInTurnsOptions,
): Promise<Record<Transport, BulkFigures>> {
  const stacks = new Map<Transport, Stack>();
  try {
    for (const t of transports)
      stacks.set(t, await startStack(targets, { tls: true, endFlags: ['--transport', t] }));
    const turnOf = async (t: Transport, bytes: number): Promise<BulkTurn> => {
      const stack = stacks.get(t) as Stack;
      const [up, upCpu] = await transfer(stack, targets, 'up', bytes);
      const [down, downCpu] = await transfer(stack, targets, 'down', bytes);
      return { up, down, upCpu, downCpu };
    };
    const cold: Partial<Record<Transport, BulkTurn>> = {};
    for (const t of transports) {
      const turn = (cold[t] = await turnOf(t, options.coldBytes));
      options.onTurn?.(t, 0, turn);
    }
    for (const t of transports) await turnOf(t, options.warmBytes);
    const warm: Record<Transport, BulkTurn[]> = { mux: [], ws: [] };
    for (let pair = 1; pair <= options.pairs; pair++) {
      const order = pair % 2 === 1 ? transports : [...transports].reverse();
      const turns: Record<Transport, { -readonly [K in keyof BulkTurn]: number }> = {
        mux: { up: 0, down: 0, upCpu: 0, downCpu: 0 },
        ws: { up: 0, down: 0, upCpu: 0, downCpu: 0 },
      };
      for (const way of ['up', 'down'] as const)
        for (const t of order) {
          const stack = stacks.get(t) as Stack;
          [turns[t][way], turns[t][`${way}Cpu`]] = await transfer(
            stack,
            targets,
            way,
            options.pairBytes,
          );
        }
      for (const t of transports) {
        warm[t].push(turns[t]);
        options.onTurn?.(t, pair, turns[t]);
      }
    }
    return {
      mux: { cold: cold.mux as BulkTurn, warm: warm.mux },
      ws: { cold: cold.ws as BulkTurn, warm: warm.ws },
    };
  } finally {
    for (const stack of stacks.values()) await stack.stop();
  }
}

/** The median of one figure over the measured pairs. */
export function medianOf(figures: BulkFigures, key: keyof BulkTurn): number {
  return percentile(
    figures.warm.map((t) => t[key]),
    50,
  );
}

/**
 * The median, over the measured pairs, of `a`'s figure over `b`'s in the same pair: what the
 * machine's drift moves least.
 */
export function pairedRatio(a: BulkFigures, b: BulkFigures, key: keyof BulkTurn): number {
  return percentile(
    a.warm.map((t, i) => t[key] / ((b.warm[i] as BulkTurn)[key] || Number.NaN)),
    50,
  );
}
