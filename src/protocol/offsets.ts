/** A byte offset in a stream: a non-negative safe integer (2^53 bytes is 8 PiB). */
export function isSafeOffset(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
