import { expect, it } from 'vitest';
import { AlreadyExistsError, type Registry } from '../../src/hub/registry.js';

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
