import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

/** What became of a stream attempt. */
export type StreamOutcome =
  | 'completed'
  /** A resumable stream lost its socket; its ends are resuming it (another line follows). */
  | 'suspended'
  /** A suspended stream's halves met again (its end is another line). */
  | 'resumed'
  /** A suspended stream whose other half did not come back within the resume window. */
  | 'gave-up'
  | 'dropped'
  | 'rejected'
  | 'unauthorized'
  | 'forbidden'
  | 'not-found'
  | 'offline'
  | 'disabled'
  | 'timeout'
  | 'throttled'
  | 'unavailable'
  | 'invalid';

/** Every stream outcome, in the order metrics and docs list them. */
export const streamOutcomes: readonly StreamOutcome[] = [
  'completed',
  'suspended',
  'resumed',
  'gave-up',
  'dropped',
  'rejected',
  'unauthorized',
  'forbidden',
  'not-found',
  'offline',
  'disabled',
  'timeout',
  'throttled',
  'unavailable',
  'invalid',
];

/**
 * What an operator did through the REST API (the CLI or the console): one line each, with
 * the policy that did it and the address it came from. `stream` is empty for device actions.
 */
export type OperatorAction =
  | 'device-added'
  | 'device-updated'
  | 'device-enabled'
  | 'device-disabled'
  | 'device-key-regenerated'
  | 'device-removed'
  /** An operator ended an open stream (its own line, with its bytes, follows). */
  | 'stream-ended';

export const operatorActions: readonly OperatorAction[] = [
  'device-added',
  'device-updated',
  'device-enabled',
  'device-disabled',
  'device-key-regenerated',
  'device-removed',
  'stream-ended',
];

export type AuditOutcome = StreamOutcome | OperatorAction;

/** True for the outcome of a stream attempt, false for an operator's action. */
export const isStreamOutcome = (outcome: AuditOutcome): outcome is StreamOutcome =>
  !(operatorActions as readonly string[]).includes(outcome);

/** One JSON line per stream attempt or operator action. Never a key or a token. */
export interface AuditRecord {
  readonly time: string;
  readonly policy: string | undefined;
  readonly device: string;
  readonly stream: string;
  readonly outcome: AuditOutcome;
  readonly reason: string | undefined;
  readonly bytesToDevice: number;
  readonly bytesFromDevice: number;
  readonly durationMs: number;
  readonly remote: string | undefined;
}

/**
 * A record for what moved no bytes: a refusal, a rejection, a resumption. `durationMs` counts
 * from `startedAt` (default: now, for an instant event).
 */
export function auditEvent(
  fields: Pick<AuditRecord, 'policy' | 'device' | 'stream' | 'outcome' | 'reason' | 'remote'> & {
    readonly startedAt?: number;
  },
): AuditRecord {
  const now = Date.now();
  const startedAt = fields.startedAt ?? now;
  return {
    time: new Date(startedAt).toISOString(),
    policy: fields.policy,
    device: fields.device,
    stream: fields.stream,
    outcome: fields.outcome,
    reason: fields.reason,
    bytesToDevice: 0,
    bytesFromDevice: 0,
    durationMs: now - startedAt,
    remote: fields.remote,
  };
}

export interface AuditLog {
  write(record: AuditRecord): void;
  /** Reopen the file (after logrotate moved it; the hub does this on SIGHUP). */
  reopen(): void;
  close(): Promise<void>;
}

export interface AuditLogOptions {
  /** Append to this file (created 0600). */
  readonly file?: string | undefined;
  /** Also write each line here (the hub passes stderr). */
  readonly echo?: ((line: string) => void) | undefined;
}

/**
 * The hub's audit trail. Lines are written synchronously to a file opened for appending: each
 * line is one write(2) on an O_APPEND descriptor, so lines are never interleaved or torn, and
 * external rotation is safe (copytruncate, or move + reopen on SIGHUP). One write per stream
 * attempt is cheap next to the stream itself.
 */
export function createAuditLog(options: AuditLogOptions): AuditLog {
  let fd: number | undefined;
  const open = (): void => {
    if (options.file) fd = openSync(options.file, 'a', 0o600);
  };
  const closeFd = (): void => {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
  };
  open();
  return {
    write: (record) => {
      const line = JSON.stringify(record);
      try {
        if (fd !== undefined) writeSync(fd, line + '\n');
      } catch {
        // A full disk must not take the hub down; the line still goes to the echo, if any.
      }
      options.echo?.(line);
    },
    reopen: () => {
      closeFd();
      open();
    },
    close: () => {
      closeFd();
      return Promise.resolve();
    },
  };
}

/**
 * The last `max` records of an audit file, oldest first (a hub that restarts shows what
 * happened before it). Reads at most the file's last 8 MiB; lines that are not records (torn
 * by a crash, or hand-edited) are skipped. A missing file has none.
 */
export function readAuditTail(file: string, max: number): AuditRecord[] {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, 8 * 1024 * 1024);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    const lines = buffer.toString('utf8').split('\n');
    // A read that starts inside the file starts mid-line: that first piece is not a record.
    if (length < size) lines.shift();
    const records: AuditRecord[] = [];
    for (const line of lines) {
      const record = parseAuditLine(line);
      if (record) records.push(record);
    }
    return records.slice(-max);
  } finally {
    closeSync(fd);
  }
}

function parseAuditLine(line: string): AuditRecord | undefined {
  if (line.trim() === '') return undefined;
  try {
    const value = JSON.parse(line) as Partial<AuditRecord> | null;
    if (
      typeof value === 'object' &&
      value !== null &&
      typeof value.time === 'string' &&
      typeof value.device === 'string' &&
      typeof value.stream === 'string' &&
      typeof value.outcome === 'string'
    )
      return value as AuditRecord;
  } catch {
    // not a record
  }
  return undefined;
}

/** An audit log that keeps nothing (tests, --audit-log off). */
export const noAuditLog: AuditLog = {
  write: () => undefined,
  reopen: () => undefined,
  close: () => Promise.resolve(),
};
