import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readAuditTail, type AuditRecord } from '../../src/hub/store/audit-log.js';
import { AuditTrail } from '../../src/hub/store/audit-trail.js';

const record = (
  device: string,
  outcome: AuditRecord['outcome'] = 'completed',
  time = '2026-12-01T00:00:00.000Z',
): AuditRecord => ({
  time,
  policy: 'service',
  device,
  stream: '22',
  outcome,
  reason: undefined,
  bytesToDevice: 0,
  bytesFromDevice: 0,
  durationMs: 0,
  remote: undefined,
});

describe('AuditTrail', () => {
  it('keeps the newest `size` records and pages them newest first with a cursor', () => {
    const trail = new AuditTrail(10);
    for (let i = 0; i < 25; i++) trail.add(record(`d${i}`, i % 2 === 0 ? 'completed' : 'rejected'));
    const all = trail.query({ limit: 100 });
    expect(all.records.map((e) => e.record.device)).toEqual(
      Array.from({ length: 10 }, (_, i) => `d${24 - i}`),
    );
    expect(all.next).toBeUndefined();
    const first = trail.query({ limit: 3, outcome: 'rejected' });
    expect(first.records.map((e) => e.record.device)).toEqual(['d23', 'd21', 'd19']);
    const second = trail.query({ limit: 3, outcome: 'rejected', before: first.next });
    expect(second.records.map((e) => e.record.device)).toEqual(['d17', 'd15']);
    expect(second.next).toBeUndefined();
    // A cursor from records already forgotten names nothing older.
    expect(trail.query({ limit: 3, before: 5 }).records).toEqual([]);
  });

  it('filters by time: since inclusive, until exclusive', () => {
    const trail = new AuditTrail(10);
    trail.add(record('a', 'completed', '2026-12-01T00:00:00.000Z'));
    trail.add(record('b', 'completed', '2026-12-02T00:00:00.000Z'));
    trail.add(record('c', 'completed', '2026-12-03T00:00:00.000Z'));
    const q = trail.query({
      limit: 10,
      since: Date.parse('2026-12-02T00:00:00.000Z'),
      until: Date.parse('2026-12-03T00:00:00.000Z'),
    });
    expect(q.records.map((e) => e.record.device)).toEqual(['b']);
  });
});

describe('readAuditTail', () => {
  it('reads the last records back, skipping lines that are not records', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dstream-tail-'));
    try {
      const file = join(dir, 'audit.log');
      const lines = [
        JSON.stringify(record('one')),
        'not json',
        '{"time": 1}',
        JSON.stringify(record('two')),
        '{"torn": ',
        JSON.stringify(record('three')),
      ];
      writeFileSync(file, lines.join('\n') + '\n');
      expect(readAuditTail(file, 10).map((r) => r.device)).toEqual(['one', 'two', 'three']);
      expect(readAuditTail(file, 2).map((r) => r.device)).toEqual(['two', 'three']);
      expect(readAuditTail(join(dir, 'missing.log'), 10)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
