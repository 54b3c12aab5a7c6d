import { describe, expect, it } from 'vitest';
import { randomText } from '../../src/hub/streams/random-text.js';

describe('random text for ids and tokens', () => {
  it('gives base64url text of the asked-for bytes, never the same twice across refills', () => {
    const seen = new Set<string>();
    // 20,000 x 32 bytes: about 160 refills of the 4 KiB pool.
    for (let i = 0; i < 20_000; i++) {
      const text = randomText(32);
      expect(text).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(text, 'base64url').length).toBe(32);
      seen.add(text);
    }
    expect(seen.size).toBe(20_000);
    for (const n of [1, 9, 12, 33, 4096])
      expect(Buffer.from(randomText(n), 'base64url').length).toBe(n);
  });

  it('refuses more than the pool holds', () => {
    expect(() => randomText(4097)).toThrow(RangeError);
  });
});
