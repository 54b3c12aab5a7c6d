import { randomBytes } from 'node:crypto';
import type { Right } from '../../protocol/rights.js';

export { allRights, type Right } from '../../protocol/rights.js';

/** A change to an existing policy: new rights, a new key, or both. */
export interface PolicyUpdate {
  readonly rights?: readonly Right[] | undefined;
  readonly regenerateKey?: boolean | undefined;
}

export type DeviceStatus = 'enabled' | 'disabled';

export interface DeviceRecord {
  readonly deviceId: string;
  /** Base64 256-bit symmetric keys; either authenticates the device (rotation without lockout). */
  readonly primaryKey: string;
  readonly secondaryKey: string;
  readonly status: DeviceStatus;
  /** ISO 8601 times. */
  readonly createdTime: string;
  readonly lastActivityTime: string | null;
  /**
   * Counts changes of status and keys (1 when made), so that a conditional write (IoT Hub's
   * `If-Match` etag) can tell whether the device changed since the caller read it.
   * Activity times do not count.
   */
  readonly version: number;
}

/** What a device may be created with; what is left out is generated (keys) or defaulted. */
export interface DeviceInit {
  readonly primaryKey?: string | undefined;
  readonly secondaryKey?: string | undefined;
  readonly status?: DeviceStatus | undefined;
}

/** A change to an existing device: what is left out stays as it is. */
export type DeviceUpdate = DeviceInit;

export interface PolicyRecord {
  readonly name: string;
  /** Base64 256-bit symmetric key. */
  readonly key: string;
  readonly rights: readonly Right[];
}

/** Raised by addDevice/addPolicy when the name is taken. */
export class AlreadyExistsError extends Error {
  override readonly name = 'AlreadyExistsError';
}

/**
 * Raised by a conditional write (updateDevice, removeDevice with `ifVersion`) when the
 * device changed since the caller read it.
 */
export class PreconditionFailedError extends Error {
  override readonly name = 'PreconditionFailedError';
}

/** A change another cluster node made to the shared registry (see Registry.watch). */
export interface RegistryChange {
  readonly kind: 'device-removed' | 'device-disabled' | 'device-key-changed';
  readonly deviceId: string;
}

/**
 * The hub's persistent state. Single-node hubs keep it in SQLite (sqlite-registry.ts); a
 * cluster keeps it in Redis (cluster/redis-registry.ts), each node reading from a local
 * replica. Reads are synchronous (they sit on every authentication); writes are async
 * because a shared store answers over the network.
 */
export interface Registry {
  getDevice(deviceId: string): DeviceRecord | undefined;
  listDevices(): DeviceRecord[];
  getPolicy(name: string): PolicyRecord | undefined;
  listPolicies(): PolicyRecord[];
  getSetting(name: string): string | undefined;
  /** Register a device; keys not given are generated. AlreadyExistsError if it exists. */
  addDevice(deviceId: string, now?: Date, init?: DeviceInit): Promise<DeviceRecord>;
  /**
   * Change a device's status or keys; undefined if it does not exist. With `ifVersion`, only
   * if its version is still that one (else PreconditionFailedError), checked in the same
   * atomic step as the write.
   */
  updateDevice(
    deviceId: string,
    update: DeviceUpdate,
    ifVersion?: number,
  ): Promise<DeviceRecord | undefined>;
  /** False if it did not exist; with `ifVersion`, as updateDevice. */
  removeDevice(deviceId: string, ifVersion?: number): Promise<boolean>;
  setDeviceStatus(deviceId: string, status: DeviceStatus): Promise<DeviceRecord | undefined>;
  /** Replace one of a device's keys with a fresh one. */
  regenerateKey(
    deviceId: string,
    which: 'primary' | 'secondary',
  ): Promise<DeviceRecord | undefined>;
  addPolicy(name: string, rights: readonly Right[]): Promise<PolicyRecord>;
  /** Change a policy's rights or key; undefined if it does not exist. */
  updatePolicy(name: string, update: PolicyUpdate): Promise<PolicyRecord | undefined>;
  removePolicy(name: string): Promise<boolean>;
  setSetting(name: string, value: string): Promise<void>;
  /** Best effort: a lost update of the last-activity time harms nobody. */
  touchDevice(deviceId: string, when: Date): void;
  /**
   * Changes made elsewhere (another cluster node), so this node can close what they revoke.
   * Changes made through this object are not reported: the caller acts on them itself.
   */
  watch?(listener: (change: RegistryChange) => void): void;
  close(): void;
}

/** A fresh random 256-bit key, base64: a new device's or policy's key, whatever the store. */
export function newKey(): string {
  return randomBytes(32).toString('base64');
}
