import { describe, expect, it } from 'vitest';
import { takeMessageBuffer } from '../../src/mux/message-pool.js';

describe('carrier message buffers', () => {
  it('hands a written-out buffer to the next large message, not to small ones', () => {
    const first = takeMessageBuffer(40_000);
    expect(first.message.length).toBe(40_000);
    first.message.fill(1);
    first.release();
    const second = takeMessageBuffer(65_000);
    expect(second.message.length).toBe(65_000);
    expect(second.message.buffer).toBe(first.message.buffer);
    second.release();
    // A small message comes from Node's own pool, and releasing it gives nothing back.
    const small = takeMessageBuffer(100);
    expect(small.message.length).toBe(100);
    expect(small.message.buffer).not.toBe(first.message.buffer);
    small.release();
    const third = takeMessageBuffer(20_000);
    expect(third.message.buffer).toBe(first.message.buffer);
    third.release();
  });

  it('never hands out one buffer twice before it is released', () => {
    const taken = Array.from({ length: 8 }, () => takeMessageBuffer(50_000));
    expect(new Set(taken.map((t) => t.message.buffer)).size).toBe(8);
    for (const t of taken) t.release();
  });

  it('keeps at most 32 spare buffers for the whole process', () => {
    const taken = Array.from({ length: 40 }, () => takeMessageBuffer(50_000));
    const buffers = new Set(taken.map((t) => t.message.buffer));
    for (const t of taken) t.release();
    const again = Array.from({ length: 40 }, () => takeMessageBuffer(50_000));
    const reused = again.filter((t) => buffers.has(t.message.buffer)).length;
    expect(reused).toBe(32);
    for (const t of again) t.release();
  });

  it('a message larger than a pooled buffer gets its own', () => {
    const big = takeMessageBuffer(200_000);
    expect(big.message.length).toBe(200_000);
    big.release();
    const next = takeMessageBuffer(50_000);
    expect(next.message.buffer).not.toBe(big.message.buffer);
    next.release();
  });
});
