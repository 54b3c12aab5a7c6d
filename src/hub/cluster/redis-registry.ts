import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log/logger.js';
import { DstreamError, describeError } from '../../errors.js';
import {
  AlreadyExistsError,
  PreconditionFailedError,
  type DeviceInit,
  type DeviceRecord,
  type DeviceUpdate,
  type DeviceStatus,
  type PolicyRecord,
  type Registry,
  type RegistryChange,
  type PolicyUpdate,
  type Right,
} from '../store/registry.js';
import { newKey } from '../store/registry.js';
import type { Store, StoreScript } from './store.js';
import { keys } from './keys.js';

type Table = 'devices' | 'policies' | 'settings';

/**
 * Every write is one script: change the hash and publish the key's new value (or its
 * removal) in the same atomic step. Redis runs scripts one at a time, so the messages reach
 * every node in the order the writes happened, and a replica that applies them in order
 * ends where Redis is.
 */
const putIfAbsent: StoreScript = {
  name: 'registry-put-if-absent',
  keys: 1,
  lua: `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[3], cjson.encode({t = ARGV[4], id = ARGV[1], v = ARGV[2], w = ARGV[5]}))
return 1`,
};

const put: StoreScript = {
  name: 'registry-put',
  keys: 1,
  lua: `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], cjson.encode({t = ARGV[4], id = ARGV[1], v = ARGV[2], w = ARGV[5]}))
return 1`,
};

/** Merge fields into an existing JSON record; nil if the record does not exist. */
const patch: StoreScript = {
  name: 'registry-patch',
  keys: 1,
  lua: `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return false end
local record = cjson.decode(current)
for k, v in pairs(cjson.decode(ARGV[2])) do record[k] = v end
local value = cjson.encode(record)
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('PUBLISH', ARGV[3], cjson.encode({t = ARGV[4], id = ARGV[1], v = value, w = ARGV[5]}))
return value`,
};

/**
 * Change a device and count a version, if it exists and (when ARGV[3] is not empty) is at
 * that version: false if missing, -1 if at another version. Records written before versions
 * existed read as version 1.
 */
const updateDevice: StoreScript = {
  name: 'registry-update-device',
  keys: 1,
  lua: `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return false end
local record = cjson.decode(current)
local version = tonumber(record.version) or 1
if ARGV[3] ~= '' and version ~= tonumber(ARGV[3]) then return -1 end
for k, v in pairs(cjson.decode(ARGV[2])) do record[k] = v end
record.version = version + 1
local value = cjson.encode(record)
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('PUBLISH', ARGV[4], cjson.encode({t = ARGV[5], id = ARGV[1], v = value, w = ARGV[6]}))
return value`,
};

/** Remove a device if it exists and (when ARGV[2] is not empty) is at that version; -1 if not. */
const removeDevice: StoreScript = {
  name: 'registry-remove-device',
  keys: 1,
  lua: `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
if ARGV[2] ~= '' and (tonumber(cjson.decode(current).version) or 1) ~= tonumber(ARGV[2]) then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], cjson.encode({t = ARGV[4], id = ARGV[1], w = ARGV[5]}))
return 1`,
};

const remove: StoreScript = {
  name: 'registry-remove',
  keys: 1,
  lua: `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], cjson.encode({t = ARGV[3], id = ARGV[1], w = ARGV[4]}))
return 1`,
};

/**
 * Read the whole registry and, in the same atomic step, publish a marker: the snapshot sits
 * exactly at the marker's place in the stream of registry messages.
 */
const snapshot: StoreScript = {
  name: 'registry-snapshot',
  keys: 3,
  lua: `
redis.call('PUBLISH', ARGV[1], cjson.encode({t = 'sync', id = ARGV[2]}))
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}`,
};

interface Sync {
  readonly id: string;
  seen: boolean;
  readonly after: Message[];
  onSeen?: () => void;
}

interface Message {
  readonly t: Table | 'sync';
  readonly id: string;
  readonly v?: string;
  /** The write's id, so the node that wrote it knows its replica has it. */
  readonly w?: string;
}

function parseMessage(text: string): Message | undefined {
  try {
    const m = JSON.parse(text) as Partial<Message>;
    if (m.t !== 'devices' && m.t !== 'policies' && m.t !== 'settings' && m.t !== 'sync')
      return undefined;
    if (typeof m.id !== 'string' || (m.v !== undefined && typeof m.v !== 'string'))
      return undefined;
    if (m.w !== undefined && typeof m.w !== 'string') return undefined;
    return m as Message;
  } catch {
    return undefined;
  }
}

function toDevice(json: string): DeviceRecord {
  const d = JSON.parse(json) as Partial<DeviceRecord> & Omit<DeviceRecord, 'version'>;
  // cjson writes JSON null back as null, but an absent field must read as null too; records
  // written before versions existed are at version 1.
  // Object.assign: a spread followed by fields is slow in this V8 (stream-endpoint.ts).
  return Object.assign(d, {
    lastActivityTime: d.lastActivityTime ?? null,
    version: d.version ?? 1,
  });
}

function toPolicy(json: string): PolicyRecord {
  return JSON.parse(json) as PolicyRecord;
}

const byId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The cluster registry: devices, policies and settings in three Redis hashes, read from a
 * local replica that every node keeps current over pub/sub.
 *
 * Reads are local, so authentication costs no round trip and goes on while Redis is away
 * (a node keeps serving what it holds). Writes go to Redis first and change the replica
 * only once Redis has them; while Redis is away they fail with ERR_HUB_UNAVAILABLE.
 *
 * Consistency: a write resolves once the writing node's replica has it, and it was published
 * to every node in the same step, so a client that writes through one node and then goes to
 * another finds it there unless that node is behind on its messages by more than the
 * client's round trip. After a lost connection a node reloads everything (see #reload).
 */
export class RedisRegistry implements Registry {
  readonly #devices = new Map<string, DeviceRecord>();
  readonly #policies = new Map<string, PolicyRecord>();
  readonly #settings = new Map<string, string>();
  readonly #listeners: ((change: RegistryChange) => void)[] = [];
  /** Writes of this node waiting for their message to reach the replica. */
  readonly #ownWrites = new Map<string, () => void>();
  /**
   * A reload in flight: its marker's id, whether the marker has arrived, and the messages
   * that came after the marker (newer than the snapshot, so applied again on top of it).
   */
  #sync: Sync | undefined;

  private constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  /** Subscribe, load the whole registry, and keep it current. */
  static async open(store: Store, logger: Logger): Promise<RedisRegistry> {
    const registry = new RedisRegistry(store, logger);
    await store.subscribe(keys.registryChannel, (text) => registry.#onMessage(text));
    store.on('up', () => {
      registry
        .#reload()
        .catch((error: unknown) =>
          logger.warn('cannot reload the registry from redis', { error: describeError(error) }),
        );
    });
    await registry.#reload();
    return registry;
  }

  /**
   * Load everything again (at start, and after a lost connection, when messages may have
   * been missed). Messages keep being applied while the snapshot is on its way, so no write
   * waits on a reload; the messages after the snapshot's marker are applied again on top of
   * it, and those before it are already in it. The marker and the snapshot travel on two
   * connections, so whichever arrives first waits for the other.
   */
  async #reload(): Promise<void> {
    const sync: Sync = {
      id: randomBytes(9).toString('base64url'),
      seen: false,
      after: [],
    };
    this.#sync = sync;
    try {
      const tables = (await this.store.run(
        snapshot,
        [keys.table('devices'), keys.table('policies'), keys.table('settings')],
        [keys.registryChannel, sync.id],
      )) as [string[], string[], string[]];
      if (!sync.seen)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 2000);
          sync.onSeen = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      if (this.#sync !== sync) return; // a newer reload took over
      this.#install(tables);
      for (const message of sync.after) this.#applyChange(message);
    } finally {
      if (this.#sync === sync) this.#sync = undefined;
    }
  }

  #install([devices, policies, settings]: [string[], string[], string[]]): void {
    const previous = new Map(this.#devices);
    this.#devices.clear();
    this.#policies.clear();
    this.#settings.clear();
    for (let i = 0; i + 1 < devices.length; i += 2)
      this.#devices.set(devices[i] as string, toDevice(devices[i + 1] as string));
    for (let i = 0; i + 1 < policies.length; i += 2)
      this.#policies.set(policies[i] as string, toPolicy(policies[i + 1] as string));
    for (let i = 0; i + 1 < settings.length; i += 2)
      this.#settings.set(settings[i] as string, settings[i + 1] as string);
    // Changes missed while disconnected still have to close what they revoke.
    for (const [id, before] of previous) this.#report(id, before, this.#devices.get(id));
  }

  #onMessage(text: string): void {
    const message = parseMessage(text);
    if (!message) {
      this.logger.warn('ignoring an invalid registry message from redis');
      return;
    }
    const sync = this.#sync;
    if (message.t === 'sync') {
      if (sync?.id === message.id) {
        sync.seen = true;
        sync.onSeen?.();
      }
      return;
    }
    if (sync?.seen) sync.after.push(message);
    this.#apply(message);
  }

  #apply(m: Message): void {
    this.#applyChange(m);
    if (m.w !== undefined) this.#ownWrites.get(m.w)?.();
  }

  #applyChange(m: Message): void {
    if (m.t === 'sync') return;
    if (m.t === 'settings') {
      if (m.v === undefined) this.#settings.delete(m.id);
      else this.#settings.set(m.id, m.v);
    } else if (m.t === 'policies') {
      if (m.v === undefined) this.#policies.delete(m.id);
      else this.#policies.set(m.id, toPolicy(m.v));
    } else {
      const before = this.#devices.get(m.id);
      const after = m.v === undefined ? undefined : toDevice(m.v);
      if (after) this.#devices.set(m.id, after);
      else this.#devices.delete(m.id);
      this.#report(m.id, before, after);
    }
  }

  /** Tell watchers what a device change revokes (nothing, for this node's own writes). */
  #report(
    deviceId: string,
    before: DeviceRecord | undefined,
    after: DeviceRecord | undefined,
  ): void {
    if (!before) return;
    let kind: RegistryChange['kind'] | undefined;
    if (!after) kind = 'device-removed';
    else if (before.status === 'enabled' && after.status === 'disabled') kind = 'device-disabled';
    else if (before.primaryKey !== after.primaryKey || before.secondaryKey !== after.secondaryKey)
      kind = 'device-key-changed';
    if (kind) for (const listener of this.#listeners) listener({ kind, deviceId });
  }

  watch(listener: (change: RegistryChange) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Run one write script. The replica changes only through the published messages (applied
   * in Redis's order), never from a script's reply, which travels on another connection and
   * could overtake a later write by another node; so the write resolves once its own message
   * has been applied here (or after a second, if it is lost with the connection).
   */
  async #write(
    what: string,
    script: StoreScript,
    table: Table,
    args: readonly string[],
  ): Promise<unknown> {
    if (!this.store.up)
      throw new DstreamError(
        'ERR_HUB_UNAVAILABLE',
        `cannot ${what}: the cluster store (redis) is unreachable`,
      );
    const writeId = randomBytes(9).toString('base64url');
    let seen!: () => void;
    const applied = new Promise<void>((resolve) => (seen = resolve));
    const timer = setTimeout(seen, 1000);
    this.#ownWrites.set(writeId, seen);
    try {
      const result = await this.store.run(
        script,
        [keys.table(table)],
        [...args, keys.registryChannel, table, writeId],
      );
      // Scripts that changed nothing (0, nil, -1) published nothing.
      if (result === 1 || typeof result === 'string') await applied;
      return result;
    } catch (error) {
      throw new DstreamError('ERR_HUB_UNAVAILABLE', `cannot ${what}: ${describeError(error)}`, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
      this.#ownWrites.delete(writeId);
    }
  }

  getDevice(deviceId: string): DeviceRecord | undefined {
    return this.#devices.get(deviceId);
  }

  listDevices(): DeviceRecord[] {
    return [...this.#devices.values()].sort((a, b) => byId(a.deviceId, b.deviceId));
  }

  getPolicy(name: string): PolicyRecord | undefined {
    return this.#policies.get(name);
  }

  listPolicies(): PolicyRecord[] {
    return [...this.#policies.values()].sort((a, b) => byId(a.name, b.name));
  }

  getSetting(name: string): string | undefined {
    return this.#settings.get(name);
  }

  async addDevice(
    deviceId: string,
    now: Date = new Date(),
    init: DeviceInit = {},
  ): Promise<DeviceRecord> {
    const record: DeviceRecord = {
      deviceId,
      primaryKey: init.primaryKey ?? newKey(),
      secondaryKey: init.secondaryKey ?? newKey(),
      status: init.status ?? 'enabled',
      createdTime: now.toISOString(),
      lastActivityTime: null,
      version: 1,
    };
    const added = await this.#write('add a device', putIfAbsent, 'devices', [
      deviceId,
      JSON.stringify(record),
    ]);
    if (added === 0) throw new AlreadyExistsError(`device '${deviceId}' already exists`);
    return record;
  }

  async removeDevice(deviceId: string, ifVersion?: number): Promise<boolean> {
    const result = await this.#write('remove a device', removeDevice, 'devices', [
      deviceId,
      ifVersion === undefined ? '' : String(ifVersion),
    ]);
    if (result === -1)
      throw new PreconditionFailedError(`device '${deviceId}' changed since it was read`);
    return result === 1;
  }

  async updateDevice(
    deviceId: string,
    update: DeviceUpdate,
    ifVersion?: number,
    what = 'change a device',
  ): Promise<DeviceRecord | undefined> {
    const fields: Partial<DeviceRecord> = {
      ...(update.status && { status: update.status }),
      ...(update.primaryKey && { primaryKey: update.primaryKey }),
      ...(update.secondaryKey && { secondaryKey: update.secondaryKey }),
    };
    const value = await this.#write(what, updateDevice, 'devices', [
      deviceId,
      JSON.stringify(fields),
      ifVersion === undefined ? '' : String(ifVersion),
    ]);
    if (value === -1)
      throw new PreconditionFailedError(`device '${deviceId}' changed since it was read`);
    return typeof value === 'string' ? toDevice(value) : undefined;
  }

  setDeviceStatus(deviceId: string, status: DeviceStatus): Promise<DeviceRecord | undefined> {
    return this.updateDevice(deviceId, { status });
  }

  regenerateKey(
    deviceId: string,
    which: 'primary' | 'secondary',
  ): Promise<DeviceRecord | undefined> {
    return this.updateDevice(
      deviceId,
      which === 'primary' ? { primaryKey: newKey() } : { secondaryKey: newKey() },
      undefined,
      'regenerate a key',
    );
  }

  touchDevice(deviceId: string, when: Date): void {
    if (!this.store.up) return;
    this.#write('record device activity', patch, 'devices', [
      deviceId,
      JSON.stringify({ lastActivityTime: when.toISOString() }),
    ]).catch((error: unknown) =>
      this.logger.debug('cannot record device activity', {
        device: deviceId,
        error: describeError(error),
      }),
    );
  }

  async addPolicy(name: string, rights: readonly Right[]): Promise<PolicyRecord> {
    const record: PolicyRecord = { name, key: newKey(), rights: [...rights] };
    const added = await this.#write('add a policy', putIfAbsent, 'policies', [
      name,
      JSON.stringify(record),
    ]);
    if (added === 0) throw new AlreadyExistsError(`policy '${name}' already exists`);
    return record;
  }

  async updatePolicy(name: string, update: PolicyUpdate): Promise<PolicyRecord | undefined> {
    const fields: Partial<PolicyRecord> = {
      ...(update.rights && { rights: [...update.rights] }),
      ...(update.regenerateKey && { key: newKey() }),
    };
    const value = await this.#write('change a policy', patch, 'policies', [
      name,
      JSON.stringify(fields),
    ]);
    return typeof value === 'string' ? toPolicy(value) : undefined;
  }

  async removePolicy(name: string): Promise<boolean> {
    return (await this.#write('remove a policy', remove, 'policies', [name])) === 1;
  }

  async setSetting(name: string, value: string): Promise<void> {
    await this.#write('save a setting', put, 'settings', [name, value]);
  }

  /** The store is closed by its owner (the cluster node), which may still need it. */
  close(): void {
    this.#listeners.length = 0;
  }
}
