import { randomBytes } from 'node:crypto';
import { DstreamError, describeError } from '../../errors.js';
import type { HubCluster, ClusterAttachment } from './hub-cluster.js';
import type { Hop, Passable } from '../streams/stream-hop.js';
import type { ClusterStats } from '../observe/metrics.js';
import type { StreamOffer, StreamOfferRequest } from '../streams/stream-offer.js';
import type { Logger } from '../../log/logger.js';
import type { HubTrust } from '../../net/hub-client.js';
import { closeCodes } from '../../protocol/constants.js';
import { meetingPlace, type MeetingPlace } from './meeting.js';
import type { ResumeClaims } from '../../protocol/resume-ticket.js';
import { Presence } from './presence.js';
import { ClusterView, type NodeView } from './cluster-view.js';
import { RedisRegistry } from './redis-registry.js';
import { StreamRouter } from './router.js';
import { Store } from './store.js';
import { redactedUrl } from './store-url.js';
import type { AbortLike } from '../../runtime/hangup.js';

export interface ClusterNodeOptions {
  readonly redisUrl: URL;
}

/**
 * One hub node's membership of a cluster: the shared registry, the presence table and the
 * routing of stream requests and stream sockets to the node that holds a device.
 */
export class ClusterNode implements HubCluster {
  readonly nodeId = randomBytes(6).toString('base64url');
  #presence: Presence | undefined;
  #router: StreamRouter | undefined;
  #url: URL | undefined;
  #trust: HubTrust = { tls: true };
  /** How long a meeting place is kept: a suspended stream's resume window. */
  #resumeWindowMs = 120_000;
  /** Withdrawn for a drain: never the meeting place of a suspended stream. */
  #withdrawn = false;
  #view: ClusterView | undefined;

  private constructor(
    private readonly store: Store,
    readonly registry: RedisRegistry,
    private readonly logger: Logger,
  ) {}

  /** Connect to Redis and load the registry; fails at once if Redis cannot be reached. */
  static async connect(options: ClusterNodeOptions, logger: Logger): Promise<ClusterNode> {
    const log = logger.child({ component: 'cluster' });
    const store = new Store(options.redisUrl, log);
    try {
      await store.connect();
    } catch (error) {
      await store.close();
      throw new DstreamError(
        'ERR_HUB_UNAVAILABLE',
        `cannot reach redis at ${redactedUrl(options.redisUrl)}: ${describeError(error)}`,
        { hint: 'Start redis-server, or check --redis (or $DSTREAM_REDIS_URL).', cause: error },
      );
    }
    store.on('down', () =>
      log.warn('lost the connection to redis: serving local devices only, not ready'),
    );
    store.on('up', () => log.info('connected to redis again'));
    const registry = await RedisRegistry.open(store, log);
    return new ClusterNode(store, registry, log);
  }

  ready(): boolean {
    return this.store.up;
  }

  stats(): ClusterStats {
    const counts = this.#router?.counts ?? { routed: 0, unreachable: 0 };
    return { redisUp: this.store.up, ...counts };
  }

  get nodeUrl(): URL | undefined {
    return this.#url;
  }

  async attach(hub: ClusterAttachment): Promise<void> {
    this.#url = hub.nodeUrl;
    this.#trust = hub.trust;
    this.#resumeWindowMs = hub.resumeWindowMs ?? this.#resumeWindowMs;
    const presence = new Presence(this.store, this.nodeId, hub.nodeUrl.origin, this.logger);
    presence.attach(
      () => hub.devices.onlineDevices(),
      (deviceId) =>
        hub.devices.disconnect(deviceId, 'registered on another node', closeCodes.replaced),
    );
    const router = new StreamRouter(this.store, presence, this.nodeId, this.logger);
    this.#presence = presence;
    this.#router = router;
    hub.devices.setPresence(presence);
    await router.start({
      isOnline: (deviceId) => hub.devices.isOnline(deviceId),
      offer: (request, signal) => hub.offer(request, signal),
    });
    await presence.start();
    const view = new ClusterView(this.store, this.nodeId, hub.nodeUrl.origin, this.logger);
    await view.start(hub.view);
    this.#view = view;
    this.logger.info('joined the cluster', { node: this.nodeId, url: hub.nodeUrl.origin });
  }

  route = (
    request: StreamOfferRequest,
    connectTimeoutS: number,
    signal: AbortLike,
  ): Promise<StreamOffer> => {
    if (!this.#router) throw new Error('cluster node used before attach()');
    return this.#router.route(request, connectTimeoutS, signal);
  };

  connectedAmong = (deviceIds: readonly string[]): Promise<Set<string>> => {
    if (!this.#presence || !this.store.up)
      return Promise.reject(new Error('the cluster store (redis) is unreachable'));
    return this.#presence.connectedAmong(deviceIds);
  };

  forward(side: Passable, streamId: string): void {
    const nodeId = streamId.slice(0, streamId.indexOf('.'));
    const presence = this.#presence;
    if (!presence || !this.store.up) {
      side.refuse(503, 'ServiceUnavailable', 'the cluster store (redis) is unreachable');
      return;
    }
    presence.nodeUrl(nodeId).then(
      (url) => {
        if (!url) {
          side.refuse(404, 'StreamNotFound', 'no such stream (its hub node is gone)');
          return;
        }
        this.logger.debug('forwarding a stream socket to its node', { node: nodeId });
        side.passTo(this.#hop(url));
      },
      (error: unknown) => {
        this.logger.warn('cannot look up a stream node', { error: describeError(error) });
        side.refuse(503, 'ServiceUnavailable', 'the cluster store (redis) is unreachable');
      },
    );
  }

  async meet(claims: ResumeClaims, side: Passable): Promise<'here' | 'elsewhere'> {
    const ticketNode =
      claims.node ?? claims.streamId.slice(0, Math.max(0, claims.streamId.indexOf('.')));
    if (!this.store.up) {
      // Without Redis no node can agree on a place: the node the ticket names takes it (it
      // may be where the other half is), any other asks the end to come back later.
      if (ticketNode === this.nodeId && !this.#withdrawn) return 'here';
      side.refuse(503, 'ServiceUnavailable', 'the cluster store (redis) is unreachable', {
        'Retry-After': '1',
      });
      return 'elsewhere';
    }
    // Until the answer, bytes the end sends wait (in the kernel, or in the substream's window).
    side.hold();
    let place: MeetingPlace;
    try {
      place = await meetingPlace(
        this.store,
        { streamId: claims.streamId, ticketNode },
        { nodeId: this.nodeId, url: this.#withdrawn ? undefined : this.#url?.origin },
        this.#resumeWindowMs + 10_000,
      );
    } catch (error) {
      this.logger.warn('cannot pick where a stream resumes', { error: describeError(error) });
      side.refuse(503, 'ServiceUnavailable', 'the cluster store (redis) is unreachable', {
        'Retry-After': '1',
      });
      return 'elsewhere';
    }
    if (place.at === 'here') return 'here';
    if (place.at === 'none') {
      side.refuse(503, 'ServiceUnavailable', 'this hub node is draining', {
        'Retry-After': '1',
      });
      return 'elsewhere';
    }
    this.logger.debug('forwarding a resuming stream socket to where its halves meet', {
      node: place.nodeId,
      id: claims.streamId,
      side: claims.side,
    });
    side.passTo(this.#hop(place.url));
    return 'elsewhere';
  }

  #hop(url: string): Hop {
    return { url: new URL(url), trust: this.#trust, fromNode: this.nodeId, logger: this.logger };
  }

  otherViews(): Promise<NodeView[]> {
    if (!this.#view || !this.store.up)
      return Promise.reject(new Error('the cluster store (redis) is unreachable'));
    return this.#view.others();
  }

  liveNodes(): Promise<string[]> {
    if (!this.#view || !this.store.up)
      return Promise.reject(new Error('the cluster store (redis) is unreachable'));
    return this.#view.nodes();
  }

  endStreamOn(nodeId: string, streamId: string, reason: string): Promise<boolean> {
    if (!this.#view || !this.store.up)
      return Promise.reject(new Error('the cluster store (redis) is unreachable'));
    return this.#view.endStream(nodeId, streamId, reason);
  }

  async withdraw(): Promise<void> {
    this.#withdrawn = true;
    await this.#presence?.stop();
  }

  async close(): Promise<void> {
    await this.#view?.stop();
    this.#router?.close();
    await this.#presence?.stop();
    this.registry.close();
    await this.store.close();
  }
}
