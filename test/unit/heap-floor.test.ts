import { describe, expect, it } from 'vitest';
import { growingPercentFor, heapFloorBytes } from '../../src/runtime/heap-floor.js';

const MiB = 1024 * 1024;

describe('the heap floor', () => {
  it('sets the growth that puts the next full collection at the floor, 64 MiB', () => {
    expect(heapFloorBytes).toBe(64 * MiB);
    // 15 MiB live (a hub at rest): the limit goes to 15 * 4.27 = 64 MiB.
    expect(growingPercentFor(15 * MiB)).toBe(327);
    expect(growingPercentFor(32 * MiB)).toBe(100);
    expect(growingPercentFor(63 * MiB)).toBe(2);
    // A nearly empty heap is taken as 1 MiB: a finite factor.
    expect(growingPercentFor(0)).toBe(6300);
    expect(growingPercentFor(1024)).toBe(6300);
  });

  it('leaves V8 its own factor (0) once what is live reaches the floor', () => {
    expect(growingPercentFor(64 * MiB)).toBe(0);
    expect(growingPercentFor(500 * MiB)).toBe(0);
    expect(growingPercentFor(10 * MiB, 8 * MiB)).toBe(0);
    expect(growingPercentFor(4 * MiB, 8 * MiB)).toBe(100);
  });
});
