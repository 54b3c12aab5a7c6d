import { closeSync, openSync, writeSync } from 'node:fs';

/** What became of a stream attempt. */
export type AuditOutcome =
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

/** One JSON line per stream attempt. Never a key or a token. */
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

/** An audit log that keeps nothing (tests, --audit-log off). */
export const noAuditLog: AuditLog = {
  write: () => undefined,
  reopen: () => undefined,
  close: () => Promise.resolve(),
};
