import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Resident memory of a process, bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m?.[1] ? Number(m[1]) * 1024 : NaN;
}

/** User + system CPU seconds a process has used (Linux /proc; clock ticks of 1/100 s). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * A process's main thread (its JavaScript) as the scheduler saw it (Linux /proc/PID/schedstat):
 * nanoseconds on a core, nanoseconds runnable but waiting for one, and times it was switched in.
 */
export function schedStats(pid: number): { runNs: number; waitNs: number; slices: number } {
  const [run, wait, slices] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ');
  return { runNs: Number(run), waitNs: Number(wait), slices: Number(slices) };
}

/** The p-th percentile (0-100) of a list of numbers, by nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? NaN;
}

/** Milliseconds since `start` (from process.hrtime.bigint()). */
export function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** This process's limit on open descriptors (the soft RLIMIT_NOFILE; Linux /proc). */
export function openFileLimit(): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m?.[1] ? Number(m[1]) : Infinity;
}

/**
 * Raise this process's descriptor limit to `wanted` where it may (root, with util-linux's
 * prlimit), so that the stacks it starts afterwards inherit it; returns the limit now.
 */
export function raiseOpenFileLimit(wanted: number): number {
  if (openFileLimit() >= wanted) return openFileLimit();
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${wanted}:${wanted}`], {
      stdio: 'ignore',
    });
  } catch {
    // Not root, or no prlimit: the caller holds fewer streams.
  }
  return openFileLimit();
}
