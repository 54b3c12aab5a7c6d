import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hasValidSignature, parseSas, SasParseError, signSas } from '../../src/auth/sas.js';

const key = Buffer.alloc(32, 7).toString('base64');
const otherKey = Buffer.alloc(32, 8).toString('base64');

describe('SAS tokens', () => {
  it('signs in IoT Hub format: HMAC-SHA256 over url-encoded sr + "\\n" + se', () => {
    const token = signSas({ resource: 'hub.local:8443/devices/pi-01', key, expiry: 1_900_000_000 });
    const sr = encodeURIComponent('hub.local:8443/devices/pi-01');
    const sig = createHmac('sha256', Buffer.from(key, 'base64'))
      .update(`${sr}\n1900000000`)
      .digest('base64');
    expect(token).toBe(
      `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=1900000000`,
    );
  });

  it('round-trips through parse and verifies with the right key only', () => {
    const token = parseSas(
      signSas({ resource: 'hub:443', key, expiry: 1_900_000_000, keyName: 'service' }),
    );
    expect(token).toMatchObject({ resource: 'hub:443', expiry: 1_900_000_000, keyName: 'service' });
    expect(hasValidSignature(token, key)).toBe(true);
    expect(hasValidSignature(token, otherKey)).toBe(false);
  });

  it('rejects a tampered resource, expiry or signature', () => {
    const text = signSas({ resource: 'hub/devices/a', key, expiry: 1_900_000_000 });
    const resource = parseSas(text.replace('devices%2Fa', 'devices%2Fb'));
    expect(resource.resource).toBe('hub/devices/b');
    expect(hasValidSignature(resource, key)).toBe(false);
    expect(hasValidSignature(parseSas(text.replace('se=1900000000', 'se=1900000001')), key)).toBe(
      false,
    );
    const sig = parseSas(text);
    const flipped = Buffer.from(sig.signature, 'base64');
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    expect(hasValidSignature({ ...sig, signature: flipped.toString('base64') }, key)).toBe(false);
    expect(hasValidSignature({ ...sig, signature: 'short' }, key)).toBe(false);
  });

  it('a signature checked good before is still checked against the key, resource and expiry', () => {
    const text = signSas({ resource: 'hub:443', key, expiry: 1_900_000_123, keyName: 'svc' });
    const token = parseSas(text);
    for (let i = 0; i < 3; i++) expect(hasValidSignature(token, key)).toBe(true);
    // The same token, now checked against a rotated key, another resource or expiry: refused.
    expect(hasValidSignature(token, otherKey)).toBe(false);
    expect(hasValidSignature({ ...token, expiry: token.expiry + 1 }, key)).toBe(false);
    expect(hasValidSignature({ ...token, encodedResource: 'hub%3A444' }, key)).toBe(false);
    const flipped = Buffer.from(token.signature, 'base64');
    flipped[5] = (flipped[5] ?? 0) ^ 1;
    expect(hasValidSignature({ ...token, signature: flipped.toString('base64') }, key)).toBe(false);
    // Hundreds of other good tokens in between: the first is checked anew, still good.
    for (let e = 0; e < 300; e++)
      expect(
        hasValidSignature(
          parseSas(signSas({ resource: 'h', key, expiry: 1_800_000_000 + e })),
          key,
        ),
      ).toBe(true);
    expect(hasValidSignature(token, key)).toBe(true);
    expect(hasValidSignature(token, otherKey)).toBe(false);
  });

  it('a token parsed before is the same frozen object, still checked against the key', () => {
    const text = signSas({ resource: 'hub:443', key, expiry: 1_900_000_456, keyName: 'svc' });
    const token = parseSas(text);
    expect(parseSas(text)).toBe(token);
    expect(Object.isFrozen(token)).toBe(true);
    expect(hasValidSignature(token, key)).toBe(true);
    expect(hasValidSignature(token, otherKey)).toBe(false);
    // A copy is a token of its own: checked in full, so a changed field is refused.
    expect(hasValidSignature({ ...token }, key)).toBe(true);
    expect(hasValidSignature({ ...token, expiry: token.expiry + 1 }, key)).toBe(false);
    // Malformed text is never remembered: it throws every time.
    const bad = text.replace('se=1900000456', 'se=soon');
    for (let i = 0; i < 2; i++) expect(() => parseSas(bad)).toThrow('expiry (se) is not a number');
    // Past the bound the text is parsed anew, to an equal token.
    for (let e = 0; e < 300; e++)
      parseSas(signSas({ resource: 'h', key, expiry: 1_700_000_000 + e }));
    const again = parseSas(text);
    expect(again).not.toBe(token);
    expect(again).toEqual(token);
    expect(hasValidSignature(again, key)).toBe(true);
  });

  it.each([
    ['', 'expected "SharedAccessSignature'],
    ['Bearer abc', 'expected "SharedAccessSignature'],
    ['SharedAccessSignature sr=a&sig=b', 'needs sr, sig and se'],
    ['SharedAccessSignature sr=a&sig=b&se=soon', 'expiry (se) is not a number'],
    ['SharedAccessSignature sr=a&sr=b&sig=c&se=1', "'sr' appears twice"],
    ['SharedAccessSignature sr=%E0%A4%A&sig=b&se=1', 'not valid URL encoding'],
    ['SharedAccessSignature garbage', 'malformed token field'],
    ['SharedAccessSignature ' + 'a'.repeat(5000), 'too long'],
    ['SharedAccessSignature sr=a&sig=b&se=1', 'sig) is not canonical base64'],
  ])('refuses malformed token %j', (text, message) => {
    expect(() => parseSas(text)).toThrow(SasParseError);
    expect(() => parseSas(text)).toThrow(message);
  });

  it('a valid signature with anything appended, or re-padded, is refused (strict base64)', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const text = signSas({ resource: 'hub/devices/a', key, expiry: 1_900_000_000 });
    expect(hasValidSignature(parseSas(text), key)).toBe(true);
    const sig = /sig=([^&]+)/.exec(text)?.[1] ?? '';
    const bare = decodeURIComponent(sig);
    // Node's lenient decoder reads each of these as the same 32 bytes.
    for (const junk of ['!!', encodeURIComponent('$junk'), 'AAAA', '%20', '.'])
      expect(() => parseSas(text.replace(sig, sig + junk))).toThrow(
        'the token signature (sig) is not canonical base64',
      );
    expect(() => parseSas(text.replace(sig, encodeURIComponent(bare.replace(/=$/, ''))))).toThrow(
      'not canonical base64',
    );
    // Same bytes, non-canonical final character (unused low bits set).
    const last = bare.at(-2) ?? 'A';
    const other = String.fromCharCode(last.charCodeAt(0) + 1);
    const sloppy = bare.slice(0, -2) + other + '=';
    expect(Buffer.from(sloppy, 'base64').equals(Buffer.from(bare, 'base64'))).toBe(true);
    expect(() => parseSas(text.replace(sig, encodeURIComponent(sloppy)))).toThrow(
      'not canonical base64',
    );
  });
});
