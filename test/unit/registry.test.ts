import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openHubDataDir } from '../../src/hub/data-dir.js';
import { SqliteRegistry } from '../../src/hub/sqlite-registry.js';
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
