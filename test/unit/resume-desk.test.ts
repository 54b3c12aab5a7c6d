import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { resumableStreamProtocol, streamProtocol } from '../../src/protocol/constants.js';
import { ResumeDesk } from '../../src/hub/streams/resume-desk.js';

const stream = { id: 'n1.abc', deviceId: 'pi-01', name: '22' };
const v2 = [resumableStreamProtocol, streamProtocol];

function desk(options: { bound?: number; allowed?: (id: string) => boolean } = {}): ResumeDesk {
  return new ResumeDesk({
    key: randomBytes(32),
    windowMs: 120_000,
    deviceAllowed: options.allowed ?? (() => true),
    memoryBound: options.bound,
  });
}

const refusal = (r: ReturnType<ResumeDesk['admit']>): unknown =>
  r.ok ? 'admitted' : [r.status, r.errorCode, r.message];
const status = (r: ReturnType<ResumeDesk['admit']>): unknown =>
  r.ok ? 'admitted' : [r.status, r.errorCode];

describe('the resume desk', () => {
  it('admits a ticket it issued once, then refuses it as spent (404, not counted as a guess)', () => {
    const d = desk();
    const ticket = d.issue(stream, 'device', 2);
    const first = d.admit(stream.id, ticket, v2);
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    expect(first.claims).toMatchObject({ streamId: stream.id, side: 'device', generation: 2 });
    expect(first.ticketKey).toBe('n1.abc|device|2');
    // Not spent until the halves pair: a retried attempt with the same ticket is admitted.
    expect(d.admit(stream.id, ticket, v2).ok).toBe(true);
    d.spend([first.ticketKey]);
    expect(refusal(d.admit(stream.id, ticket, v2))).toEqual([
      404,
      'StreamNotFound',
      'the resume ticket was already used',
    ]);
  });

  it('refuses forged and misdirected tickets with 401, and the rest by name', () => {
    const d = desk({ allowed: (id) => id !== 'gone' });
    const ticket = d.issue(stream, 'service', 1);
    expect(status(d.admit(stream.id, desk().issue(stream, 'service', 1), v2))).toEqual([
      401,
      'IotHubUnauthorizedAccess',
    ]);
    expect(refusal(d.admit('n1.other', ticket, v2))).toEqual([
      401,
      'IotHubUnauthorizedAccess',
      'the resume ticket is for another stream',
    ]);
    expect(refusal(d.admit(stream.id, ticket, [streamProtocol]))).toEqual([
      400,
      'ArgumentInvalid',
      `resuming needs the ${resumableStreamProtocol} subprotocol`,
    ]);
    const goneTicket = d.issue({ ...stream, deviceId: 'gone' }, 'service', 1);
    expect(refusal(d.admit(stream.id, goneTicket, v2))).toEqual([
      403,
      'DeviceDisabled',
      "device 'gone' is disabled or no longer registered",
    ]);
    d.finished(stream.id);
    expect(refusal(d.admit(stream.id, ticket, v2))).toEqual([
      404,
      'StreamNotFound',
      'the stream has ended',
    ]);
  });

  it('refuses tickets issued before the device was revoked, not those issued after', () => {
    const d = desk();
    const before = d.issue(stream, 'device', 1, 1_000_000);
    d.revoke(stream.deviceId, 2_000_000);
    expect(status(d.admit(stream.id, before, v2, 3_000_000))).toEqual([404, 'StreamNotFound']);
    const after = d.issue(stream, 'device', 2, 4_000_000);
    expect(d.admit(stream.id, after, v2, 5_000_000).ok).toBe(true);
  });

  it('forgets the oldest spent ticket past its bound, never the newest', () => {
    const d = desk({ bound: 3 });
    const tickets = [1, 2, 3, 4].map((g) => d.issue(stream, 'device', g));
    for (let g = 1; g <= 4; g++) d.spend([`${stream.id}|device|${g}`]);
    // Generations 2 to 4 are remembered; 1 was forgotten first.
    expect(d.admit(stream.id, tickets[0] ?? '', v2).ok).toBe(true);
    for (const t of tickets.slice(1)) expect(d.admit(stream.id, t, v2).ok).toBe(false);
  });
});
