import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openHubDataDir } from '../../src/hub/data-dir.js';
import { AlreadyExistsError } from '../../src/hub/registry.js';
import { SqliteRegistry } from '../../src/hub/sqlite-registry.js';
import { silentLogger } from '../../src/log/logger.js';

describe('SQLite registry', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dstream-reg-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('adds, reads, lists, disables, touches and removes devices', async () => {
    const reg = new SqliteRegistry(join(dir, 'r.db'));
    const a = await reg.addDevice('b-dev', new Date('2026-01-01T00:00:00Z'));
    await reg.addDevice('a-dev');
    expect(a).toMatchObject({
      deviceId: 'b-dev',
      status: 'enabled',
      createdTime: '2026-01-01T00:00:00.000Z',
      lastActivityTime: null,
    });
    expect(Buffer.from(a.primaryKey, 'base64')).toHaveLength(32);
    await expect(reg.addDevice('b-dev')).rejects.toThrow(AlreadyExistsError);
    expect(reg.listDevices().map((d) => d.deviceId)).toEqual(['a-dev', 'b-dev']);
    expect((await reg.setDeviceStatus('b-dev', 'disabled'))?.status).toBe('disabled');
    expect(await reg.setDeviceStatus('nope', 'disabled')).toBeUndefined();
    reg.touchDevice('b-dev', new Date('2026-02-02T00:00:00Z'));
    expect(reg.getDevice('b-dev')?.lastActivityTime).toBe('2026-02-02T00:00:00.000Z');
    expect(await reg.removeDevice('b-dev')).toBe(true);
    expect(await reg.removeDevice('b-dev')).toBe(false);
    expect(reg.getDevice('b-dev')).toBeUndefined();
    reg.close();
  });

  it('keeps devices, policies and settings across reopen', async () => {
    const file = join(dir, 'r.db');
    const reg = new SqliteRegistry(file);
    const dev = await reg.addDevice('keep');
    const pol = await reg.addPolicy('ops', ['RegistryRead']);
    await reg.setSetting('public_url', 'https://x:1');
    reg.close();
    const again = new SqliteRegistry(file);
    expect(again.getDevice('keep')).toEqual(dev);
    expect(again.getPolicy('ops')).toEqual(pol);
    expect(again.getSetting('public_url')).toBe('https://x:1');
    again.close();
  });

  it('data dir: 0700, key 0600, service policy, idempotent', async () => {
    const dataDir = join(dir, 'hub');
    const first = await openHubDataDir(
      { dataDir, insecureNoTls: false, certificateNames: ['localhost'] },
      silentLogger,
    );
    expect(first.created).toBe(true);
    expect(first.servicePolicy.rights).toEqual(['ServiceConnect', 'RegistryRead', 'RegistryWrite']);
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
