import { mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAuditLog, type AuditRecord } from '../../src/hub/store/audit-log.js';

const record = (device: string): AuditRecord => ({
  time: '2026-11-27T00:00:00.000Z',
  policy: 'service',
  device,
  stream: '22',
  outcome: 'completed',
  reason: undefined,
  bytesToDevice: 1,
  bytesFromDevice: 2,
  durationMs: 3,
  remote: '127.0.0.1',
});

describe('audit log file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dstream-audit-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('appends JSON lines (0600), and reopens after rotation on request', async () => {
    const file = join(dir, 'audit.log');
    const echoed: string[] = [];
    const log = createAuditLog({ file, echo: (l) => echoed.push(l) });
    log.write(record('a'));
    // logrotate moves the file away, then the hub gets SIGHUP.
    renameSync(file, `${file}.1`);
    log.reopen();
    log.write(record('b'));
    await log.close();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const first = readFileSync(`${file}.1`, 'utf8').trim().split('\n');
    const second = readFileSync(file, 'utf8').trim().split('\n');
    expect(first.map((l) => (JSON.parse(l) as AuditRecord).device)).toEqual(['a']);
    expect(second.map((l) => (JSON.parse(l) as AuditRecord).device)).toEqual(['b']);
    expect(echoed).toHaveLength(2);
  });
});
