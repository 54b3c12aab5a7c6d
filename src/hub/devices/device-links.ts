import type { Logger } from '../../log/logger.js';
import { closeCodes } from '../../protocol/constants.js';
import type {
  StreamRequestMessage,
  StreamResponseMessage,
} from '../../protocol/control-messages.js';
import type { Registry } from '../store/registry.js';
import type { AbortLike } from '../../runtime/hangup.js';
import type {
  AttachedLink,
  DeviceAnswer,
  DeviceLink,
  DevicePresence,
  DeviceProtocol,
  OfferCarrier,
} from './device-link.js';

interface Pending {
  readonly resolve: (answer: DeviceAnswer) => void;
  readonly timer: NodeJS.Timeout;
  /** Set while the request is an offer on a carrier connection: stop it (timed out, cancelled). */
  withdraw?: (() => void) | undefined;
}

interface Connection {
  readonly link: DeviceLink;
  readonly deviceId: string;
  readonly pending: Map<string, Pending>;
  /** When this link came online (ms). */
  readonly since: number;
}

/** A device online here, as the REST API and the console show it. */
export interface OnlineDevice {
  readonly deviceId: string;
  readonly protocol: DeviceProtocol;
  readonly remote: string | undefined;
  /** When its current link came online (ms). */
  readonly since: number;
}

/**
 * The devices online here, one link each (the control WebSocket or MQTT): the hub sends
 * stream requests on a device's link and waits for its answer.
 */
export class DeviceLinks {
  readonly #online = new Map<string, Connection>();
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #watchers = new Set<(deviceId: string) => void>();
  /** Devices' carrier connections that take stream offers, the newest last. */
  readonly #carriers = new Map<string, OfferCarrier[]>();
  #presence: DevicePresence | undefined;
  /** Stream requests sent since start, by the way they went (metrics). */
  readonly #sent = { control: 0, carrier: 0 };

  constructor(
    private readonly registry: Registry,
    private readonly logger: Logger,
  ) {}

  /** Stream requests sent to devices since start: on their link, or as offers on a carrier. */
  get requestsSent(): { readonly control: number; readonly carrier: number } {
    return { ...this.#sent };
  }

  /**
   * A device's carrier connection that takes stream offers: its stream requests go there (the
   * newest such connection) while it is open. Returns the detach, for when it closes. The
   * device's link still says whether it is online; without a link nothing is offered.
   */
  attachCarrier(deviceId: string, carrier: OfferCarrier): () => void {
    const list = this.#carriers.get(deviceId) ?? [];
    list.push(carrier);
    this.#carriers.set(deviceId, list);
    return () => {
      const at = list.indexOf(carrier);
      if (at >= 0) list.splice(at, 1);
      if (list.length === 0 && this.#carriers.get(deviceId) === list)
        this.#carriers.delete(deviceId);
    };
  }

  /** True while a carrier connection of the device takes its stream requests as offers. */
  takesOffers(deviceId: string): boolean {
    return this.#carriers.has(deviceId);
  }

  /** Number of devices online. */
  get size(): number {
    return this.#online.size;
  }

  isOnline(deviceId: string): boolean {
    return this.#online.has(deviceId);
  }

  /** Devices online here. */
  onlineDevices(): string[] {
    return [...this.#online.keys()];
  }

  /** The devices online here with how and since when they are connected. O(devices online). */
  describe(): OnlineDevice[] {
    return [...this.#online.values()].map((conn) => ({
      deviceId: conn.deviceId,
      protocol: conn.link.protocol,
      remote: conn.link.remote,
      since: conn.since,
    }));
  }

  /** Call `listener` whenever a device comes online or goes offline here; returns an unwatch. */
  watch(listener: (deviceId: string) => void): () => void {
    this.#watchers.add(listener);
    return () => this.#watchers.delete(listener);
  }

  #changed(deviceId: string): void {
    for (const listener of this.#watchers) listener(deviceId);
  }

  /** Report connections starting and ending (set once, before any device connects). */
  setPresence(presence: DevicePresence): void {
    this.#presence = presence;
  }

  /**
   * Put an authenticated device's link online (any carrier). A newer link for the same device
   * replaces the older one, which is closed: one control connection per device, as IoT Hub.
   */
  attach(deviceId: string, link: DeviceLink): AttachedLink {
    const previous = this.#online.get(deviceId);
    if (previous) {
      this.logger.info('device reconnected; closing its older control connection', {
        device: deviceId,
      });
      this.#drop(previous, 'replaced');
      previous.link.close(closeCodes.replaced, 'replaced by a newer connection');
    }
    const conn: Connection = { link, deviceId, pending: new Map(), since: Date.now() };
    this.#online.set(deviceId, conn);
    this.registry.touchDevice(deviceId, new Date());
    this.#presence?.online(deviceId);
    this.#changed(deviceId);
    this.logger.info('device connected', {
      device: deviceId,
      remote: link.remote,
      ...(link.protocol !== 'websocket' && { protocol: link.protocol }),
    });
    for (const wake of this.#waiters.get(deviceId) ?? []) wake();
    let ended = false;
    return {
      answer: (message) => this.#answer(conn, message),
      closed: (detail = {}) => {
        if (ended) return;
        ended = true;
        // A replaced or disconnected link is already off the list; only the current one
        // takes the device offline.
        if (this.#online.get(deviceId) !== conn) return;
        this.#online.delete(deviceId);
        this.#drop(conn, 'disconnected');
        this.registry.touchDevice(deviceId, new Date());
        this.#presence?.offline(deviceId);
        this.#changed(deviceId);
        this.logger.info('device disconnected', { device: deviceId, ...detail });
      },
    };
  }

  /** Devices online here by the protocol that carries their control channel (metrics). */
  countByProtocol(): Record<DeviceProtocol, number> {
    const counts: Record<DeviceProtocol, number> = { websocket: 0, mqtt: 0 };
    for (const conn of this.#online.values()) counts[conn.link.protocol]++;
    return counts;
  }

  #answer(conn: Connection, message: StreamResponseMessage): void {
    const pending = conn.pending.get(message.requestId);
    if (!pending) return; // answered too late: the request already timed out
    conn.pending.delete(message.requestId);
    clearTimeout(pending.timer);
    pending.resolve({ kind: 'answered', response: message });
  }

  /** Fail every request still waiting on this connection. */
  #drop(conn: Connection, why: 'replaced' | 'disconnected'): void {
    for (const pending of conn.pending.values()) {
      clearTimeout(pending.timer);
      pending.withdraw?.();
      pending.resolve({ kind: 'disconnected' });
    }
    conn.pending.clear();
    if (why === 'replaced') this.#online.delete(conn.deviceId);
  }

  /** Wait up to `ms` for a device to come online; true if it is online now. */
  waitOnline(deviceId: string, ms: number, signal: AbortLike): Promise<boolean> {
    if (this.#online.has(deviceId)) return Promise.resolve(true);
    if (ms <= 0 || signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const set = this.#waiters.get(deviceId) ?? new Set();
      this.#waiters.set(deviceId, set);
      const finish = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', finish);
        set.delete(finish);
        if (set.size === 0) this.#waiters.delete(deviceId);
        resolve(this.#online.has(deviceId));
      };
      const timer = setTimeout(finish, ms);
      signal.addEventListener('abort', finish);
      set.add(finish);
    });
  }

  /** Stream requests sent to a device and not yet answered. */
  pendingFor(deviceId: string): number {
    return this.#online.get(deviceId)?.pending.size ?? 0;
  }

  /**
   * Tell every device to go elsewhere (close 1001, going away): agents reconnect at once,
   * through the load balancer to another node, or back here once the hub is up again.
   */
  goAway(reason: string): void {
    for (const conn of [...this.#online.values()]) {
      this.#online.delete(conn.deviceId);
      this.#drop(conn, 'disconnected');
      this.#presence?.offline(conn.deviceId);
      this.#changed(conn.deviceId);
      conn.link.close(closeCodes.goingAway, reason);
    }
  }

  /**
   * Send a stream request and wait up to `timeoutMs` for the device's answer: as an offer on
   * the device's carrier connection when it has one that takes them, else on its link (and on
   * its link too when that carrier connection is lost before the device answered).
   */
  request(
    deviceId: string,
    message: StreamRequestMessage,
    timeoutMs: number,
    /** The device's first ticket, for an offer on its carrier connection (not the link's). */
    ticket?: string,
  ): Promise<DeviceAnswer> {
    const conn = this.#online.get(deviceId);
    if (!conn) return Promise.resolve({ kind: 'disconnected' });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        conn.pending.delete(message.requestId);
        pending.withdraw?.();
        resolve({ kind: 'timeout' });
      }, timeoutMs);
      const pending: Pending = { resolve, timer };
      conn.pending.set(message.requestId, pending);
      const carrier = this.#carriers.get(deviceId)?.at(-1);
      if (!carrier) {
        this.#sent.control++;
        return conn.link.send(message);
      }
      this.#sent.carrier++;
      pending.withdraw = carrier.offer(
        message,
        ticket,
        (accepted, reason) =>
          this.#answer(conn, {
            type: 'stream-response',
            requestId: message.requestId,
            accepted,
            ...(reason !== undefined && { reason }),
          }),
        () => {
          pending.withdraw = undefined;
          // Still waiting on a link that is still this device's: ask there instead.
          if (conn.pending.get(message.requestId) !== pending) return;
          if (this.#online.get(deviceId) !== conn) return;
          this.#sent.control++;
          conn.link.send(message);
        },
      );
    });
  }

  /** Forget a request (the service gave up); a late answer is then ignored. */
  cancel(deviceId: string, requestId: string): void {
    const conn = this.#online.get(deviceId);
    const pending = conn?.pending.get(requestId);
    if (conn && pending) {
      clearTimeout(pending.timer);
      conn.pending.delete(requestId);
      pending.withdraw?.();
    }
  }

  /** Close a device's control connection (disabled or removed). */
  disconnect(deviceId: string, reason: string, code: number = closeCodes.shutdown): void {
    const conn = this.#online.get(deviceId);
    if (!conn) return;
    this.#online.delete(deviceId);
    this.#drop(conn, 'disconnected');
    this.#presence?.offline(deviceId);
    this.#changed(deviceId);
    conn.link.close(code, reason);
  }

  /** Close every control connection. */
  close(): void {
    for (const id of [...this.#online.keys()]) this.disconnect(id, 'hub shutting down');
  }
}
