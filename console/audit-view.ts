import { h, table } from './dom.js';
import { formatBytes, formatDuration, formatTime } from './format.js';
import type { AuditRecord } from './page.js';

/** Audit records as a table, newest first. */
export function auditTable(records: readonly AuditRecord[], empty: string): HTMLElement {
  return table(
    'Audit records',
    [
      'Time',
      'Outcome',
      'Device',
      'Stream',
      'Policy',
      'Client',
      'Bytes to / from',
      'Duration',
      'Reason',
    ],
    records.map((r) => [
      formatTime(r.time),
      h(
        'span',
        { class: `outcome ${/^[a-z-]+$/.test(r.outcome) ? r.outcome : 'other'}` },
        r.outcome,
      ),
      r.device,
      r.stream === '' ? '—' : r.stream,
      r.policy ?? '—',
      r.remote ?? '—',
      `${formatBytes(r.bytesToDevice)} / ${formatBytes(r.bytesFromDevice)}`,
      formatDuration(r.durationMs),
      r.reason ?? '',
    ]),
    empty,
  );
}
