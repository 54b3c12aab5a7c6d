/** What the table needs to know of a stream record. */
export interface TableEntry {
  readonly id: string;
  readonly deviceId: string;
  /** Bytes relayed so far, service->device (a) and device->service (b). */
  readonly counts: { readonly a: number; readonly b: number };
}

/**
 * The hub's streams not yet finished (waiting, relaying or resuming), by id, with a count per
 * device for the per-device limit, and the bytes of those that finished, for metrics.
 */
export class StreamTable<R extends TableEntry> {
  readonly #byId = new Map<string, R>();
  readonly #perDevice = new Map<string, number>();
  readonly #finishedBytes = { toDevice: 0, fromDevice: 0 };

  get size(): number {
    return this.#byId.size;
  }

  get(id: string): R | undefined {
    return this.#byId.get(id);
  }

  /** A snapshot, safe to end streams while iterating. */
  all(): R[] {
    return [...this.#byId.values()];
  }

  /** Streams of one device not yet finished. */
  countFor(deviceId: string): number {
    return this.#perDevice.get(deviceId) ?? 0;
  }

  add(record: R): void {
    this.#byId.set(record.id, record);
    this.#perDevice.set(record.deviceId, this.countFor(record.deviceId) + 1);
  }

  /** Forget a finished stream; false if it was already gone. */
  remove(record: R): boolean {
    // By identity, not id: a resumed stream's new record has the id of the old one, whose
    // relay may report its end after the new record took its place.
    if (this.#byId.get(record.id) !== record) return false;
    this.#byId.delete(record.id);
    const n = this.countFor(record.deviceId) - 1;
    if (n > 0) this.#perDevice.set(record.deviceId, n);
    else this.#perDevice.delete(record.deviceId);
    return true;
  }

  /** A removed stream's relay finished with these byte counts. */
  addFinishedBytes(toDevice: number, fromDevice: number): void {
    this.#finishedBytes.toDevice += toDevice;
    this.#finishedBytes.fromDevice += fromDevice;
  }

  /** Bytes relayed by all streams, finished and running. O(open streams). */
  bytesRelayed(): { toDevice: number; fromDevice: number } {
    let { toDevice, fromDevice } = this.#finishedBytes;
    for (const record of this.#byId.values()) {
      toDevice += record.counts.a;
      fromDevice += record.counts.b;
    }
    return { toDevice, fromDevice };
  }
}
