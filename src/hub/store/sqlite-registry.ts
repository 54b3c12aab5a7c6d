import Database from 'better-sqlite3';
import {
  AlreadyExistsError,
  PreconditionFailedError,
  type DeviceInit,
  type DeviceRecord,
  type DeviceUpdate,
  type DeviceStatus,
  type PolicyRecord,
  type Registry,
  type PolicyUpdate,
  type Right,
  newKey,
} from './registry.js';
import { BoundedMemory } from '../base/bounded-memory.js';

interface DeviceRow {
  device_id: string;
  primary_key: string;
  secondary_key: string;
  status: DeviceStatus;
  created_time: string;
  last_activity_time: string | null;
  version: number;
}

interface PolicyRow {
  name: string;
  key: string;
  rights: string;
}

const schema = `
CREATE TABLE IF NOT EXISTS devices (
  device_id TEXT PRIMARY KEY,
  primary_key TEXT NOT NULL,
  secondary_key TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
  created_time TEXT NOT NULL,
  last_activity_time TEXT,
  version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS policies (
  name TEXT PRIMARY KEY,
  key TEXT NOT NULL,
  rights TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`;

/**
 * Run a start-up step again while another process holds the database lock (at most 10 s).
 * Synchronous, as the constructor is: it runs once, before the hub serves anything.
 */
function retryWhileBusy<T>(step: () => T): T {
  const deadline = Date.now() + 10_000;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (let waitMs = 5; ; waitMs = Math.min(waitMs * 2, 200)) {
    try {
      return step();
    } catch (error) {
      const busy = (error as { code?: unknown }).code === 'SQLITE_BUSY';
      if (!busy || Date.now() > deadline) throw error;
      Atomics.wait(sleeper, 0, 0, waitMs);
    }
  }
}

function toPolicy(row: PolicyRow): PolicyRecord {
  return { name: row.name, key: row.key, rights: row.rights.split(',').filter(Boolean) as Right[] };
}

function toDevice(row: DeviceRow): DeviceRecord {
  return {
    deviceId: row.device_id,
    primaryKey: row.primary_key,
    secondaryKey: row.secondary_key,
    status: row.status,
    createdTime: row.created_time,
    lastActivityTime: row.last_activity_time,
    version: row.version,
  };
}

/** Bring a registry made by an older dstream up to the current schema. */
function migrate(db: Database.Database): void {
  const columns = db.prepare<[], { name: string }>(`PRAGMA table_info(devices)`).all();
  if (!columns.some((c) => c.name === 'secondary_key')) {
    db.exec(`ALTER TABLE devices ADD COLUMN secondary_key TEXT NOT NULL DEFAULT ''`);
    const rows = db.prepare<[], { device_id: string }>(`SELECT device_id FROM devices`).all();
    const set = db.prepare(`UPDATE devices SET secondary_key = ? WHERE device_id = ?`);
    for (const row of rows) set.run(newKey(), row.device_id);
  }
  if (!columns.some((c) => c.name === 'version'))
    db.exec(`ALTER TABLE devices ADD COLUMN version INTEGER NOT NULL DEFAULT 1`);
}

/** Run an INSERT; a primary-key clash becomes AlreadyExistsError naming `what`. */
function insertUnique(what: string, insert: () => unknown): void {
  try {
    insert();
  } catch (error) {
    if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY')
      throw new AlreadyExistsError(`${what} already exists`);
    throw error;
  }
}

/** PreconditionFailedError unless the device is at the version the caller read. */
function checkVersion(deviceId: string, current: DeviceRecord, ifVersion?: number): void {
  if (ifVersion !== undefined && current.version !== ifVersion)
    throw new PreconditionFailedError(`device '${deviceId}' changed since it was read`);
}

/** Run a synchronous statement behind the async Registry interface: a throw becomes a rejection. */
function settle<T>(run: () => T): Promise<T> {
  // A throw inside the executor rejects the promise.
  return new Promise((resolve) => resolve(run()));
}

/**
 * How long a change another process made to the file (`dstream hub init` on a running hub's
 * data dir, a tool filling it) may go unseen by the records read lately. This hub's own
 * changes are seen at once.
 */
const externalChangeLatencyMs = 100;

/** The embedded registry: one SQLite file, synchronous, durable (WAL). */
export class SqliteRegistry implements Registry {
  readonly #db: Database.Database;
  readonly #stmts;
  /**
   * Devices and policies read lately: every stream's initiation reads both, and a statement
   * and its row's conversion were a tenth of the hub's time in a run of new streams
   * (docs/benchmark.md). Writes read the file itself, never these.
   */
  readonly #devices = new BoundedMemory<DeviceRecord>(10_000);
  readonly #policies = new BoundedMemory<PolicyRecord>(1_000);
  /** SQLite's count of changes other connections committed, when last looked at. */
  #dataVersion = -1;
  #dataVersionAt = 0;

  constructor(file: string) {
    this.#db = new Database(file);
    // `dstream hub` and `hub init` may open a fresh registry at the same moment: switching to
    // WAL and creating the schema can then answer SQLITE_BUSY at once, without waiting on the
    // busy timeout, while the other process holds the lock for a few milliseconds.
    retryWhileBusy(() => this.#db.pragma('journal_mode = WAL'));
    this.#db.pragma('synchronous = NORMAL');
    retryWhileBusy(() => this.#db.exec(schema));
    retryWhileBusy(() => migrate(this.#db));
    const db = this.#db;
    this.#stmts = {
      insertDevice: db.prepare<[string, string, string, DeviceStatus, string]>(
        `INSERT INTO devices (device_id, primary_key, secondary_key, status, created_time) VALUES (?, ?, ?, ?, ?)`,
      ),
      getDevice: db.prepare<[string], DeviceRow>(`SELECT * FROM devices WHERE device_id = ?`),
      listDevices: db.prepare<[], DeviceRow>(`SELECT * FROM devices ORDER BY device_id`),
      removeDevice: db.prepare<[string]>(`DELETE FROM devices WHERE device_id = ?`),
      // Every change of status or keys counts one version (activity times do not).
      setDevice: db.prepare<[DeviceStatus, string, string, string]>(
        `UPDATE devices SET status = ?, primary_key = ?, secondary_key = ?, version = version + 1 WHERE device_id = ?`,
      ),
      touch: db.prepare<[string, string]>(
        `UPDATE devices SET last_activity_time = ? WHERE device_id = ?`,
      ),
      insertPolicy: db.prepare<[string, string, string]>(
        `INSERT INTO policies (name, key, rights) VALUES (?, ?, ?)`,
      ),
      getPolicy: db.prepare<[string], PolicyRow>(`SELECT * FROM policies WHERE name = ?`),
      listPolicies: db.prepare<[], PolicyRow>(`SELECT * FROM policies ORDER BY name`),
      removePolicy: db.prepare<[string]>(`DELETE FROM policies WHERE name = ?`),
      setPolicy: db.prepare<[string, string, string]>(
        `UPDATE policies SET rights = ?, key = ? WHERE name = ?`,
      ),
      // Changes when another connection (process) commits to the file; not for this one's.
      dataVersion: db.prepare<[], number>(`PRAGMA data_version`).pluck(),
      getSetting: db.prepare<[string], { value: string }>(
        `SELECT value FROM settings WHERE name = ?`,
      ),
      setSetting: db.prepare<[string, string]>(
        `INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value`,
      ),
    };
  }

  addDevice(
    deviceId: string,
    now: Date = new Date(),
    init: DeviceInit = {},
  ): Promise<DeviceRecord> {
    return settle(() => this.addDeviceNow(deviceId, now, init));
  }

  /** addDevice, synchronously (for tools that fill a registry file directly). */
  addDeviceNow(deviceId: string, now: Date = new Date(), init: DeviceInit = {}): DeviceRecord {
    insertUnique(`device '${deviceId}'`, () =>
      this.#stmts.insertDevice.run(
        deviceId,
        init.primaryKey ?? newKey(),
        init.secondaryKey ?? newKey(),
        init.status ?? 'enabled',
        now.toISOString(),
      ),
    );
    return this.#readDevice(deviceId) as DeviceRecord;
  }

  getDevice(deviceId: string): DeviceRecord | undefined {
    return this.#keptOrRead(this.#devices, deviceId, (id) => this.#readDevice(id));
  }

  /** A record read lately, or read now (and kept if found). */
  #keptOrRead<T>(
    kept: BoundedMemory<T>,
    key: string,
    read: (key: string) => T | undefined,
  ): T | undefined {
    this.#forgetIfChangedElsewhere();
    const known = kept.get(key);
    if (known) return known;
    const found = read(key);
    if (found) kept.set(key, found);
    return found;
  }

  /** From the file, for a write (a read record may be up to the latency above old). */
  #readDevice(deviceId: string): DeviceRecord | undefined {
    const row = this.#stmts.getDevice.get(deviceId);
    return row && toDevice(row);
  }

  #readPolicy(name: string): PolicyRecord | undefined {
    const row = this.#stmts.getPolicy.get(name);
    return row && toPolicy(row);
  }

  /** Drop the records read lately if another process committed a change since. */
  #forgetIfChangedElsewhere(): void {
    const now = Date.now();
    if (now - this.#dataVersionAt < externalChangeLatencyMs) return;
    this.#dataVersionAt = now;
    const version = this.#stmts.dataVersion.get() as number;
    if (version === this.#dataVersion) return;
    this.#dataVersion = version;
    this.#devices.clear();
    this.#policies.clear();
  }

  listDevices(): DeviceRecord[] {
    return this.#stmts.listDevices.all().map(toDevice);
  }

  removeDevice(deviceId: string, ifVersion?: number): Promise<boolean> {
    // Synchronous: nothing else runs between the check and the delete.
    return settle(() => {
      this.#devices.delete(deviceId);
      const current = this.#readDevice(deviceId);
      if (!current) return false;
      checkVersion(deviceId, current, ifVersion);
      return this.#stmts.removeDevice.run(deviceId).changes > 0;
    });
  }

  updateDevice(
    deviceId: string,
    update: DeviceUpdate,
    ifVersion?: number,
  ): Promise<DeviceRecord | undefined> {
    return settle(() => {
      this.#devices.delete(deviceId);
      const current = this.#readDevice(deviceId);
      if (!current) return undefined;
      checkVersion(deviceId, current, ifVersion);
      this.#stmts.setDevice.run(
        update.status ?? current.status,
        update.primaryKey ?? current.primaryKey,
        update.secondaryKey ?? current.secondaryKey,
        deviceId,
      );
      return this.#readDevice(deviceId);
    });
  }

  setDeviceStatus(deviceId: string, status: DeviceStatus): Promise<DeviceRecord | undefined> {
    return this.updateDevice(deviceId, { status });
  }

  touchDevice(deviceId: string, when: Date): void {
    this.#devices.delete(deviceId);
    this.#stmts.touch.run(when.toISOString(), deviceId);
  }

  addPolicy(name: string, rights: readonly Right[]): Promise<PolicyRecord> {
    return settle(() => this.addPolicyNow(name, rights));
  }

  /** addPolicy, synchronously. */
  addPolicyNow(name: string, rights: readonly Right[]): PolicyRecord {
    insertUnique(`policy '${name}'`, () =>
      this.#stmts.insertPolicy.run(name, newKey(), rights.join(',')),
    );
    return this.#readPolicy(name) as PolicyRecord;
  }

  getPolicy(name: string): PolicyRecord | undefined {
    return this.#keptOrRead(this.#policies, name, (n) => this.#readPolicy(n));
  }

  listPolicies(): PolicyRecord[] {
    return this.#stmts.listPolicies.all().map(toPolicy);
  }

  removePolicy(name: string): Promise<boolean> {
    return settle(() => {
      this.#policies.delete(name);
      return this.#stmts.removePolicy.run(name).changes > 0;
    });
  }

  updatePolicy(name: string, update: PolicyUpdate): Promise<PolicyRecord | undefined> {
    return settle(() => {
      this.#policies.delete(name);
      const current = this.#readPolicy(name);
      if (!current) return undefined;
      const rights = update.rights ?? current.rights;
      const key = update.regenerateKey ? newKey() : current.key;
      this.#stmts.setPolicy.run(rights.join(','), key, name);
      return this.#readPolicy(name);
    });
  }

  regenerateKey(
    deviceId: string,
    which: 'primary' | 'secondary',
  ): Promise<DeviceRecord | undefined> {
    return this.updateDevice(
      deviceId,
      which === 'primary' ? { primaryKey: newKey() } : { secondaryKey: newKey() },
    );
  }

  getSetting(name: string): string | undefined {
    return this.#stmts.getSetting.get(name)?.value;
  }

  setSetting(name: string, value: string): Promise<void> {
    return settle(() => void this.#stmts.setSetting.run(name, value));
  }

  close(): void {
    this.#db.close();
  }
}
