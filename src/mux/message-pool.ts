import { muxHeaderBytes, muxMaxPayload } from '../protocol/mux-frames.js';

/** What one carrier message carries at most before it is sent: several small frames, or one full data frame. */
export const batchBytes = 64 * 1024;

/** A pooled buffer holds a batch plus the frame that crossed its end, and some `window` frames. */
const capacity = batchBytes + muxHeaderBytes + muxMaxPayload + 4096;

/** Messages smaller than this come from Node's own pool (a slab for small ones): not worth it. */
const pooledFrom = 16 * 1024;

/** Spare buffers kept for the whole process: a few busy carriers' messages in flight. */
const maxSpare = 32;

const spare: Buffer[] = [];

/**
 * A buffer for one outgoing carrier message of `size` bytes, and its release.
 *
 * Why: a bulk stream's frames are copied into one new 64 KiB message per send, and a new
 * buffer of that size is memory outside the JS heap, which V8 answers with more frequent
 * garbage collection (bench scenario 1 through the multiplexed carrier spent about twice the
 * per-stream WebSocket carrier's GC time per byte). Reusing the buffers once the WebSocket has
 * written them (the send callback) takes that allocation out of the data path. At most
 * `maxSpare` buffers (2.6 MiB) are kept, for the whole process.
 */
export function takeMessageBuffer(size: number): {
  readonly message: Buffer;
  readonly release: () => void;
} {
  if (size < pooledFrom || size > capacity) return { message: Buffer.allocUnsafe(size), release };
  const buffer = spare.pop() ?? Buffer.allocUnsafeSlow(capacity);
  return {
    message: buffer.subarray(0, size),
    release: () => {
      if (spare.length < maxSpare) spare.push(buffer);
    },
  };
}

const release = (): void => undefined;
