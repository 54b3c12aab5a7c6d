import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { signSas } from '../../src/auth/sas.js';
import {
  authenticateDevice,
  authenticateService,
  clockSkewSeconds,
} from '../../src/hub/admission/authenticate.js';
import { SqliteRegistry } from '../../src/hub/store/sqlite-registry.js';
import { createLogger, redactFields } from '../../src/log/logger.js';

const now = 1_900_000_000;

describe('hub authentication', () => {
  let dir: string;
  let reg: SqliteRegistry;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dstream-auth-'));
    reg = new SqliteRegistry(join(dir, 'r.db'));
  });
  afterEach(() => {
    reg.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('service: right policy and key, not expired, right scope and right', () => {
    const policy = reg.addPolicyNow('service', ['ServiceConnect', 'RegistryRead']);
    const token = (
      o: Partial<{ key: string; keyName: string; expiry: number; resource: string }> = {},
    ) =>
      signSas({
        resource: 'hub:8443',
        key: policy.key,
        keyName: 'service',
        expiry: now + 60,
        ...o,
      });
    expect(authenticateService(reg, token(), 'ServiceConnect', now)).toMatchObject({ ok: true });
    expect(authenticateService(reg, token(), 'RegistryWrite', now)).toMatchObject({
      ok: false,
      status: 403,
    });
    expect(
      authenticateService(reg, token({ keyName: 'nope' }), 'ServiceConnect', now),
    ).toMatchObject({ ok: false, status: 401 });
    expect(
      authenticateService(
        reg,
        token({ key: Buffer.alloc(32).toString('base64') }),
        'ServiceConnect',
        now,
      ),
    ).toMatchObject({ ok: false, status: 401 });
    expect(
      authenticateService(
        reg,
        token({ expiry: now - clockSkewSeconds - 1 }),
        'ServiceConnect',
        now,
      ),
    ).toMatchObject({ ok: false, message: 'the token has expired' });
    expect(
      authenticateService(
        reg,
        token({ expiry: now - clockSkewSeconds + 1 }),
        'ServiceConnect',
        now,
      ),
    ).toMatchObject({ ok: true });
    expect(
      authenticateService(reg, token({ resource: 'hub:8443/devices/x' }), 'ServiceConnect', now),
    ).toMatchObject({ ok: false, status: 401 });
    expect(authenticateService(reg, undefined, 'ServiceConnect', now)).toMatchObject({
      ok: false,
      message: 'missing Authorization header',
    });
  });

  it('device: scoped to that device, its key, enabled', async () => {
    const dev = reg.addDeviceNow('pi-01');
    reg.addDeviceNow('pi-02');
    const token = (id = 'pi-01', key = dev.primaryKey, expiry = now + 60) =>
      signSas({ resource: `hub/devices/${id}`, key, expiry });
    expect(authenticateDevice(reg, token(), 'pi-01', now)).toMatchObject({ ok: true });
    // A device's own token does not open another device's control channel.
    expect(authenticateDevice(reg, token(), 'pi-02', now)).toMatchObject({
      ok: false,
      status: 401,
    });
    expect(authenticateDevice(reg, token('pi-02'), 'pi-02', now)).toMatchObject({
      ok: false,
      status: 401,
    });
    expect(authenticateDevice(reg, token('ghost'), 'ghost', now)).toMatchObject({
      ok: false,
      status: 401,
      message: 'invalid device credentials',
    });
    expect(
      authenticateDevice(reg, token('pi-01', dev.primaryKey, now - 3600), 'pi-01', now),
    ).toMatchObject({ ok: false, status: 401 });
    await reg.setDeviceStatus('pi-01', 'disabled');
    expect(authenticateDevice(reg, token(), 'pi-01', now)).toMatchObject({
      ok: false,
      status: 403,
      errorCode: 'DeviceDisabled',
    });
  });
});

describe('logger', () => {
  it('never prints secret-looking fields', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) });
    log.info('x', {
      token: 'abc',
      sharedAccessKey: 'k',
      authorization: 'SharedAccessSignature ...',
      device: 'pi',
    });
    const parsed = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
    expect(parsed).toMatchObject({
      msg: 'x',
      token: '[redacted]',
      sharedAccessKey: '[redacted]',
      authorization: '[redacted]',
      device: 'pi',
    });
    expect(redactFields({ connectionString: 'HostName=...' })).toEqual({
      connectionString: '[redacted]',
    });
    expect(redactFields({ signal: 'SIGTERM', keyName: 'service' })).toEqual({
      signal: 'SIGTERM',
      keyName: 'service',
    });
  });
});
