import { createWriteStream, type WriteStream } from 'node:fs';

/** What became of a stream attempt. */
export type AuditOutcome =
  | 'completed'
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
 * The hub's audit trail. The file is opened for appending, so lines from a running hub are never
 * interleaved mid-line and external rotation (copytruncate, or move + SIGHUP) is safe.
 */
export function createAuditLog(options: AuditLogOptions): AuditLog {
  let stream: WriteStream | undefined;
  const open = (): void => {
    if (!options.file) return;
    stream = createWriteStream(options.file, { flags: 'a', mode: 0o600 });
    stream.on('error', () => undefined);
  };
  open();
  return {
    write: (record) => {
      const line = JSON.stringify(record);
      stream?.write(line + '\n');
      options.echo?.(line);
    },
    reopen: () => {
      stream?.end();
      open();
    },
    close: () =>
      new Promise((resolve) => {
        if (!stream) return resolve();
        stream.end(() => resolve());
      }),
  };
}

/** An audit log that keeps nothing (tests, --audit-log off). */
export const noAuditLog: AuditLog = {
  write: () => undefined,
  reopen: () => undefined,
  close: () => Promise.resolve(),
};
