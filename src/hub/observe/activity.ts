/** What the sampler needs of a stream (open, or just ended). */
export interface StreamBytes {
  readonly id: string;
  readonly deviceId: string;
  readonly bytesToDevice: number;
  readonly bytesFromDevice: number;
}

/** One point of the hub's last hour (`GET /hub`'s history, the console's charts). */
export interface ActivitySample {
  /** Time (ms since the epoch). */
  readonly t: number;
  readonly openStreams: number;
  /** New streams a second since the sample before. */
  readonly newStreams: number;
  /** Bytes relayed a second, both directions, since the sample before. */
  readonly bytes: number;
}

/** What the activity sampler reads from the stream endpoint. */
export interface ActivitySource {
  readonly size: number;
  readonly createdTotal: number;
  list(): readonly StreamBytes[];
  bytesRelayed(): { toDevice: number; fromDevice: number };
}

const hourMs = 3600_000;
const minuteMs = 60_000;

/**
 * The hub's last hour: a sample of open streams, new streams a second and bytes a second every
 * `everyMs`, and the bytes each device moved per minute. Memory: one sample per interval for
 * an hour, and 60 counters per device that moved bytes within the hour.
 */
export class HubActivity {
  readonly #samples: ActivitySample[] = [];
  readonly #timer: NodeJS.Timeout;
  /** Per device, bytes per minute: minute number -> bytes. */
  readonly #deviceMinutes = new Map<string, Map<number, number>>();
  /** Per open stream, the bytes already counted into its device's minutes. */
  readonly #counted = new Map<string, number>();
  #last: { readonly t: number; readonly created: number; readonly bytes: number };

  constructor(
    private readonly source: ActivitySource,
    readonly everyMs = 5_000,
  ) {
    this.#last = { t: Date.now(), created: source.createdTotal, bytes: this.#bytes() };
    this.#timer = setInterval(() => this.sample(), everyMs);
    this.#timer.unref();
  }

  #bytes(): number {
    const { toDevice, fromDevice } = this.source.bytesRelayed();
    return toDevice + fromDevice;
  }

  /** Take a sample now (the timer does this every `everyMs`). */
  sample(now = Date.now()): void {
    const created = this.source.createdTotal;
    const bytes = this.#bytes();
    const seconds = Math.max(0.001, (now - this.#last.t) / 1000);
    this.#samples.push({
      t: now,
      openStreams: this.source.size,
      newStreams: (created - this.#last.created) / seconds,
      bytes: Math.max(0, bytes - this.#last.bytes) / seconds,
    });
    this.#last = { t: now, created, bytes };
    while ((this.#samples[0]?.t ?? now) < now - hourMs) this.#samples.shift();
    const seen = new Set<string>();
    for (const stream of this.source.list()) {
      seen.add(stream.id);
      this.#count(stream.id, stream.deviceId, stream.bytesToDevice + stream.bytesFromDevice, now);
    }
    // Streams that ended were counted in full by `ended`; forget what is left.
    for (const id of this.#counted.keys()) if (!seen.has(id)) this.#counted.delete(id);
    this.#forgetOld(now);
  }

  /** A stream ended: the bytes not yet counted go to its device's current minute. */
  ended(info: StreamBytes, now = Date.now()): void {
    this.#count(info.id, info.deviceId, info.bytesToDevice + info.bytesFromDevice, now);
    this.#counted.delete(info.id);
  }

  #count(id: string, deviceId: string, total: number, now: number): void {
    const before = this.#counted.get(id) ?? 0;
    // A resumed stream's new record counts from zero again.
    const delta = total >= before ? total - before : total;
    this.#counted.set(id, total);
    if (delta === 0) return;
    const minute = Math.floor(now / minuteMs);
    const minutes = this.#deviceMinutes.get(deviceId) ?? new Map<number, number>();
    this.#deviceMinutes.set(deviceId, minutes);
    minutes.set(minute, (minutes.get(minute) ?? 0) + delta);
  }

  #forgetOld(now: number): void {
    const oldest = Math.floor((now - hourMs) / minuteMs);
    for (const [deviceId, minutes] of this.#deviceMinutes) {
      for (const minute of minutes.keys()) if (minute <= oldest) minutes.delete(minute);
      if (minutes.size === 0) this.#deviceMinutes.delete(deviceId);
    }
  }

  /** The samples of the last hour, oldest first. */
  history(): readonly ActivitySample[] {
    return this.#samples;
  }

  /** Bytes each device moved in the last hour (both directions; devices that moved none absent). */
  bytesLastHour(now = Date.now()): Map<string, number> {
    const oldest = Math.floor((now - hourMs) / minuteMs);
    const result = new Map<string, number>();
    for (const [deviceId, minutes] of this.#deviceMinutes) {
      let sum = 0;
      for (const [minute, bytes] of minutes) if (minute > oldest) sum += bytes;
      if (sum > 0) result.set(deviceId, sum);
    }
    return result;
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
