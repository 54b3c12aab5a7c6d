import { describeError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import type { OnlineDevice } from '../devices/device-links.js';
import type { OpenStream } from '../streams/stream-endpoint.js';
import { keys } from './keys.js';
import type { Store } from './store.js';

/** What one node says about itself for the operator API (`GET /streams`, `/hub/devices`). */
export interface NodeView {
  readonly node: string;
  readonly url: string;
  /** When it was written (ms). */
  readonly at: number;
  readonly devices: readonly OnlineDevice[];
  readonly streams: readonly OpenStream[];
  /** Bytes per device in the last hour, of the streams this node relayed. */
  readonly bytesLastHour: readonly (readonly [string, number])[];
}

/** What a node gives its view from: its live tables. */
export interface LocalView {
  devices(): OnlineDevice[];
  streams(): OpenStream[];
  bytesLastHour(): Map<string, number>;
  /** End one of its streams on another node's request; false if there is no such stream. */
  endStream(id: string, reason: string): boolean;
}

/** The most a view carries (a bigger node's lists are cut, docs/cluster.md). */
const viewLimits = { devices: 20_000, streams: 5_000 } as const;

/** How often a wanted view is written, and how long it lives in Redis. */
const everyMs = 2_000;
const lifetimeMs = 6_000;
/** How long one cluster-wide read keeps the nodes writing their views. */
const wantedForMs = 30_000;

type ViewCommand = { readonly t: 'end'; readonly id: string; readonly reason: string };

/**
 * The cluster as the operator API sees it: every node writes what it holds (devices online,
 * open streams) to Redis, as `dstream:view:<node>`, every 2 s, but only while someone looks:
 * a cluster-wide read sets `dstream:view-wanted` for 30 s, and the first read after a quiet
 * spell asks every node to write at once and waits (up to a second) for them. A fleet nobody
 * watches costs one PTTL a node every 2 s.
 */
export class ClusterView {
  #timer: NodeJS.Timeout | undefined;
  #local: LocalView | undefined;

  constructor(
    private readonly store: Store,
    private readonly nodeId: string,
    private readonly url: string,
    private readonly logger: Logger,
  ) {}

  async start(local: LocalView): Promise<void> {
    this.#local = local;
    await this.store.subscribe(keys.viewWantedChannel, () => this.#writeQuietly());
    await this.store.subscribe(keys.viewChannel(this.nodeId), (text) => this.#onCommand(text));
    this.#timer = setInterval(() => {
      this.store
        .call('PTTL', keys.viewWanted)
        .then((ttl) => {
          if (typeof ttl === 'number' && ttl > 0) return this.#write();
        })
        .catch((error: unknown) =>
          this.logger.debug('cannot write this node view', { error: describeError(error) }),
        );
    }, everyMs);
    this.#timer.unref();
  }

  #onCommand(text: string): void {
    let command: ViewCommand;
    try {
      command = JSON.parse(text) as ViewCommand;
    } catch {
      return;
    }
    if (command.t === 'end' && typeof command.id === 'string')
      this.#local?.endStream(command.id, String(command.reason));
  }

  #writeQuietly(): void {
    this.#write().catch((error: unknown) =>
      this.logger.debug('cannot write this node view', { error: describeError(error) }),
    );
  }

  async #write(): Promise<void> {
    const local = this.#local;
    if (!local || !this.store.up) return;
    const view: NodeView = {
      node: this.nodeId,
      url: this.url,
      at: Date.now(),
      devices: local.devices().slice(0, viewLimits.devices),
      streams: local.streams().slice(0, viewLimits.streams),
      bytesLastHour: [...local.bytesLastHour()],
    };
    await this.store.call('SET', keys.view(this.nodeId), JSON.stringify(view), 'PX', lifetimeMs);
  }

  /** The ids of the nodes whose lease is alive (this one included). */
  async nodes(): Promise<string[]> {
    const ids: string[] = [];
    let cursor = '0';
    do {
      const reply = (await this.store.call(
        'SCAN',
        cursor,
        'MATCH',
        `${keys.leasePrefix}*`,
        'COUNT',
        1000,
      )) as [string, string[]];
      cursor = reply[0];
      for (const key of reply[1]) ids.push(key.slice(keys.leasePrefix.length));
    } while (cursor !== '0');
    return ids;
  }

  /**
   * The other nodes' views, fresh to within a few seconds. The first read after a quiet spell
   * asks every node to write now, and waits up to `waitMs` for the views of all live nodes.
   */
  async others(waitMs = 1_000): Promise<NodeView[]> {
    const started = Date.now();
    const first = await this.store.call(
      'SET',
      keys.viewWanted,
      this.nodeId,
      'PX',
      wantedForMs,
      'NX',
    );
    if (first !== 'OK') {
      // The nodes are writing already: their views are at most 2 s old.
      await this.store.call('PEXPIRE', keys.viewWanted, wantedForMs);
      return this.#read((await this.nodes()).filter((id) => id !== this.nodeId));
    }
    await this.store.publish(keys.viewWantedChannel, this.nodeId);
    for (;;) {
      const ids = (await this.nodes()).filter((id) => id !== this.nodeId);
      const views = await this.#read(ids);
      const fresh = views.length === ids.length && views.every((v) => v.at >= started);
      if (fresh || Date.now() - started >= waitMs) return views;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async #read(ids: readonly string[]): Promise<NodeView[]> {
    if (ids.length === 0) return [];
    const texts = (await this.store.call('MGET', ...ids.map(keys.view))) as (string | null)[];
    const views: NodeView[] = [];
    for (const text of texts) {
      if (text === null) continue;
      try {
        views.push(JSON.parse(text) as NodeView);
      } catch {
        // a view another version wrote: skipped
      }
    }
    return views;
  }

  /** Ask `nodeId` to end one of its streams; false if no node heard it. */
  async endStream(nodeId: string, id: string, reason: string): Promise<boolean> {
    const command: ViewCommand = { t: 'end', id, reason };
    return (await this.store.publish(keys.viewChannel(nodeId), JSON.stringify(command))) > 0;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    if (this.store.up) await this.store.call('DEL', keys.view(this.nodeId)).catch(() => undefined);
  }
}
