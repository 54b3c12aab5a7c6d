import { afterEach, describe, expect, it } from 'vitest';
import { RedisRegistry } from '../../src/hub/cluster/redis-registry.js';
import type { Store } from '../../src/hub/cluster/store.js';
import type { RegistryChange } from '../../src/hub/store/registry.js';
import { silentLogger } from '../../src/log/logger.js';
import { registryContract } from '../helpers/registry-contract.js';
import { redisForTests } from '../helpers/redis.js';

describe('Redis registry (cluster mode)', () => {
  const fixture = redisForTests('dstream-redis-');
  const stores: Store[] = [];
  const connect = async (): Promise<RedisRegistry> => {
    const store = await fixture.connect();
    stores.push(store);
    return RedisRegistry.open(store, silentLogger);
  };
  afterEach(() => {
    stores.length = 0;
  });

  registryContract(connect, connect);

  // Both registries live in this one process, so the writer's own message can be handled
  // (and its write resolve) a moment before the other's: hence a short poll, not a strict check.
  it('a write through one node reaches every other replica at once', async () => {
    const a = await connect();
    const b = await connect();
    const changes: RegistryChange[] = [];
    b.watch((change) => changes.push(change));
    for (let i = 0; i < 50; i++) {
      const added = await a.addDevice(`d${i}`);
      await expect.poll(() => b.getDevice(`d${i}`), { timeout: 200 }).toEqual(added);
    }
    await a.setDeviceStatus('d1', 'disabled');
    await a.regenerateKey('d2', 'primary');
    await a.removeDevice('d3');
    await a.setDeviceStatus('d4', 'disabled'); // disabled twice: reported once
    await a.setDeviceStatus('d4', 'disabled');
    await expect.poll(() => changes.length).toBe(4);
    expect(changes).toEqual([
      { kind: 'device-disabled', deviceId: 'd1' },
      { kind: 'device-key-changed', deviceId: 'd2' },
      { kind: 'device-removed', deviceId: 'd3' },
      { kind: 'device-disabled', deviceId: 'd4' },
    ]);
    // The second disable of d4 changes only its version, and reaches b after the fourth
    // change did: b catches up through the same channel, a moment later (CI once compared
    // before it had, version 2 against 3).
    await expect.poll(() => b.listDevices(), { timeout: 15_000 }).toEqual(a.listDevices());
  });

  it('while redis is away: reads go on, writes fail with a clear error; then it catches up', async () => {
    const a = await connect();
    const b = await connect();
    await a.addDevice('kept');
    const storeB = stores[1] as Store;
    await fixture.redis().kill();
    await expect.poll(() => storeB.up).toBe(false);
    expect(b.getDevice('kept')?.deviceId).toBe('kept');
    await expect(b.addDevice('new')).rejects.toThrow(
      'cannot add a device: the cluster store (redis) is unreachable',
    );
    await fixture.redis().restart();
    await expect.poll(() => storeB.up, { timeout: 10_000 }).toBe(true);
    await expect.poll(() => (stores[0] as Store).up, { timeout: 10_000 }).toBe(true);
    const added = await a.addDevice('after');
    await expect.poll(() => b.getDevice('after'), { timeout: 200 }).toEqual(added);
  });
});
