import { describeError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import { keys } from './keys.js';
import type { Store, StoreScript } from './store.js';

/** Where a device's control connection is. */
export interface DeviceOwner {
  readonly nodeId: string;
  readonly epoch: number;
  /** The owner node's URL (from its lease). */
  readonly url: string;
}

/**
 * Take a device: owner := this node with a fresh epoch. The newest connection wins, as on a
 * single hub. The previous owner, if another node, is told on its channel to drop its
 * (now stale) connection, carrying the new epoch so an older notice cannot drop a newer one.
 */
const claim: StoreScript = {
  name: 'presence-claim',
  keys: 2,
  lua: `
local previous = redis.call('GET', KEYS[1])
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch)
if previous then
  local node = string.match(previous, '^(.*):%d+$')
  if node and node ~= ARGV[1] then
    redis.call('PUBLISH', ARGV[2] .. node, cjson.encode({t = 'drop', device = ARGV[3], epoch = epoch}))
  end
end
return epoch`,
};

/** Compare-and-delete: only the registration that is still current may remove itself. */
const release: StoreScript = {
  name: 'presence-release',
  keys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`,
};

/**
 * After a gap (Redis was away, or this node was paused past its lease): keep a device if
 * nobody else took it, give it up (-1) if a live node did. A registration by a node whose
 * lease has expired does not count: that node is gone or as stale as we are.
 */
const reassert: StoreScript = {
  name: 'presence-reassert',
  keys: 2,
  lua: `
local current = redis.call('GET', KEYS[1])
if current then
  local node, epoch = string.match(current, '^(.*):(%d+)$')
  if node == ARGV[1] then return tonumber(epoch) end
  if node and redis.call('EXISTS', ARGV[2] .. node) == 1 then return -1 end
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch)
return epoch`,
};

/** The owner, if its node's lease is alive; a registration left by a dead node is removed. */
const lookup: StoreScript = {
  name: 'presence-lookup',
  keys: 1,
  lua: `
local current = redis.call('GET', KEYS[1])
if not current then return false end
local node, epoch = string.match(current, '^(.*):(%d+)$')
if not node then return false end
local url = redis.call('GET', ARGV[1] .. node)
if not url then
  redis.call('DEL', KEYS[1])
  return false
end
return {node, epoch, url}`,
};

export interface PresenceOptions {
  /** A node whose lease is not refreshed for this long counts as dead (default 3 s). */
  readonly leaseMs?: number | undefined;
}

/**
 * This node's part of the cluster's presence table: its lease (node id -> URL, short TTL,
 * refreshed by a heartbeat) and the registrations (device -> node:epoch) of the devices
 * whose control connections it holds.
 *
 * Operations for one device run one after another (connect, disconnect, connect again can
 * come within a millisecond), so a release never overtakes the claim it releases.
 */
export class Presence {
  readonly #store: Store;
  readonly #nodeId: string;
  readonly #url: string;
  readonly #logger: Logger;
  readonly #leaseMs: number;
  /** Epoch of each device this node has registered. */
  readonly #owned = new Map<string, number>();
  /** The tail of each device's queue of operations. */
  readonly #queue = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #lastRefresh = 0;
  #stopped = false;
  /** Devices this node holds locally (the control endpoint's list). */
  #local: () => string[] = () => [];
  /** Close a local connection that another node has taken over. */
  #drop: (deviceId: string) => void = () => undefined;

  constructor(
    store: Store,
    nodeId: string,
    url: string,
    logger: Logger,
    options: PresenceOptions = {},
  ) {
    this.#store = store;
    this.#nodeId = nodeId;
    this.#url = url;
    this.#logger = logger;
    this.#leaseMs = options.leaseMs ?? 3000;
  }

  get leaseMs(): number {
    return this.#leaseMs;
  }

  /** Wire to the control endpoint: what is held locally, and how to drop a stale connection. */
  attach(local: () => string[], drop: (deviceId: string) => void): void {
    this.#local = local;
    this.#drop = drop;
  }

  /** Take the lease and keep it; re-register everything after Redis comes back. */
  async start(): Promise<void> {
    await this.#refresh();
    this.#store.on('up', () => void this.#refresh().then(() => this.reconcile()));
    const every = Math.max(100, Math.floor(this.#leaseMs / 3));
    this.#timer = setInterval(() => void this.#refresh(), every);
  }

  async #refresh(): Promise<void> {
    if (this.#stopped || !this.#store.up) return;
    const now = Date.now();
    // A timer that fires this late means the process was stopped or starved past its lease.
    const lapsedByClock = this.#lastRefresh !== 0 && now - this.#lastRefresh >= this.#leaseMs;
    try {
      const previous = await this.#store.call(
        'SET',
        keys.lease(this.#nodeId),
        this.#url,
        'PX',
        this.#leaseMs,
        'GET',
      );
      const had = this.#lastRefresh !== 0;
      this.#lastRefresh = now;
      if (had && (previous === null || lapsedByClock)) {
        this.#logger.warn('this node was away longer than its lease; checking its devices', {
          leaseMs: this.#leaseMs,
        });
        await this.reconcile();
        return;
      }
      // A registration that failed (a command timed out while Redis stayed up) is retried
      // here, so a device is never left reachable only through the node that holds it.
      const unregistered = this.#local().filter(
        (deviceId) => !this.#owned.has(deviceId) && !this.#queue.has(deviceId),
      );
      if (unregistered.length > 0) await this.reconcile(unregistered);
    } catch (error) {
      this.#logger.debug('cannot refresh the node lease', { error: describeError(error) });
    }
  }

  #enqueue(deviceId: string, op: () => Promise<void>): void {
    const tail = (this.#queue.get(deviceId) ?? Promise.resolve())
      .then(op)
      .catch((error: unknown) => {
        // With Redis down every device's update fails, and the reconnection makes them good: one
        // line each would flood. A failure while Redis stays up (a command that timed out) is
        // rare and worth a line; the next lease refresh makes it good.
        const fields = { device: deviceId, error: describeError(error) };
        if (this.#store.up)
          this.#logger.warn(
            'a cluster presence update failed; retried at the next lease refresh',
            fields,
          );
        else this.#logger.debug('presence update failed; retried when redis is back', fields);
      });
    this.#queue.set(deviceId, tail);
    void tail.then(() => {
      if (this.#queue.get(deviceId) === tail) this.#queue.delete(deviceId);
    });
  }

  /** A device's control connection opened here. */
  online(deviceId: string): void {
    this.#enqueue(deviceId, async () => {
      this.#owned.delete(deviceId);
      if (!this.#store.up) return; // registered by reconcile() once Redis is back
      const epoch = Number(
        await this.#store.run(
          claim,
          [keys.owner(deviceId), keys.epoch],
          [this.#nodeId, keys.nodeChannel(''), deviceId],
        ),
      );
      this.#owned.set(deviceId, epoch);
    });
  }

  /** A device's control connection here ended. */
  offline(deviceId: string): void {
    this.#enqueue(deviceId, async () => {
      const epoch = this.#owned.get(deviceId);
      this.#owned.delete(deviceId);
      if (epoch === undefined || !this.#store.up) return;
      await this.#store.run(release, [keys.owner(deviceId)], [`${this.#nodeId}:${epoch}`]);
    });
  }

  /** Another node registered `deviceId` with `epoch`: drop ours if it is older. */
  dropIfStale(deviceId: string, epoch: number): void {
    this.#enqueue(deviceId, () => {
      const mine = this.#owned.get(deviceId);
      if (mine !== undefined && mine >= epoch) return Promise.resolve();
      this.#owned.delete(deviceId);
      this.#logger.info('device registered on another node; closing the stale connection here', {
        device: deviceId,
      });
      this.#drop(deviceId);
      return Promise.resolve();
    });
  }

  /**
   * Check every local device against Redis: re-register the ones nobody else took, drop the
   * ones a live node holds now. Runs after Redis comes back and after this node was away
   * longer than its lease (SIGSTOP, a long GC pause, a frozen VM).
   */
  async reconcile(devices: readonly string[] = this.#local()): Promise<void> {
    let dropped = 0;
    await Promise.all(
      devices.map(
        (deviceId) =>
          new Promise<void>((resolve) =>
            this.#enqueue(deviceId, async () => {
              try {
                const result = Number(
                  await this.#store.run(
                    reassert,
                    [keys.owner(deviceId), keys.epoch],
                    [this.#nodeId, keys.leasePrefix],
                  ),
                );
                if (result < 0) {
                  this.#owned.delete(deviceId);
                  dropped++;
                  this.#drop(deviceId);
                } else {
                  this.#owned.set(deviceId, result);
                }
              } finally {
                resolve();
              }
            }),
          ),
      ),
    );
    if (devices.length > 0)
      this.#logger.info('checked local devices against the cluster', {
        devices: devices.length,
        dropped,
      });
  }

  /** Where a device is connected, if anywhere alive. */
  async lookup(deviceId: string): Promise<DeviceOwner | undefined> {
    const found = await this.#store.run(lookup, [keys.owner(deviceId)], [keys.leasePrefix]);
    if (!Array.isArray(found)) return undefined;
    const [nodeId, epoch, url] = found as [string, string, string];
    return { nodeId, epoch: Number(epoch), url };
  }

  /** Which of these devices are registered to a live node (two round trips, any number). */
  async connectedAmong(deviceIds: readonly string[]): Promise<Set<string>> {
    const connected = new Set<string>();
    for (let i = 0; i < deviceIds.length; i += 1000) {
      const ids = deviceIds.slice(i, i + 1000);
      const owners = (await this.#store.call('MGET', ...ids.map(keys.owner))) as (string | null)[];
      const nodeOf = owners.map((v) => (v === null ? undefined : /^(.*):\d+$/.exec(v)?.[1]));
      const nodes = [...new Set(nodeOf.filter((n): n is string => n !== undefined))];
      if (nodes.length === 0) continue;
      const leases = (await this.#store.call('MGET', ...nodes.map(keys.lease))) as (
        string | null
      )[];
      const alive = new Set(nodes.filter((_, j) => leases[j] !== null));
      ids.forEach((id, j) => {
        const node = nodeOf[j];
        if (node !== undefined && alive.has(node)) connected.add(id);
      });
    }
    return connected;
  }

  /** A live node's URL, from its lease. */
  async nodeUrl(nodeId: string): Promise<string | undefined> {
    const url = await this.#store.call('GET', keys.lease(nodeId));
    return typeof url === 'string' ? url : undefined;
  }

  /** Give up the lease and every registration (graceful stop). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    if (!this.#store.up) return;
    await Promise.allSettled([
      ...[...this.#owned].map(([deviceId, epoch]) =>
        this.#store.run(release, [keys.owner(deviceId)], [`${this.#nodeId}:${epoch}`]),
      ),
      this.#store.call('DEL', keys.lease(this.#nodeId)),
    ]);
    this.#owned.clear();
  }
}
