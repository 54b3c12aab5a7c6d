import { afterEach, describe, expect, it } from 'vitest';
import { keys } from '../../src/hub/cluster/keys.js';
import { Presence } from '../../src/hub/cluster/presence.js';
import type { Store } from '../../src/hub/cluster/store.js';
import { silentLogger } from '../../src/log/logger.js';
import { redisForTests } from '../helpers/redis.js';

/** Two nodes' presence on a real Redis; each node's "local devices" is a plain set here. */
describe('cluster presence (real Redis)', () => {
  const fixture = redisForTests('dstream-presence-');
  const presences: Presence[] = [];

  async function node(
    id: string,
    leaseMs = 3000,
  ): Promise<{ presence: Presence; local: Set<string>; dropped: string[]; store: Store }> {
    const store = await fixture.connect();
    const presence = new Presence(store, id, `https://${id}.test:8443`, silentLogger, { leaseMs });
    presences.push(presence);
    const local = new Set<string>();
    const dropped: string[] = [];
    presence.attach(
      () => [...local],
      (deviceId) => {
        dropped.push(deviceId);
        local.delete(deviceId);
      },
    );
    await presence.start();
    return { presence, local, dropped, store };
  }

  const owner = async (p: Presence, deviceId: string): Promise<string | undefined> =>
    (await p.lookup(deviceId))?.nodeId;

  afterEach(async () => {
    await Promise.all(presences.splice(0).map((p) => p.stop()));
  });

  it('newest registration wins; a late release never erases it; the old owner is told', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    const notices: string[] = [];
    await a.store.subscribe(keys.nodeChannel('node-a'), (m) => notices.push(m));
    a.presence.online('pi');
    await expect.poll(() => owner(b.presence, 'pi')).toBe('node-a');
    const first = await a.presence.lookup('pi');
    b.presence.online('pi');
    await expect.poll(() => owner(a.presence, 'pi')).toBe('node-b');
    const second = await b.presence.lookup('pi');
    expect(second?.epoch).toBeGreaterThan(first?.epoch ?? Infinity);
    expect(second?.url).toBe('https://node-b.test:8443');
    await expect
      .poll(() => notices)
      .toEqual([JSON.stringify({ device: 'pi', t: 'drop', epoch: second?.epoch })]);
    // A's connection ends after B took over: compare-and-delete leaves B's registration.
    a.presence.offline('pi');
    // Sent after the release on A's own connection, so Redis has run the release once this
    // registration shows.
    a.presence.online('barrier');
    await expect.poll(() => owner(b.presence, 'barrier')).toBe('node-a');
    expect(await owner(a.presence, 'pi')).toBe('node-b');
    // B's own release does remove it.
    b.presence.offline('pi');
    await expect.poll(() => owner(a.presence, 'pi')).toBeUndefined();
  });

  it('a registration whose node stopped refreshing its lease does not count, and is cleared', async () => {
    const a = await node('node-a', 300);
    const b = await node('node-b');
    a.presence.online('pi');
    await expect.poll(() => owner(b.presence, 'pi')).toBe('node-a');
    // Stop A's lease refresh without releasing anything (as a crash would).
    await a.store.close();
    await expect.poll(() => owner(b.presence, 'pi'), { timeout: 5000 }).toBeUndefined();
    expect(await b.store.call('GET', keys.owner('pi'))).toBeNull();
  });

  it('after a gap, a node keeps what nobody took and drops what a live node took', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    a.local.add('kept');
    a.local.add('taken');
    a.presence.online('kept');
    a.presence.online('taken');
    await expect.poll(() => owner(b.presence, 'taken')).toBe('node-a');
    b.presence.online('taken');
    await expect.poll(() => owner(b.presence, 'taken')).toBe('node-b');
    // As if A had missed everything (its lease lapsed): the check itself must decide.
    await a.store.call('DEL', keys.owner('kept'));
    await a.presence.reconcile();
    expect(a.dropped).toEqual(['taken']);
    expect(await owner(b.presence, 'kept')).toBe('node-a');
    expect(await owner(b.presence, 'taken')).toBe('node-b');
    expect([...(await b.presence.connectedAmong(['kept', 'taken', 'nobody']))].sort()).toEqual([
      'kept',
      'taken',
    ]);
  });
});
