import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseConnectionString } from '../../src/auth/connection-string.js';
import { hasValidSignature, parseSas, SasParseError, signSas } from '../../src/auth/sas.js';
import { DstreamError } from '../../src/errors.js';
import { parseAgentMessage, parseHubMessage } from '../../src/protocol/control-messages.js';
import { deviceIdProblem, isValidDeviceId } from '../../src/protocol/identifiers.js';

const idChars = [..."ABCXYZabcxyz0189-.:+%_#*?!(),=@$'"];
const validId = fc.string({ unit: fc.constantFrom(...idChars), minLength: 1, maxLength: 128 });
const hostile = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: fc.constantFrom(...';=&%\n\r\0 /\\\'"{}[]:,'), maxLength: 100 }),
);
const key = fc
  .uint8Array({ minLength: 16, maxLength: 64 })
  .map((b) => Buffer.from(b).toString('base64'));
const runs = { numRuns: 500 };

/** Runs `f`; an exception is fine only if it is one of the expected classes. */
function onlyExpected(
  f: () => unknown,
  ...expected: (abstract new (...args: never[]) => Error)[]
): void {
  try {
    f();
  } catch (error) {
    if (!expected.some((E) => error instanceof E)) throw error;
  }
}

describe('property: parsers meet hostile input', () => {
  it('device IDs: valid exactly when every character is in the alphabet and 1-128 long', () => {
    fc.assert(
      fc.property(validId, (id) => isValidDeviceId(id) && deviceIdProblem(id) === undefined),
      runs,
    );
    fc.assert(
      fc.property(hostile, (s) => {
        const ok =
          s.length >= 1 &&
          s.length <= 128 &&
          [...s].every((c) => idChars.includes(c) || /[A-Za-z0-9]/.test(c));
        return isValidDeviceId(s) === ok && (deviceIdProblem(s) === undefined) === ok;
      }),
      runs,
    );
  });

  it('SAS: any text parses or throws SasParseError, never anything else', () => {
    fc.assert(
      fc.property(hostile, (s) => {
        onlyExpected(() => parseSas(s), SasParseError);
        onlyExpected(() => parseSas(`SharedAccessSignature ${s}`), SasParseError);
      }),
      runs,
    );
  });

  it('SAS: a signed token verifies with its key only, and any change breaks it', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 200 }),
        key,
        key,
        fc.integer({ min: 0, max: 4e9 }),
        (resource, k1, k2, expiry) => {
          const token = parseSas(signSas({ resource, key: k1, expiry }));
          expect(token.resource).toBe(resource);
          expect(hasValidSignature(token, k1)).toBe(true);
          if (Buffer.from(k1, 'base64').compare(Buffer.from(k2, 'base64')) !== 0)
            expect(hasValidSignature(token, k2)).toBe(false);
          expect(hasValidSignature({ ...token, expiry: expiry + 1 }, k1)).toBe(false);
          expect(
            hasValidSignature({ ...token, encodedResource: token.encodedResource + 'x' }, k1),
          ).toBe(false);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('connection strings: any text parses or throws DstreamError; what parses is well-formed', () => {
    const fields = fc.array(
      fc.tuple(
        fc.constantFrom(
          'HostName',
          'DeviceId',
          'SharedAccessKey',
          'SharedAccessKeyName',
          'CertificateFingerprint',
          'UseTls',
          'Other',
        ),
        fc.oneof(hostile, key, validId, fc.constant('h:1')),
      ),
      { maxLength: 7 },
    );
    fc.assert(
      fc.property(
        fc.oneof(
          hostile,
          fields.map((f) => f.map(([k, v]) => `${k}=${v}`).join(';')),
        ),
        (text) => {
          let cs;
          try {
            cs = parseConnectionString(text);
          } catch (error) {
            if (!(error instanceof DstreamError) || error.code !== 'ERR_CONNECTION_STRING_INVALID')
              throw error;
            return;
          }
          expect(Buffer.from(cs.sharedAccessKey, 'base64').length).toBeGreaterThanOrEqual(16);
          expect(cs.hub.port).toBeGreaterThanOrEqual(1);
          expect(cs.hub.port).toBeLessThanOrEqual(65535);
          if (cs.kind === 'device') expect(isValidDeviceId(cs.deviceId)).toBe(true);
          if (cs.hub.fingerprint !== undefined)
            expect(cs.hub.fingerprint).toMatch(/^[0-9A-F]{64}$/);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('control messages: never throw; what is accepted has the schema', () => {
    const messageish = fc.oneof(
      hostile,
      fc.json(),
      fc
        .record({
          type: fc.constantFrom('stream-response', 'stream-request', 'x'),
          requestId: fc.oneof(fc.string({ maxLength: 80 }), fc.integer()),
          accepted: fc.oneof(fc.boolean(), fc.string()),
          reason: fc.oneof(fc.string({ maxLength: 400 }), fc.integer(), fc.constant(undefined)),
          streamName: fc.oneof(validId, hostile),
          url: fc.oneof(fc.constant('wss://h/bridges/x'), hostile),
          authorizationToken: fc.oneof(fc.string({ maxLength: 600 }), fc.integer()),
        })
        .map((o) => JSON.stringify(o)),
    );
    fc.assert(
      fc.property(messageish, (text) => {
        const a = parseAgentMessage(text);
        if (a) {
          expect(a.requestId).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
          expect(typeof a.accepted).toBe('boolean');
          if (a.reason !== undefined) expect(a.reason.length).toBeLessThanOrEqual(256);
          // eslint-disable-next-line no-control-regex
          if (a.reason !== undefined) expect(a.reason).not.toMatch(/[\u0000-\u001f]/);
        }
        const h = parseHubMessage(text);
        if (h) {
          expect(isValidDeviceId(h.streamName)).toBe(true);
          expect(h.url).toMatch(/^wss?:\/\//);
          expect(h.authorizationToken.length).toBeLessThanOrEqual(512);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
