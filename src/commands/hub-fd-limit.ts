import { readFileSync } from 'node:fs';
import { DstreamError } from '../errors.js';

/**
 * The process's limit on open descriptors (RLIMIT_NOFILE), or undefined where it cannot be
 * read (no /proc, or unlimited). Node raises the soft limit to the hard one when it starts, so
 * the soft limit read here is the most the hub can ever hold.
 */
export function openFileLimit(
  read: () => string = () => readFileSync('/proc/self/limits', 'utf8'),
): number | undefined {
  let text: string;
  try {
    text = read();
  } catch {
    return undefined;
  }
  const m = /^Max open files\s+(\d+|unlimited)\s+/m.exec(text);
  return m?.[1] === undefined || m[1] === 'unlimited' ? undefined : Number(m[1]);
}

/**
 * Descriptors kept back from client connections: the registry, the audit log, TLS files,
 * Redis, cluster hops and the sockets a stream opens outward.
 */
export function descriptorReserve(limit: number): number {
  return 64 + Math.ceil(limit * 0.05);
}

/** Client connections a hub with this descriptor limit may accept. */
export function connectionCeiling(limit: number): number {
  return Math.max(1, limit - descriptorReserve(limit));
}

/** The ceiling when the descriptor limit cannot be read. */
export const defaultMaxConnections = 10_000;

/**
 * --max-connections, checked against the descriptor limit so that the ceiling is reached (with
 * a log line) before accept() starts failing with EMFILE; by default as high as that allows.
 */
export function maxConnectionsFrom(
  requested: number | undefined,
  fdLimit: number | undefined,
): number {
  const ceiling = fdLimit === undefined ? undefined : connectionCeiling(fdLimit);
  if (requested === undefined) return ceiling ?? defaultMaxConnections;
  const n = requested;
  if (ceiling !== undefined && fdLimit !== undefined && n > ceiling)
    throw new DstreamError(
      'ERR_USAGE',
      `--max-connections ${n} is more than this process can hold: its descriptor limit (RLIMIT_NOFILE) is ${fdLimit}, and ${descriptorReserve(fdLimit)} are kept for files and outgoing sockets`,
      {
        hint: `Give at most ${ceiling}, or raise the limit (LimitNOFILE= in the systemd unit, ulimit -n as root).`,
      },
    );
  return n;
}
