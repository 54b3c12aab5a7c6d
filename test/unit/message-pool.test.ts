import { describe, expect, it } from 'vitest';
import {
  messageCapacity,
  releaseMessageBuffer,
  takeMessageBuffer,
} from '../../src/mux/message-pool.js';

describe('carrier message buffers', () => {
  it('hands a released buffer to the next message', () => {
    const first = takeMessageBuffer();
    expect(first.length).toBe(messageCapacity);
    first.fill(1);
    releaseMessageBuffer(first);
    const second = takeMessageBuffer();
    expect(second).toBe(first);
    releaseMessageBuffer(second);
  });

  it('never hands out one buffer twice before it is released', () => {
    const taken = Array.from({ length: 8 }, () => takeMessageBuffer());
    expect(new Set(taken.map((t) => t.buffer)).size).toBe(8);
    for (const t of taken) releaseMessageBuffer(t);
  });

  it('keeps at most 32 spare buffers for the whole process', () => {
    const taken = Array.from({ length: 40 }, () => takeMessageBuffer());
    const buffers = new Set(taken);
    for (const t of taken) releaseMessageBuffer(t);
    const again = Array.from({ length: 40 }, () => takeMessageBuffer());
    const reused = again.filter((t) => buffers.has(t)).length;
    expect(reused).toBe(32);
    for (const t of again) releaseMessageBuffer(t);
  });

  it('takes back nothing but a whole buffer of its own size', () => {
    const own = takeMessageBuffer();
    const message = own.subarray(0, 100);
    releaseMessageBuffer(message);
    releaseMessageBuffer(own.subarray(9));
    releaseMessageBuffer(Buffer.alloc(100));
    releaseMessageBuffer(own);
    const taken = Array.from({ length: 3 }, () => takeMessageBuffer());
    // Only `own` came back: the views and the foreign buffer were not kept as spares.
    expect(taken.filter((t) => t.length !== messageCapacity)).toEqual([]);
    expect(taken.filter((t) => t === own)).toHaveLength(1);
    for (const t of taken) releaseMessageBuffer(t);
  });
});
