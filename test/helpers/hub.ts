import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  formatServiceConnectionString,
  parseConnectionString,
  type DeviceConnectionString,
  type ServiceConnectionString,
} from '../../src/auth/connection-string.js';
import { openHubDataDir, type HubDataDir } from '../../src/hub/store/data-dir.js';
import { startHub, type RunningHub } from '../../src/hub/server.js';
import type { HubLimits } from '../../src/hub/streams/limits.js';
import type { GuardOptions } from '../../src/hub/admission/guard.js';
import type { AuditLog } from '../../src/hub/store/audit-log.js';
import { silentLogger, type Logger } from '../../src/log/logger.js';
import { hubTarget } from '../../src/service/credentials.js';
import type { ProxyOptions } from '../../src/proxy/proxy.js';
import { RegistryClient } from '../../src/service/registry-client.js';

export interface TestHub {
  readonly dataDir: string;
  readonly state: HubDataDir;
  readonly hub: RunningHub;
  readonly serviceString: string;
  readonly service: ServiceConnectionString;
  readonly registry: RegistryClient;
  /** Register a device through the REST API; returns its connection string, parsed. */
  addDevice(id: string): Promise<DeviceConnectionString>;
  /** Stop the hub (keeps the data dir unless `remove`). */
  stop(): Promise<void>;
  cleanup(): Promise<void>;
}

export interface TestHubOptions {
  readonly tls?: boolean;
  readonly dataDir?: string;
  readonly logger?: Logger;
  readonly pairTimeoutMs?: number;
  /** Listen port (default 0: a free one). */
  readonly port?: number;
  readonly heartbeatMs?: number;
  readonly limits?: Partial<HubLimits>;
  readonly guard?: Partial<GuardOptions>;
  readonly audit?: AuditLog;
  readonly headersTimeoutMs?: number;
  /** What the hub's strings name (default: the bound address). */
  readonly publicUrl?: URL;
  /** How long a suspended stream waits for its halves (default 120 s). */
  readonly resumeWindowMs?: number;
}

export function makeTempDir(prefix = 'dstream-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A real hub on 127.0.0.1, port 0, with a temporary data dir. */
export async function startTestHub(options: TestHubOptions = {}): Promise<TestHub> {
  const dataDir = options.dataDir ?? makeTempDir();
  const logger = options.logger ?? silentLogger;
  const state = await openHubDataDir(
    { dataDir, insecureNoTls: options.tls === false, certificateNames: ['localhost', '127.0.0.1'] },
    logger,
  );
  const hub = await startHub(
    {
      host: '127.0.0.1',
      port: options.port ?? 0,
      registry: state.registry,
      tls: state.tls,
      pairTimeoutMs: options.pairTimeoutMs,
      heartbeatMs: options.heartbeatMs,
      limits: options.limits,
      guard: options.guard,
      audit: options.audit,
      headersTimeoutMs: options.headersTimeoutMs,
      publicUrl: options.publicUrl,
      resume: { key: state.resumeKey, windowMs: options.resumeWindowMs },
    },
    logger,
  );
  const serviceString = formatServiceConnectionString(
    hub.address,
    state.servicePolicy.name,
    state.servicePolicy.key,
  );
  const service = parseConnectionString(serviceString) as ServiceConnectionString;
  const registry = new RegistryClient(service, hubTarget(service));
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await hub.close();
    state.registry.close();
  };
  return {
    dataDir,
    state,
    hub,
    serviceString,
    service,
    registry,
    addDevice: async (id) => {
      const info = await registry.add(id);
      return parseConnectionString(info.connectionString ?? '') as DeviceConnectionString;
    },
    stop,
    cleanup: async () => {
      await stop();
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A port proxy's options for stream `t` of device `dev` on `t`'s hub, on a free port. */
export function proxyTo(t: TestHub, responseTimeoutSeconds = 30): ProxyOptions {
  return {
    credential: t.service,
    target: hubTarget(t.service),
    deviceId: 'dev',
    streamName: 't',
    bindHost: '127.0.0.1',
    port: 0,
    responseTimeoutSeconds,
  };
}
