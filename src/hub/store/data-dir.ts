import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DstreamError, describeError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import {
  certificateFingerprint,
  createSelfSignedCertificate,
  isSelfSigned,
} from '../../tls/self-signed.js';
import { AlreadyExistsError, allRights, type PolicyRecord, type Registry } from './registry.js';
import { SqliteRegistry } from './sqlite-registry.js';
import { createDirOnce } from '../../fs/create-once.js';
import { loadResumeKey } from './resume-key.js';

/** The TLS identity the hub serves. */
export interface HubTlsIdentity {
  readonly cert: string;
  readonly key: string;
  /** SHA-256 fingerprint (64 hex digits). */
  readonly fingerprint: string;
  /** Self-signed certificates are pinned by clients; the fingerprint goes into connection strings. */
  readonly selfSigned: boolean;
}

export interface HubDataDirOptions {
  readonly dataDir: string;
  /** PEM files given by the operator; otherwise a self-signed pair is made in the data dir. */
  readonly tlsCertFile?: string | undefined;
  readonly tlsKeyFile?: string | undefined;
  /** --insecure-no-tls: serve plain HTTP/WS. */
  readonly insecureNoTls: boolean;
  /** Names for the self-signed certificate's subjectAltName. */
  readonly certificateNames: readonly string[];
  /**
   * Use the data dir's certificate but never make one (cluster nodes: every node must serve
   * the same certificate, made once by `hub init` and copied to each node's data dir).
   */
  readonly requireExistingCertificate?: boolean | undefined;
  /**
   * A shared registry (cluster mode, Redis) instead of the data dir's SQLite file; the data
   * dir then holds only the TLS identity (and the audit log).
   */
  readonly openRegistry?: (() => Promise<Registry>) | undefined;
}

export interface HubDataDir {
  readonly registry: Registry;
  readonly tls: HubTlsIdentity | null;
  readonly servicePolicy: PolicyRecord;
  /** Signs resume tickets (resume-key.ts). */
  readonly resumeKey: Buffer;
  /** True when this call created the registry (first start): its service policy is new. */
  readonly created: boolean;
}

/** The policy `hub init` creates; its connection string is the operator's key to everything. */
export const defaultPolicyName = 'service';

function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // mkdir's mode is masked by the umask and ignored for existing dirs: set it explicitly.
    chmodSync(dir, 0o700);
  } catch (error) {
    throw new DstreamError('ERR_DATA_DIR', `cannot use data dir ${dir}: ${describeError(error)}`, {
      hint: 'Pass --data-dir with a directory you can write to.',
      cause: error,
    });
  }
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new DstreamError(
      'ERR_TLS_FILES',
      `cannot read the TLS ${what} ${file}: ${describeError(error)}`,
      {
        cause: error,
      },
    );
  }
}

async function loadTls(options: HubDataDirOptions, logger: Logger): Promise<HubTlsIdentity | null> {
  if (options.insecureNoTls) return null;
  if (options.tlsCertFile || options.tlsKeyFile) {
    if (!options.tlsCertFile || !options.tlsKeyFile)
      throw new DstreamError('ERR_USAGE', '--tls-cert and --tls-key must be given together');
    const cert = readPem(options.tlsCertFile, 'certificate');
    const key = readPem(options.tlsKeyFile, 'key');
    try {
      return {
        cert,
        key,
        fingerprint: certificateFingerprint(cert),
        selfSigned: isSelfSigned(cert),
      };
    } catch (error) {
      throw new DstreamError('ERR_TLS_FILES', `${options.tlsCertFile} is not a PEM certificate`, {
        cause: error,
      });
    }
  }
  const tlsDir = join(options.dataDir, 'tls');
  const certFile = join(tlsDir, 'cert.pem');
  const keyFile = join(tlsDir, 'key.pem');
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    if (options.requireExistingCertificate)
      throw new DstreamError('ERR_TLS_FILES', `no TLS certificate in ${tlsDir}`, {
        hint: 'Cluster nodes must all serve one certificate: run `dstream hub init --redis <url>` once, copy its data dir to every node (or give --tls-cert and --tls-key).',
      });
    // `hub` and `hub init` may both get here on a fresh data dir: one certificate wins.
    const made = await createSelfSignedCertificate('dstream hub', options.certificateNames);
    const created = createDirOnce(tlsDir, (temp) => {
      writeFileSync(join(temp, 'key.pem'), made.key, { mode: 0o600 });
      writeFileSync(join(temp, 'cert.pem'), made.cert, { mode: 0o644 });
    });
    if (created) logger.info('created a self-signed TLS certificate', { file: certFile });
  }
  const cert = readPem(certFile, 'certificate');
  return {
    cert,
    key: readPem(keyFile, 'key'),
    fingerprint: certificateFingerprint(cert),
    selfSigned: true,
  };
}

/**
 * Open (creating on first use) a hub data dir: the registry, the TLS identity and the
 * default service policy. Idempotent: run again, it returns what is there.
 */
export async function openHubDataDir(
  options: HubDataDirOptions,
  logger: Logger,
): Promise<HubDataDir> {
  ensurePrivateDir(options.dataDir);
  const registry = options.openRegistry
    ? await options.openRegistry()
    : openSqliteRegistry(join(options.dataDir, 'registry.db'));
  try {
    const tls = await loadTls(options, logger);
    const existing = registry.getPolicy(defaultPolicyName);
    const servicePolicy = existing
      ? await grantPolicyWrite(registry, existing, logger)
      : await addServicePolicy(registry);
    const resumeKey = loadResumeKey(options.dataDir);
    return { registry, tls, servicePolicy, resumeKey, created: existing === undefined };
  } catch (error) {
    registry.close();
    throw error;
  }
}

/**
 * Registries made before policy management became its own right: nobody holds PolicyWrite,
 * so the `service` policy init made (which then managed policies) is given it, once.
 */
async function grantPolicyWrite(
  registry: Registry,
  service: PolicyRecord,
  logger: Logger,
): Promise<PolicyRecord> {
  if (registry.listPolicies().some((p) => p.rights.includes('PolicyWrite'))) return service;
  const rights = [...new Set([...service.rights, 'PolicyWrite' as const])];
  const updated = await registry.updatePolicy(service.name, { rights });
  logger.info(
    `granted PolicyWrite to the '${service.name}' policy: managing policies is now a right of its own`,
  );
  return updated ?? service;
}

/** Create the service policy; another cluster node starting at the same time may win. */
async function addServicePolicy(registry: Registry): Promise<PolicyRecord> {
  try {
    return await registry.addPolicy(defaultPolicyName, allRights);
  } catch (error) {
    const theirs = error instanceof AlreadyExistsError && registry.getPolicy(defaultPolicyName);
    if (theirs) return theirs;
    throw error;
  }
}

function openSqliteRegistry(dbFile: string): Registry {
  try {
    const registry = new SqliteRegistry(dbFile);
    if ((statSync(dbFile).mode & 0o077) !== 0) chmodSync(dbFile, 0o600);
    return registry;
  } catch (error) {
    throw new DstreamError(
      'ERR_DATA_DIR',
      `cannot open the registry ${dbFile}: ${describeError(error)}`,
      { cause: error },
    );
  }
}
