import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openHubDataDir } from '../../src/hub/store/data-dir.js';
import { SqliteRegistry } from '../../src/hub/store/sqlite-registry.js';
import { silentLogger } from '../../src/log/logger.js';
import { registryContract } from '../helpers/registry-contract.js';
import { waitFor } from '../helpers/net.js';

describe('SQLite registry', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dstream-reg-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  registryContract(
    () => Promise.resolve(new SqliteRegistry(join(dir, 'r.db'))),
    () => Promise.resolve(new SqliteRegistry(join(dir, 'r.db'))),
  );

  it("records read lately: this registry's own writes are seen at once; another process's within the latency, and never lost", async () => {
    const file = join(dir, 'cached.db');
    const hub = new SqliteRegistry(file);
    // Another process on the same file (`hub init`, a tool): its own connection.
    const other = new SqliteRegistry(file);
    try {
      const added = hub.addDeviceNow('d1');
      hub.addPolicyNow('p1', ['ServiceConnect']);
      expect(hub.getDevice('d1')).toEqual(added);
      expect(hub.getPolicy('p1')?.rights).toEqual(['ServiceConnect']);
      // Own writes: the next read has them.
      await hub.setDeviceStatus('d1', 'disabled');
      expect(hub.getDevice('d1')?.status).toBe('disabled');
      await hub.updatePolicy('p1', { rights: ['RegistryRead'] });
      expect(hub.getPolicy('p1')?.rights).toEqual(['RegistryRead']);
      hub.touchDevice('d1', new Date('2026-12-05T00:00:00.000Z'));
      expect(hub.getDevice('d1')?.lastActivityTime).toBe('2026-12-05T00:00:00.000Z');
      // Another connection's writes: seen once the latency has passed.
      const rotated = await other.regenerateKey('d1', 'secondary');
      await other.updatePolicy('p1', { rights: ['RegistryWrite'] });
      await waitFor(
        () => hub.getDevice('d1')?.secondaryKey === rotated?.secondaryKey,
        5000,
        "the other connection's new key",
      );
      await waitFor(
        () => hub.getPolicy('p1')?.rights.join() === 'RegistryWrite',
        5000,
        "the other connection's rights",
      );
      // A write here reads the file, not a record read lately: the other process's key stays.
      const again = await other.regenerateKey('d1', 'primary');
      const enabled = await hub.setDeviceStatus('d1', 'enabled');
      expect(enabled?.primaryKey).toBe(again?.primaryKey);
      expect(other.getDevice('d1')?.primaryKey).toBe(again?.primaryKey);
      // Removed elsewhere: gone here too.
      expect(await other.removeDevice('d1')).toBe(true);
      expect(await other.removePolicy('p1')).toBe(true);
      await waitFor(() => hub.getDevice('d1') === undefined, 5000, "the device's removal");
      await waitFor(() => hub.getPolicy('p1') === undefined, 5000, "the policy's removal");
      // Removed here: at once.
      hub.addDeviceNow('d2');
      expect(hub.getDevice('d2')).toBeDefined();
      expect(await hub.removeDevice('d2')).toBe(true);
      expect(hub.getDevice('d2')).toBeUndefined();
    } finally {
      other.close();
      hub.close();
    }
  });

  it('a registry from before device versions: its devices read as version 1 and count on', async () => {
    const file = join(dir, 'old.db');
    const db = new Database(file);
    db.exec(`CREATE TABLE devices (
      device_id TEXT PRIMARY KEY, primary_key TEXT NOT NULL, secondary_key TEXT NOT NULL,
      status TEXT NOT NULL, created_time TEXT NOT NULL, last_activity_time TEXT)`);
    db.prepare(
      `INSERT INTO devices VALUES ('old', 'cA==', 'cw==', 'enabled', '2026-01-01T00:00:00.000Z', NULL)`,
    ).run();
    db.close();
    const reg = new SqliteRegistry(file);
    expect(reg.getDevice('old')).toMatchObject({ primaryKey: 'cA==', version: 1 });
    expect((await reg.updateDevice('old', { status: 'disabled' }, 1))?.version).toBe(2);
    reg.close();
  });

  it('a registry from before PolicyWrite: the service policy is given it, once', async () => {
    const dataDir = join(dir, 'old');
    mkdirSync(dataDir);
    const old = new SqliteRegistry(join(dataDir, 'registry.db'));
    old.addPolicyNow('service', ['ServiceConnect', 'RegistryRead', 'RegistryWrite']);
    old.addPolicyNow('writer', ['RegistryRead', 'RegistryWrite']);
    old.close();
    const opened = await openHubDataDir(
      { dataDir, insecureNoTls: true, certificateNames: [] },
      silentLogger,
    );
    expect(opened.servicePolicy.rights).toEqual([
      'ServiceConnect',
      'RegistryRead',
      'RegistryWrite',
      'PolicyWrite',
    ]);
    // Nobody else gains it.
    expect(opened.registry.getPolicy('writer')?.rights).toEqual(['RegistryRead', 'RegistryWrite']);
    opened.registry.close();
  });

  it('data dir: 0700, key 0600, service policy, idempotent', async () => {
    const dataDir = join(dir, 'hub');
    const first = await openHubDataDir(
      { dataDir, insecureNoTls: false, certificateNames: ['localhost'] },
      silentLogger,
    );
    expect(first.created).toBe(true);
    expect(first.servicePolicy.rights).toEqual([
      'ServiceConnect',
      'RegistryRead',
      'RegistryWrite',
      'PolicyWrite',
    ]);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, 'tls', 'key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'registry.db')).mode & 0o077).toBe(0);
    first.registry.close();
    const second = await openHubDataDir(
      { dataDir, insecureNoTls: false, certificateNames: ['localhost'] },
      silentLogger,
    );
    expect(second.created).toBe(false);
    expect(second.servicePolicy).toEqual(first.servicePolicy);
    expect(second.tls?.fingerprint).toBe(first.tls?.fingerprint);
    second.registry.close();
  });
});
