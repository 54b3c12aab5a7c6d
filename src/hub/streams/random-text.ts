import { randomFillSync } from 'node:crypto';

/** Random bytes drawn from the system's generator 4 KiB at a time. */
const pool = Buffer.alloc(4096);
let used = pool.length;

/**
 * `bytes` random bytes, base64url: stream ids, stream tokens, request ids.
 *
 * Why a pool: each stream takes four or five such values, and a call into the generator per
 * value was about 4% of the hub's CPU at a thousand new streams a second; one call per 4 KiB
 * (as Node's own randomUUID does per 128 ids) takes that away. No byte is handed out twice.
 */
export function randomText(bytes: number): string {
  if (bytes > pool.length) throw new RangeError('randomText: at most 4096 bytes');
  if (used + bytes > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const text = pool.toString('base64url', used, used + bytes);
  used += bytes;
  return text;
}
