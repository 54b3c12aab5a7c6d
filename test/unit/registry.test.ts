import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openHubDataDir } from '../../src/hub/store/data-dir.js';
import { SqliteRegistry } from '../../src/hub/store/sqlite-registry.js';
import { silentLogger } from '../../src/log/logger.js';
import { registryContract } from '../helpers/registry-contract.js';

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
