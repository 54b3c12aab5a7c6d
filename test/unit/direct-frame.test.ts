import { describe, expect, it } from 'vitest';
import * as ws from 'ws';
import {
  frameHeaderLength,
  frameHeaderRoom,
  writeFrameHeader,
} from '../../src/mux/direct-frame.js';

/** The header `ws` itself puts in front of a final binary frame of `size` bytes. */
function wsHeader(size: number, masked: boolean): Buffer {
  // ws's own framing (its ESM entry exports Sender; its types do not declare it).
  const { Sender } = ws as unknown as {
    Sender: { frame(data: Buffer, options: Record<string, unknown>): Buffer[] };
  };
  const frame = Sender.frame(Buffer.alloc(size), {
    fin: true,
    opcode: 2,
    mask: masked,
    // What openWebSocket has ws send on TLS: an all-zero key, so the payload stays as it is.
    generateMask: (mask: Buffer) => void mask.fill(0),
    maskBuffer: Buffer.alloc(4),
    readOnly: false,
    rsv1: false,
  });
  return frame[0] as Buffer;
}

describe('a carrier message framed for its socket', () => {
  for (const masked of [false, true])
    for (const size of [1, 125, 126, 127, 65535, 65536, 65536 + 16 * 1024 + 100])
      it(`writes the header ws would for ${size} bytes, ${masked ? 'a client' : 'a server'}'s`, () => {
        const buffer = Buffer.alloc(frameHeaderRoom + 4, 0xee);
        const start = writeFrameHeader(buffer, frameHeaderRoom, size, masked);
        const expected = wsHeader(size, masked);
        expect(frameHeaderLength(size, masked)).toBe(expected.length);
        expect(start).toBe(frameHeaderRoom - expected.length);
        expect(buffer.subarray(start, frameHeaderRoom).toString('hex')).toBe(
          expected.toString('hex'),
        );
        // Nothing written outside the header.
        expect(buffer.subarray(0, start).every((b) => b === 0xee)).toBe(true);
        expect(buffer.subarray(frameHeaderRoom).every((b) => b === 0xee)).toBe(true);
      });
});
