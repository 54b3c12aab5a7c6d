/**
 * Every failure a user can cause or meet is a DstreamError with a stable code.
 * Only src/cli.ts turns these into coloured output and an exit code.
 */
export type ErrorCode =
  | 'ERR_USAGE'
  | 'ERR_CONNECTION_STRING_MISSING'
  | 'ERR_CONNECTION_STRING_INVALID'
  | 'ERR_HUB_UNREACHABLE'
  | 'ERR_TLS_FINGERPRINT_MISMATCH'
  | 'ERR_TLS_VERIFY'
  | 'ERR_TLS_FILES'
  | 'ERR_UNAUTHORIZED'
  | 'ERR_FORBIDDEN'
  | 'ERR_DEVICE_NOT_FOUND'
  | 'ERR_DEVICE_EXISTS'
  | 'ERR_DEVICE_OFFLINE'
  | 'ERR_DEVICE_DISABLED'
  | 'ERR_POLICY_EXISTS'
  | 'ERR_POLICY_NOT_FOUND'
  | 'ERR_THROTTLED'
  | 'ERR_HUB_UNAVAILABLE'
  | 'ERR_STREAM_REJECTED'
  | 'ERR_STREAM_CUT'
  | 'ERR_TIMEOUT'
  | 'ERR_HUB_RESPONSE'
  | 'ERR_DATA_DIR'
  | 'ERR_LISTEN'
  | 'ERR_PROTOCOL'
  | 'ERR_PROFILE_NOT_FOUND'
  | 'ERR_PROFILE_STORE'
  | 'ERR_CONSOLE'
  /** Stopped by a signal before there was anything to end cleanly. */
  | 'ERR_INTERRUPTED';

export interface DstreamErrorOptions {
  /** What the user can do about it; printed under the message. */
  readonly hint?: string;
  readonly cause?: unknown;
}

/** An expected failure: one clear line for the user, never a stack trace. */
export class DstreamError extends Error {
  override readonly name = 'DstreamError';
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: DstreamErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
  }
}

/** Codes that mean "you typed something wrong" exit with 2; everything else with 1. */
const usageCodes: ReadonlySet<ErrorCode> = new Set([
  'ERR_USAGE',
  'ERR_CONNECTION_STRING_MISSING',
  'ERR_CONNECTION_STRING_INVALID',
  'ERR_PROFILE_NOT_FOUND',
]);

/** The process exit code for an error (documented in docs/cli.md). */
export function exitCodeFor(error: DstreamError): number {
  if (error.code === 'ERR_INTERRUPTED') return 130;
  return usageCodes.has(error.code) ? 2 : 1;
}

export function isDstreamError(value: unknown): value is DstreamError {
  return value instanceof DstreamError;
}

/** A short description of any thrown value, for log lines. */
export function describeError(value: unknown): string {
  if (value instanceof Error) {
    const code = (value as NodeJS.ErrnoException).code;
    return code && !value.message.includes(code) ? `${value.message} (${code})` : value.message;
  }
  return String(value);
}
