import { readFileSync } from 'node:fs';

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
