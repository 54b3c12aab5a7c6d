import {
  PerformanceObserver,
  constants,
  type NodeGCPerformanceDetail,
  type PerformanceEntry,
} from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/**
 * How big V8's old generation may grow before a full collection, at least: 64 MiB.
 *
 * Why: a process that relays bytes allocates a Buffer for every read, 100-200 MB a second in a
 * bulk transfer. On a small heap (the hub, the agent and the proxy each live on 10-20 MB) V8
 * sets the next full collection 15-16 MiB above what is live, and starts marking early once
 * that room is no larger than its young generation, which such a transfer grows to its 16 MiB
 * most: a full collection every 100-200 ms, 30-40 in each process per 512 MiB moved, their
 * marking threads a quarter of the hub's CPU (`perf`; docs/benchmark.md, "The garbage
 * collector's floor"). Node's `--initial-old-space-size=64` puts a floor under that limit and
 * none happen, but it is a flag of the `node` command line, which a `dstream` started from its
 * `#!/usr/bin/env node` line cannot pass (`env -S` is not in BusyBox) and NODE_OPTIONS may not
 * carry. V8 reads `--heap-growing-percent` each time it sets the limit, so the same floor is
 * kept from inside: after every full collection the next limit's growth factor is set to reach
 * the floor from what is live, and left to V8 (0) once what is live is past it.
 */
export const heapFloorBytes = 64 * 1024 * 1024;

/**
 * The `--heap-growing-percent` that sets V8's next full collection at `floorBytes` when
 * `liveBytes` are live in the old generation; 0 (V8's own factor) once they reach the floor.
 */
export function growingPercentFor(liveBytes: number, floorBytes: number = heapFloorBytes): number {
  if (liveBytes >= floorBytes) return 0;
  return Math.ceil((floorBytes / Math.max(liveBytes, 1024 * 1024) - 1) * 100);
}

/** Bytes live in V8's old generation now: every space but the young generation's. */
function oldGenerationBytes(): number {
  let bytes = 0;
  for (const space of getHeapSpaceStatistics())
    if (!space.space_name.startsWith('new_')) bytes += space.space_used_size;
  return bytes;
}

/** A 'gc' entry carries the kind of collection in its `detail` (Node's own field). */
function isFullCollection(entry: PerformanceEntry): boolean {
  const { detail } = entry as PerformanceEntry & { detail?: NodeGCPerformanceDetail };
  return detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR;
}

/**
 * Keep V8's old generation from being collected below `floorBytes` (see `heapFloorBytes`) for
 * the life of the process: sets the growth factor now and after every full collection.
 */
export function keepHeapFloor(floorBytes: number = heapFloorBytes): void {
  let percent = -1;
  const apply = (): void => {
    const next = growingPercentFor(oldGenerationBytes(), floorBytes);
    if (next === percent) return;
    percent = next;
    setFlagsFromString(`--heap-growing-percent=${next}`);
  };
  apply();
  // A 'gc' entry comes after each collection; only a full one sets the next limit.
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (isFullCollection(entry)) return apply();
  });
  observer.observe({ entryTypes: ['gc'] });
}
