import type { LocalView, NodeView } from './cluster-view.js';
import type { HubTrust } from '../../net/hub-client.js';
import type { StreamHops } from '../streams/stream-hop.js';
import type { DeviceLinks } from '../devices/device-links.js';
import type { ClusterStats } from '../observe/metrics.js';
import type { RouteStream } from '../streams/stream-initiation.js';
import type { StreamOffer, StreamOfferRequest } from '../streams/stream-offer.js';
import type { AbortLike } from '../../runtime/hangup.js';

/** What a hub gives its cluster membership once it listens. */
export interface ClusterAttachment {
  /** This node's own URL: streaming URLs name it, other nodes forward stream sockets to it. */
  readonly nodeUrl: URL;
  /** How to verify another node when passing it a stream socket (nodes share the certificate). */
  readonly trust: HubTrust;
  readonly devices: DeviceLinks;
  /** How long a suspended stream waits for its halves (ms), when this hub resumes streams. */
  readonly resumeWindowMs?: number | undefined;
  /** Offer a stream to a device connected here. */
  offer(request: StreamOfferRequest, signal: AbortLike): Promise<StreamOffer>;
  /** What this node holds, for the other nodes' operator API (cluster-view.ts). */
  readonly view: LocalView;
}

/**
 * A hub node's view of the cluster it belongs to (implemented by cluster/node.ts).
 * A hub without one is a single node with its own registry.
 */
export interface HubCluster extends StreamHops {
  // forward(), meet(): placing a stream socket or substream for another node's stream.
  /** Put in front of this node's stream ids. */
  readonly nodeId: string;
  /** False while the shared store is unreachable: /readyz answers 503. */
  ready(): boolean;
  /** For /metrics. */
  stats(): ClusterStats;
  attach(hub: ClusterAttachment): Promise<void>;
  /** Offer a stream wherever the device is connected. */
  readonly route: RouteStream;
  /** Which of these devices are connected to any node. */
  readonly connectedAmong: (deviceIds: readonly string[]) => Promise<Set<string>>;
  /**
   * Leave the cluster's routing before a drain: the lease and device registrations go, so
   * other nodes take this node's devices and its suspended streams' halves; the store stays.
   */
  withdraw(): Promise<void>;
  /** The other live nodes' devices and streams, for the operator API (cluster-view.ts). */
  otherViews(): Promise<NodeView[]>;
  /** The ids of the nodes whose lease is alive, this one included. */
  liveNodes(): Promise<string[]>;
  /** Ask another node to end one of its streams; false if no node heard it. */
  endStreamOn(nodeId: string, streamId: string, reason: string): Promise<boolean>;
  close(): Promise<void>;
}
