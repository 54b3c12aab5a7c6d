import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  signResumeTicket,
  verifyResumeTicket,
  type ResumeClaims,
} from '../../src/protocol/resume-ticket.js';

const key = randomBytes(32);
const claims: ResumeClaims = {
  streamId: 'n1.abc',
  deviceId: 'pi-01',
  streamName: '22',
  side: 'device',
  generation: 3,
  expiresAt: 2_000_000_000,
};

describe('resume tickets', () => {
  it('verify with the key, for their side, until they expire', () => {
    const t = signResumeTicket(key, claims);
    expect(t).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(verifyResumeTicket([key], t, 'device', 1_999_999_999)).toEqual({ ok: true, claims });
    // The hub learns the side from the ticket itself.
    expect(verifyResumeTicket([key], t, undefined, 0)).toEqual({ ok: true, claims });
    // During a key rotation the old key still verifies.
    expect(verifyResumeTicket([randomBytes(32), key], t, 'device', 0).ok).toBe(true);
  });

  it('refuse the other side, expiry, another key, tampering and junk, each by name', () => {
    const t = signResumeTicket(key, claims);
    const problem = (ticket: string, side: 'service' | 'device' = 'device', now = 0): unknown => {
      const r = verifyResumeTicket([key], ticket, side, now);
      return r.ok ? 'ok' : [r.problem, r.message];
    };
    expect(problem(t, 'service')).toEqual([
      'wrong-side',
      'the resume ticket is for the device side',
    ]);
    expect(problem(t, 'device', 2_000_000_001)).toEqual([
      'expired',
      'the resume window has passed',
    ]);
    expect(problem(signResumeTicket(randomBytes(32), claims))).toEqual([
      'bad-signature',
      'the resume ticket is not signed by this hub',
    ]);
    // Another stream's claims under this signature.
    const [, , sig] = t.split('.');
    const forged = `v1.${Buffer.from(JSON.stringify({ s: 'n1.other', d: 'pi-01', n: '22', w: 'device', g: 3, e: 2e9 })).toString('base64url')}.${sig ?? ''}`;
    expect(problem(forged)).toEqual([
      'bad-signature',
      'the resume ticket is not signed by this hub',
    ]);
    for (const junk of ['', 'v1.', 'v2.a.b', `${t}.x`, 'v1.a.b', `v1.${'A'.repeat(2000)}.x`])
      expect(problem(junk), junk).toEqual(['malformed', 'not a resume ticket']);
  });

  it('a well-signed payload that is not claims is malformed', () => {
    const payload = Buffer.from('{"s":1}').toString('base64url');
    // Signed as the module signs, so only the claims' shape is wrong.
    const sig = createHmac('sha256', key).update(`v1.${payload}`).digest('base64url');
    expect(verifyResumeTicket([key], `v1.${payload}.${sig}`, 'device', 0)).toEqual({
      ok: false,
      problem: 'malformed',
      message: 'not a resume ticket',
    });
  });
});
