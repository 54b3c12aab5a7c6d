import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatFingerprint, formatHostPort } from '../auth/connection-string.js';
import { DstreamError, describeError } from '../errors.js';

/** How the hub's TLS is set up, as far as a connection string is concerned. */
export type ServingTls =
  /** A certificate the hub made in its data dir; clients pin it. */
  | { readonly mode: 'self-signed'; readonly fingerprint: string }
  /** --tls-cert/--tls-key; pinned only when that certificate is self-signed too. */
  | {
      readonly mode: 'files';
      readonly certFile: string;
      readonly keyFile: string;
      readonly fingerprint: string;
      readonly pinned: boolean;
    }
  /** --insecure-no-tls. */
  | { readonly mode: 'none' };

/**
 * What the data dir remembers of how its hub serves, so that `hub init` (run later, often
 * without the hub's flags) prints strings that reach and verify that hub. Written by the hub
 * once it has bound its port, and by `hub init` on a data dir that has none yet.
 */
export interface ServingRecord {
  /** The origin connection strings name (https://host:port). */
  readonly publicUrl: string;
  /** 'public-url': the operator gave it; 'listen': derived from the address the hub bound. */
  readonly publicUrlFrom: 'public-url' | 'listen';
  /** The address the hub listens on (the bound port, never 0 once the hub ran). */
  readonly listen: { readonly host: string; readonly port: number };
  readonly tls: ServingTls;
}

/** What a `hub init` was asked for, to compare with the record. */
export interface ServingRequest {
  /** undefined: no TLS flag given (take the record's). */
  readonly tls: 'files' | 'none' | undefined;
  /** Fingerprint of the --tls-cert file, when given. */
  readonly fingerprint?: string | undefined;
  /** --listen, when given. */
  readonly listen?: { readonly host: string; readonly port: number } | undefined;
}

const fileName = 'serving.json';

/** Where the record lives in a data dir. */
export function servingRecordFile(dataDir: string): string {
  return join(dataDir, fileName);
}

/** The data dir's record, or undefined when no hub has recorded one yet. */
export function readServingRecord(dataDir: string): ServingRecord | undefined {
  const file = servingRecordFile(dataDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DstreamError('ERR_DATA_DIR', `cannot read ${file}: ${describeError(error)}`, {
      cause: error,
    });
  }
  const record = parseRecord(text);
  if (!record)
    throw new DstreamError('ERR_DATA_DIR', `${file} is not a serving record dstream wrote`, {
      hint: 'Remove it and start the hub once: it writes a new one.',
    });
  return record;
}

/** Replace the record atomically (a reader never sees half a file). */
export function writeServingRecord(dataDir: string, record: ServingRecord): void {
  const file = servingRecordFile(dataDir);
  const temp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(temp, JSON.stringify(record, null, 2) + '\n', { mode: 0o600 });
    renameSync(temp, file);
  } catch (error) {
    throw new DstreamError('ERR_DATA_DIR', `cannot write ${file}: ${describeError(error)}`, {
      cause: error,
    });
  }
}

function parseRecord(text: string): ServingRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Partial<Record<keyof ServingRecord, unknown>>;
  const listen = r.listen as { host?: unknown; port?: unknown } | undefined;
  const tls = r.tls as Partial<Record<string, unknown>> | undefined;
  if (
    typeof r.publicUrl !== 'string' ||
    (r.publicUrlFrom !== 'public-url' && r.publicUrlFrom !== 'listen') ||
    typeof listen?.host !== 'string' ||
    typeof listen.port !== 'number' ||
    typeof tls?.mode !== 'string'
  )
    return undefined;
  try {
    new URL(r.publicUrl);
  } catch {
    return undefined;
  }
  const fingerprintOk =
    typeof tls.fingerprint === 'string' && /^[0-9A-F]{64}$/.test(tls.fingerprint);
  const tlsOk =
    tls.mode === 'none' ||
    (tls.mode === 'self-signed' && fingerprintOk) ||
    (tls.mode === 'files' &&
      fingerprintOk &&
      typeof tls.certFile === 'string' &&
      typeof tls.keyFile === 'string' &&
      typeof tls.pinned === 'boolean');
  return tlsOk ? (value as ServingRecord) : undefined;
}

/** The record's TLS in the words of the hub's flags, for messages. */
export function describeServingTls(tls: ServingTls): string {
  switch (tls.mode) {
    case 'none':
      return 'no TLS (--insecure-no-tls)';
    case 'self-signed':
      return `its self-signed certificate ${formatFingerprint(tls.fingerprint).slice(0, 23)}...`;
    case 'files':
      return `--tls-cert ${tls.certFile}`;
  }
}

/** True when strings printed for `before` do not verify against `after`. */
export function tlsIdentityChanged(before: ServingTls, after: ServingTls): boolean {
  if (before.mode !== after.mode) return true;
  if (before.mode === 'none' || after.mode === 'none') return false;
  const pinnedBefore = before.mode === 'self-signed' || before.pinned;
  return pinnedBefore && before.fingerprint !== after.fingerprint;
}

/**
 * Why a `hub init` asking for `request` would print a string that cannot work against the
 * hub the record describes, or undefined when it would not.
 */
export function servingContradiction(
  record: ServingRecord,
  request: ServingRequest,
): string | undefined {
  const serves = `this hub serves ${describeServingTls(record.tls)}`;
  if (request.tls === 'none' && record.tls.mode !== 'none')
    return `--insecure-no-tls contradicts the data dir: ${serves}`;
  if (request.tls === 'files') {
    if (record.tls.mode !== 'files') return `--tls-cert contradicts the data dir: ${serves}`;
    if (request.fingerprint !== undefined && request.fingerprint !== record.tls.fingerprint)
      return `--tls-cert is not the certificate the hub serves (${record.tls.certFile})`;
  }
  const l = request.listen;
  // The listen address matters only where strings were derived from it; port 0 asks for any.
  if (
    l &&
    record.publicUrlFrom === 'listen' &&
    (l.host !== record.listen.host || (l.port !== 0 && l.port !== record.listen.port))
  )
    return `--listen ${formatHostPort(l.host, l.port)} contradicts the data dir: the hub listens on ${formatHostPort(record.listen.host, record.listen.port)}`;
  return undefined;
}
