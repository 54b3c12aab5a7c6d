import { muxHeaderBytes, muxMaxPayload } from '../protocol/mux-frames.js';
import { frameHeaderRoom } from './direct-frame.js';

/** What one carrier message carries at most before it is sent: several small frames, or one full data frame. */
export const batchBytes = 64 * 1024;

/**
 * Bytes of a message being put together: room for its WebSocket frame header
 * (direct-frame.ts), a batch, the frame that crossed its end, and some.
 */
export const messageCapacity = frameHeaderRoom + batchBytes + muxHeaderBytes + muxMaxPayload + 4096;

/**
 * Messages smaller than this are copied out of the buffer they were put together in, into one
 * of their own size (from Node's slab for small ones), and the buffer goes straight back: a
 * small message in flight does not hold a whole buffer.
 */
export const pooledFrom = 16 * 1024;

/** Spare buffers kept for the whole process: a few busy carriers' messages in flight. */
const maxSpare = 32;

const spare: Buffer[] = [];

/**
 * A buffer of `messageCapacity` bytes to put one outgoing carrier message together in; give it
 * back with `releaseMessageBuffer` once nothing refers to it (its message written out).
 *
 * Why: a bulk stream's frames are copied into one 64 KiB message per send, and a new buffer of
 * that size is memory outside the JS heap, which V8 answers with more frequent garbage
 * collection (bench scenario 1 through the multiplexed carrier spent about twice the
 * per-stream WebSocket carrier's GC time per byte). Reusing the buffers once the WebSocket has
 * written them (the send callback) takes that allocation out of the data path. At most
 * `maxSpare` buffers (2.6 MiB) are kept, for the whole process.
 */
export function takeMessageBuffer(): Buffer {
  return spare.pop() ?? Buffer.allocUnsafeSlow(messageCapacity);
}

/** Give back a buffer from `takeMessageBuffer`, once; anything else is ignored. */
export function releaseMessageBuffer(buffer: Buffer): void {
  if (buffer.length !== messageCapacity || buffer.byteOffset !== 0) return;
  if (spare.length < maxSpare) spare.push(buffer);
}
