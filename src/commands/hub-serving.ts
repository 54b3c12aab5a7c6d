import { resolve } from 'node:path';
import { DstreamError, describeError } from '../errors.js';
import type { HubDataDir } from '../hub/store/data-dir.js';
import {
  describeServingTls,
  readServingRecord,
  servingRecordFile,
  tlsIdentityChanged,
  writeServingRecord,
  type ServingRecord,
  type ServingRequest,
  type ServingTls,
} from './hub-serving-record.js';
import type { Logger } from '../log/logger.js';
import type { HubSettings } from './hub-settings.js';

// How `dstream hub` records the way it serves, and how `hub init` holds its flags against that
// record (issue 15: a printed connection string works as printed).

/** The TLS part of a serving record, from what the data dir opened with. */
export function servingTls(s: HubSettings, state: HubDataDir): ServingTls {
  if (!state.tls) return { mode: 'none' };
  if (s.tlsCertFile === undefined)
    return { mode: 'self-signed', fingerprint: state.tls.fingerprint };
  return {
    mode: 'files',
    certFile: resolve(s.tlsCertFile),
    keyFile: resolve(s.tlsKeyFile ?? ''),
    fingerprint: state.tls.fingerprint,
    pinned: state.tls.selfSigned,
  };
}

/** What a `hub init` asks for of itself, to hold against the data dir's record. */
export function servingRequest(listenGiven: boolean, s: HubSettings): ServingRequest {
  return {
    tls: s.insecureNoTls
      ? 'none'
      : s.tlsCertFile !== undefined || s.tlsKeyFile !== undefined
        ? 'files'
        : undefined,
    listen: listenGiven ? { host: s.host, port: s.port } : undefined,
  };
}

/** Settings as the record says the hub serves (TLS files or none, the bound address). */
export function withRecord(s: HubSettings, record: ServingRecord): HubSettings {
  const tls = record.tls;
  return {
    ...s,
    host: record.listen.host,
    port: record.listen.port,
    insecureNoTls: tls.mode === 'none',
    tlsCertFile: tls.mode === 'files' ? tls.certFile : undefined,
    tlsKeyFile: tls.mode === 'files' ? tls.keyFile : undefined,
  };
}

export function contradiction(problem: string, dataDir: string): DstreamError {
  return new DstreamError('ERR_USAGE', problem, {
    hint: `The data dir records how its hub serves (${servingRecordFile(dataDir)}): run \`dstream hub init --data-dir ${dataDir}\` without that flag, or restart the hub with the flags you want.`,
  });
}

/** The record for a hub serving `s` on `port` under `publicUrl`. */
export function servingRecord(
  s: HubSettings,
  tls: ServingTls,
  publicUrl: URL,
  port: number,
  publicUrlFrom: ServingRecord['publicUrlFrom'],
): ServingRecord {
  return { publicUrl: publicUrl.origin, publicUrlFrom, listen: { host: s.host, port }, tls };
}

/**
 * Record how the hub that just started serves, and say so when strings printed before no
 * longer verify against it.
 */
export function recordServing(
  s: HubSettings,
  state: HubDataDir,
  hub: { readonly port: number; readonly publicUrl: URL },
  /** The public URL was given (now or in an earlier run), not derived from the bound address. */
  publicUrlGiven: boolean,
  logger: Logger,
): void {
  let previous: ServingRecord | undefined;
  try {
    previous = readServingRecord(s.dataDir);
  } catch (error) {
    logger.warn('replacing an unreadable serving record', { error: describeError(error) });
  }
  const tls = servingTls(s, state);
  if (previous && tlsIdentityChanged(previous.tls, tls))
    logger.warn(
      `TLS changed since this data dir was last used: it served ${describeServingTls(previous.tls)}, now ${describeServingTls(tls)}. Connection strings printed before no longer verify; print new ones with \`dstream hub init --data-dir ${s.dataDir}\` and \`dstream device show ID\``,
    );
  const from = publicUrlGiven ? 'public-url' : 'listen';
  // `hub init` run first (with other --listen flags, or none) recorded an address that this
  // hub does not serve: strings it printed name the wrong place.
  if (previous && previous.publicUrl !== hub.publicUrl.origin)
    logger.warn(
      `connection strings printed before name ${previous.publicUrl}, but this hub is reached at ${hub.publicUrl.origin}; print new ones with \`dstream hub init --data-dir ${s.dataDir}\` and \`dstream device show ID\``,
    );
  writeServingRecord(s.dataDir, servingRecord(s, tls, hub.publicUrl, hub.port, from));
}
