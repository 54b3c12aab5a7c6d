/** Rights a service policy can hold (IoT Hub's names). */
export type Right = 'ServiceConnect' | 'RegistryRead' | 'RegistryWrite';
export const allRights: readonly Right[] = ['ServiceConnect', 'RegistryRead', 'RegistryWrite'];

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

/**
 * The hub's persistent state. Single-node hubs keep it in SQLite (sqlite-registry.ts);
 * the interface is small so another store can stand behind it.
 */
export interface Registry {
  addDevice(deviceId: string, now?: Date): DeviceRecord;
  getDevice(deviceId: string): DeviceRecord | undefined;
  listDevices(): DeviceRecord[];
  removeDevice(deviceId: string): boolean;
  setDeviceStatus(deviceId: string, status: DeviceStatus): DeviceRecord | undefined;
  touchDevice(deviceId: string, when: Date): void;
  /** Replace one of a device's keys with a fresh one. */
  regenerateKey(deviceId: string, which: 'primary' | 'secondary'): DeviceRecord | undefined;
  listPolicies(): PolicyRecord[];
  removePolicy(name: string): boolean;
  addPolicy(name: string, rights: readonly Right[]): PolicyRecord;
  getPolicy(name: string): PolicyRecord | undefined;
  getSetting(name: string): string | undefined;
  setSetting(name: string, value: string): void;
  close(): void;
}
