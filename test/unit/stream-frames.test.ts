import { describe, expect, it } from 'vitest';
import { AckTracker } from '../../src/stream/ack-tracker.js';
import {
  formatStreamFrame,
  parseStreamFrame,
  type StreamFrame,
} from '../../src/protocol/stream-frames.js';

describe('v2 stream frames', () => {
  it('round-trip', () => {
    const frames: StreamFrame[] = [
      { type: 'ack', received: 0 },
      { type: 'ack', received: Number.MAX_SAFE_INTEGER },
      { type: 'eof', sent: 12345 },
      { type: 'resume', received: 7 },
      { type: 'ticket', ticket: 'v1.abc.def' },
    ];
    for (const f of frames) expect(parseStreamFrame(formatStreamFrame(f))).toEqual(f);
  });

  it('refuse anything else exactly', () => {
    for (const text of [
      '',
      'ack',
      '[]',
      'null',
      '{"type":"eof"}', // v1's frame is not v2's
      '{"type":"ack","received":-1}',
      '{"type":"ack","received":1.5}',
      '{"type":"ack","received":"1"}',
      '{"type":"ack","received":9007199254740992}',
      '{"type":"ack","received":1,"extra":true}',
      '{"type":"ack","sent":1}', // two keys, not the ones an ack has
      '{"type":"eof","received":1}',
      '{"type":"plain","peer":"v1","received":1}',
      '{"type":"ticket","ticket":"v1.x","__proto__":{}}',
      '{"type":"resume"}',
      '{"type":"ticket","ticket":5}',
      `{"type":"ticket","ticket":"${'x'.repeat(1025)}"}`,
      '{"type":"reset"}',
      `{"type":"ack","received":1${' '.repeat(3000)}}`,
    ])
      expect(parseStreamFrame(text), text).toBeUndefined();
  });
});

describe('AckTracker', () => {
  it('acknowledges every N bytes at once, and the rest when idle', () => {
    const t = new AckTracker(100);
    expect(t.onData(60)).toBe(false);
    expect(t.due).toBe(true);
    expect(t.onData(60)).toBe(true);
    expect(t.take()).toBe(120);
    expect(t.due).toBe(false);
    expect(t.onData(10)).toBe(false);
    expect(t.take()).toBe(130); // the idle timer's acknowledgement
    expect(t.received).toBe(130);
    expect(() => new AckTracker(0)).toThrow(RangeError);
  });
});
