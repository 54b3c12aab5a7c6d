/**
 * Rights a service policy can hold: IoT Hub's three data-plane rights, and PolicyWrite, the
 * right to manage policies, which IoT Hub keeps in its control plane (Azure Resource Manager)
 * and dstream grants only to the `service` policy made at init (docs/security.md).
 */
export type Right = 'ServiceConnect' | 'RegistryRead' | 'RegistryWrite' | 'PolicyWrite';
export const allRights: readonly Right[] = [
  'ServiceConnect',
  'RegistryRead',
  'RegistryWrite',
  'PolicyWrite',
];

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
}

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
  addDevice(deviceId: string, now?: Date): Promise<DeviceRecord>;
  removeDevice(deviceId: string): Promise<boolean>;
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
