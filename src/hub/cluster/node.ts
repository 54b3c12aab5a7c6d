import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { DstreamError, describeError } from '../../errors.js';
import type { HubCluster, ClusterAttachment } from './hub-cluster.js';
import type { ClusterStats } from '../observe/metrics.js';
import { refuseUpgrade } from '../base/http-util.js';
import type { StreamOffer, StreamOfferRequest } from '../streams/stream-offer.js';
import type { Logger } from '../../log/logger.js';
import type { HubTrust } from '../../net/hub-client.js';
import { closeCodes } from '../../protocol/constants.js';
import { forwardUpgrade } from './forward.js';
import { Presence } from './presence.js';
import { RedisRegistry } from './redis-registry.js';
import { StreamRouter } from './router.js';
import { Store } from './store.js';
import { redactedUrl } from './store-url.js';

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
    this.logger.info('joined the cluster', { node: this.nodeId, url: hub.nodeUrl.origin });
  }

  route = (
    request: StreamOfferRequest,
    connectTimeoutS: number,
    signal: AbortSignal,
  ): Promise<StreamOffer> => {
    if (!this.#router) throw new Error('cluster node used before attach()');
    return this.#router.route(request, connectTimeoutS, signal);
  };

  connectedAmong = (deviceIds: readonly string[]): Promise<Set<string>> => {
    if (!this.#presence || !this.store.up)
      return Promise.reject(new Error('the cluster store (redis) is unreachable'));
    return this.#presence.connectedAmong(deviceIds);
  };

  forward(req: IncomingMessage, socket: Duplex, head: Buffer, streamId: string): void {
    const nodeId = streamId.slice(0, streamId.indexOf('.'));
    const presence = this.#presence;
    if (!presence || !this.store.up) {
      refuseUpgrade(socket, 503, 'ServiceUnavailable', 'the cluster store (redis) is unreachable');
      return;
    }
    presence.nodeUrl(nodeId).then(
      (url) => {
        if (!url) {
          refuseUpgrade(socket, 404, 'StreamNotFound', 'no such stream (its hub node is gone)');
          return;
        }
        this.logger.debug('forwarding a stream socket to its node', { node: nodeId });
        forwardUpgrade(
          req,
          socket,
          head,
          { url: new URL(url), trust: this.#trust },
          this.nodeId,
          this.logger,
        );
      },
      (error: unknown) => {
        this.logger.warn('cannot look up a stream node', { error: describeError(error) });
        refuseUpgrade(
          socket,
          503,
          'ServiceUnavailable',
          'the cluster store (redis) is unreachable',
        );
      },
    );
  }

  async close(): Promise<void> {
    this.#router?.close();
    await this.#presence?.stop();
    this.registry.close();
    await this.store.close();
  }
}
