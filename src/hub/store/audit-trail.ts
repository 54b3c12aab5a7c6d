import type { AuditLog, AuditRecord } from './audit-log.js';

/** The audit records the hub keeps in memory for `GET /audit` (the file keeps them all). */
export const defaultAuditTrailSize = 10_000;

/** A query of `GET /audit`: every field narrows it; records come newest first. */
export interface AuditQuery {
  readonly device?: string | undefined;
  readonly outcome?: string | undefined;
  /** ISO times: records at or after `since`, before `until`. */
  readonly since?: number | undefined;
  readonly until?: number | undefined;
  /** The `next` cursor of the page before: records older than it. */
  readonly before?: number | undefined;
  readonly limit: number;
}

/** A record with its place in the trail (the cursor of `GET /audit`). */
export interface NumberedRecord {
  readonly seq: number;
  readonly record: AuditRecord;
}

export interface AuditPage {
  readonly records: readonly NumberedRecord[];
  /** Pass as `before` for the next (older) page; absent on the last page. */
  readonly next: number | undefined;
}

/**
 * The newest audit records, in a ring of `size`, numbered in the order they were written,
 * queried newest first with filters and a cursor. Memory is bounded by `size` records (about
 * 300 bytes each); older ones are only in the audit file.
 */
export class AuditTrail {
  readonly #ring: (NumberedRecord | undefined)[];
  #nextSeq = 1;
  readonly #listeners = new Set<(entry: NumberedRecord) => void>();

  constructor(readonly size: number = defaultAuditTrailSize) {
    this.#ring = new Array<NumberedRecord | undefined>(size);
  }

  /** Keep a record (the newest); the oldest is forgotten once the ring is full. */
  add(record: AuditRecord): void {
    const entry = { seq: this.#nextSeq++, record };
    this.#ring[entry.seq % this.size] = entry;
    for (const listener of this.#listeners) listener(entry);
  }

  /** Call `listener` with each record added; returns an unwatch. */
  watch(listener: (entry: NumberedRecord) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The records that match, newest first, at most `limit`, older than `before`. O(size). */
  query(q: AuditQuery): AuditPage {
    const records: NumberedRecord[] = [];
    const newest = this.#nextSeq - 1;
    const oldest = Math.max(1, this.#nextSeq - this.size);
    const start = q.before === undefined ? newest : Math.min(newest, q.before - 1);
    for (let seq = start; seq >= oldest; seq--) {
      const entry = this.#ring[seq % this.size];
      if (!entry || entry.seq !== seq || !matches(entry.record, q)) continue;
      if (records.length === q.limit) return { records, next: records.at(-1)?.seq };
      records.push(entry);
    }
    return { records, next: undefined };
  }

  /** An audit log that writes to `log` and keeps each record here too. */
  tee(log: AuditLog): AuditLog {
    return {
      ...log,
      write: (record) => {
        log.write(record);
        this.add(record);
      },
    };
  }
}

function matches(record: AuditRecord, q: AuditQuery): boolean {
  if (q.device !== undefined && record.device !== q.device) return false;
  if (q.outcome !== undefined && record.outcome !== q.outcome) return false;
  if (q.since !== undefined || q.until !== undefined) {
    const time = Date.parse(record.time);
    if (q.since !== undefined && !(time >= q.since)) return false;
    if (q.until !== undefined && !(time < q.until)) return false;
  }
  return true;
}
