import { expect, it } from 'vitest';
import {
  AlreadyExistsError,
  PreconditionFailedError,
  type Registry,
} from '../../src/hub/store/registry.js';

/**
 * What every Registry must do, whatever stands behind it (SQLite, Redis). `open` gives a
 * registry on an empty store; `reopen` a second registry on the same store.
 */
export function registryContract(
  open: () => Promise<Registry>,
  reopen: () => Promise<Registry>,
): void {
  it('adds, reads, lists, disables, touches and removes devices', async () => {
    const reg = await open();
    const a = await reg.addDevice('b-dev', new Date('2026-01-01T00:00:00Z'));
    await reg.addDevice('a-dev');
    expect(a).toMatchObject({
      deviceId: 'b-dev',
      status: 'enabled',
      createdTime: '2026-01-01T00:00:00.000Z',
      lastActivityTime: null,
    });
    expect(Buffer.from(a.primaryKey, 'base64')).toHaveLength(32);
    expect(reg.getDevice('b-dev')).toEqual(a);
    await expect(reg.addDevice('b-dev')).rejects.toThrow(AlreadyExistsError);
    expect(reg.listDevices().map((d) => d.deviceId)).toEqual(['a-dev', 'b-dev']);
    expect((await reg.setDeviceStatus('b-dev', 'disabled'))?.status).toBe('disabled');
    expect(reg.getDevice('b-dev')?.status).toBe('disabled');
    expect(await reg.setDeviceStatus('nope', 'disabled')).toBeUndefined();
    const rotated = await reg.regenerateKey('b-dev', 'secondary');
    expect(rotated?.secondaryKey).not.toBe(a.secondaryKey);
    expect(rotated?.primaryKey).toBe(a.primaryKey);
    expect(await reg.regenerateKey('nope', 'primary')).toBeUndefined();
    reg.touchDevice('b-dev', new Date('2026-02-02T00:00:00Z'));
    await expect
      .poll(() => reg.getDevice('b-dev')?.lastActivityTime)
      .toBe('2026-02-02T00:00:00.000Z');
    expect(await reg.removeDevice('b-dev')).toBe(true);
    expect(await reg.removeDevice('b-dev')).toBe(false);
    expect(reg.getDevice('b-dev')).toBeUndefined();
    reg.close();
  });

  it('creates with given keys and status; versions count changes; conditional writes check them', async () => {
    const reg = await open();
    const k1 = Buffer.alloc(16, 1).toString('base64');
    const k2 = Buffer.alloc(64, 2).toString('base64');
    const dev = await reg.addDevice('given', new Date('2026-03-03T00:00:00Z'), {
      primaryKey: k1,
      secondaryKey: k2,
      status: 'disabled',
    });
    expect(dev).toMatchObject({ primaryKey: k1, secondaryKey: k2, status: 'disabled', version: 1 });
    expect(reg.getDevice('given')).toEqual(dev);
    // Only the primary key given: the secondary is generated.
    const half = await reg.addDevice('half', undefined, { primaryKey: k1 });
    expect(half.primaryKey).toBe(k1);
    expect(Buffer.from(half.secondaryKey, 'base64')).toHaveLength(32);

    const v2 = await reg.updateDevice('given', { status: 'enabled' }, 1);
    expect(v2).toMatchObject({ status: 'enabled', primaryKey: k1, secondaryKey: k2, version: 2 });
    await expect(reg.updateDevice('given', { status: 'disabled' }, 1)).rejects.toThrow(
      PreconditionFailedError,
    );
    expect(reg.getDevice('given')?.status).toBe('enabled');
    // Unconditional writes count too; activity does not.
    expect((await reg.setDeviceStatus('given', 'disabled'))?.version).toBe(3);
    expect((await reg.regenerateKey('given', 'primary'))?.version).toBe(4);
    const v5 = await reg.updateDevice('given', { secondaryKey: k1 });
    expect(v5).toMatchObject({ secondaryKey: k1, version: 5 });
    reg.touchDevice('given', new Date('2026-04-04T00:00:00Z'));
    await expect
      .poll(() => reg.getDevice('given')?.lastActivityTime)
      .toBe('2026-04-04T00:00:00.000Z');
    expect(reg.getDevice('given')?.version).toBe(5);
    expect(await reg.updateDevice('nope', { status: 'enabled' }, 1)).toBeUndefined();

    await expect(reg.removeDevice('given', 4)).rejects.toThrow(PreconditionFailedError);
    expect(reg.getDevice('given')).toBeDefined();
    expect(await reg.removeDevice('given', 5)).toBe(true);
    expect(await reg.removeDevice('given', 5)).toBe(false);
    // A device made again starts over at version 1.
    expect((await reg.addDevice('given')).version).toBe(1);
    reg.close();
  });

  it('keeps devices, policies and settings across reopen', async () => {
    const reg = await open();
    const dev = await reg.addDevice('keep');
    const pol = await reg.addPolicy('ops', ['RegistryRead']);
    await expect(reg.addPolicy('ops', ['RegistryRead'])).rejects.toThrow(AlreadyExistsError);
    await reg.setSetting('public_url', 'https://x:1');
    reg.close();
    const again = await reopen();
    expect(again.getDevice('keep')).toEqual(dev);
    expect(again.getPolicy('ops')).toEqual(pol);
    expect(again.listPolicies().map((p) => p.name)).toEqual(['ops']);
    expect(again.getSetting('public_url')).toBe('https://x:1');
    expect(await again.removePolicy('ops')).toBe(true);
    expect(again.getPolicy('ops')).toBeUndefined();
    again.close();
  });

  it('changes a policy: new rights, a new key, both; unknown policies are undefined', async () => {
    const reg = await open();
    const pol = await reg.addPolicy('ops', ['RegistryRead']);
    const wider = await reg.updatePolicy('ops', { rights: ['RegistryRead', 'ServiceConnect'] });
    expect(wider).toEqual({ ...pol, rights: ['RegistryRead', 'ServiceConnect'] });
    const rekeyed = await reg.updatePolicy('ops', { regenerateKey: true });
    expect(rekeyed?.rights).toEqual(['RegistryRead', 'ServiceConnect']);
    expect(rekeyed?.key).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(rekeyed?.key).not.toBe(pol.key);
    expect(await reg.updatePolicy('nobody', { rights: ['RegistryRead'] })).toBeUndefined();
    reg.close();
    const again = await reopen();
    expect(again.getPolicy('ops')).toEqual(rekeyed);
    again.close();
  });
}
