import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteRegistry } from '../../src/hub/store/sqlite-registry.js';
import { spawnChild } from '../child.js';
import type { BenchConfig } from '../config.js';
import { rssBytes } from '../proc-stats.js';
import { figure, type Figure } from '../result.js';
import type { Stack } from '../stack.js';

const loadClientPath = fileURLToPath(new URL('../load-client.js', import.meta.url));

/**
 * Scenario 6: many idle devices on one hub, held by load clients in several processes (this
 * machine allows 20,000 open files per process), each from its own loopback source address.
 */
export async function runIdleDevices(cfg: BenchConfig, stack: Stack): Promise<Figure[]> {
  const n = cfg.idleDevices;
  const registry = new SqliteRegistry(join(stack.dataDir, 'registry.db'));
  const devices: { id: string; key: string }[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const d = registry.addDeviceNow(`idle-${i}`);
      devices.push({ id: d.deviceId, key: d.primaryKey });
    }
  } finally {
    registry.close();
  }
  const ca = readFileSync(join(stack.dataDir, 'tls', 'cert.pem'), 'utf8');
  const rss0 = rssBytes(stack.hub.pid);
  const clients = Array.from({ length: cfg.loadClients }, (_, k) => {
    const share = devices.filter((_, i) => i % cfg.loadClients === k);
    return spawnChild(
      process.execPath,
      [loadClientPath],
      {},
      JSON.stringify({
        host: 'localhost',
        port: stack.hubPort,
        resourceHost: `127.0.0.1:${stack.hubPort}`,
        ca,
        localAddress: `127.0.0.${2 + k}`,
        // Below the hub's per-address cap on connections that have not authenticated yet.
        concurrency: 64,
        devices: share,
      }),
    );
  });
  try {
    const results = await Promise.all(
      clients.map(async (c) => {
        const m = await c.waitFor(
          /\{"done":(\d+),"failed":(\d+),(?:"firstError":"([^"]*)",)?"ms":(\d+)\}/,
          600_000,
        );
        return { done: Number(m[1]), failed: Number(m[2]), firstError: m[3], ms: Number(m[4]) };
      }),
    );
    await new Promise((r) => setTimeout(r, 2000));
    const rss1 = rssBytes(stack.hub.pid);
    const connected = results.reduce((a, r) => a + r.done, 0);
    const failed = results.reduce((a, r) => a + r.failed, 0);
    const seconds = Math.max(...results.map((r) => r.ms)) / 1000;
    const firstError = results.find((r) => r.firstError)?.firstError;
    return [
      figure({
        scenario: 6,
        name: `${n} idle devices connected`,
        value: connected,
        unit: '',
        target: { op: '>=', value: n },
        note: `${failed} failed${firstError ? ` (first: ${firstError})` : ''}; ${cfg.loadClients} load processes`,
      }),
      figure({
        scenario: 6,
        name: 'hub memory per connected device',
        value: (rss1 - rss0) / 1024 / Math.max(1, connected),
        unit: 'KiB',
        target: { op: '<', value: 32 },
      }),
      figure({ scenario: 6, name: `time for all ${n} to connect`, value: seconds, unit: 's' }),
    ];
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
  }
}
