import { describe, expect, it } from 'vitest';
import { ReplayBuffer, ReplayOffsetError } from '../../src/stream/replay-buffer.js';

const bytes = (from: number, n: number): Buffer =>
  Buffer.from(Array.from({ length: n }, (_, i) => (from + i) % 251));

describe('ReplayBuffer', () => {
  it('keeps what was sent until acknowledged, and replays exactly the rest', () => {
    const b = new ReplayBuffer(1000);
    b.push(bytes(0, 100));
    b.push(bytes(100, 50));
    b.push(Buffer.alloc(0));
    b.push(bytes(150, 200));
    expect([b.sent, b.acked, b.size]).toEqual([350, 0, 350]);
    b.ack(120); // inside the second chunk
    expect([b.acked, b.size]).toEqual([120, 230]);
    expect(Buffer.concat(b.replayFrom(120))).toEqual(bytes(120, 230));
    // A resume offset further on also acknowledges.
    expect(Buffer.concat(b.replayFrom(300))).toEqual(bytes(300, 50));
    expect(b.acked).toBe(300);
    expect(b.replayFrom(350)).toEqual([]);
    expect(b.size).toBe(0);
  });

  it('reports full at capacity and may-resume below the low mark', () => {
    const b = new ReplayBuffer(100, 40);
    expect(b.push(bytes(0, 60))).toBe(true);
    expect(b.push(bytes(60, 60))).toBe(false); // 120 held: one chunk of slack over the bound
    expect(b.full).toBe(true);
    expect(b.ack(50)).toBe(false); // 70 held: still above 40
    expect(b.full).toBe(false);
    expect(b.ack(90)).toBe(true); // 30 held
  });

  it('refuses acknowledgements that go back or past what was sent', () => {
    const b = new ReplayBuffer(100);
    b.push(bytes(0, 10));
    b.ack(5);
    expect(() => b.ack(4)).toThrow(ReplayOffsetError);
    expect(() => b.ack(11)).toThrow('acknowledged offset 11 is outside 5..10');
    expect(() => b.replayFrom(-1)).toThrow(ReplayOffsetError);
    expect(() => b.ack(5.5)).toThrow(ReplayOffsetError);
    expect(b.acked).toBe(5);
  });

  it('stays exact across many small chunks and compactions', () => {
    const b = new ReplayBuffer(1 << 20);
    let sent = 0;
    for (let i = 0; i < 5000; i++) {
      b.push(bytes(sent, 7));
      sent += 7;
      if (i % 3 === 0) b.ack(sent - 5);
    }
    const from = b.acked;
    expect(Buffer.concat(b.replayFrom(from))).toEqual(bytes(from, sent - from));
  });

  it('checks its bounds', () => {
    expect(() => new ReplayBuffer(0)).toThrow('replay capacity must be a positive integer, not 0');
    expect(() => new ReplayBuffer(10, 11)).toThrow(RangeError);
  });
});
