import type { LocalView, NodeView } from './cluster-view.js';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HubTrust } from '../../net/hub-client.js';
import type { DeviceLinks } from '../devices/device-links.js';
import type { ClusterStats } from '../observe/metrics.js';
import type { RouteStream } from '../streams/stream-initiation.js';
import type { StreamOffer, StreamOfferRequest } from '../streams/stream-offer.js';
import type { ResumeClaims } from '../../protocol/resume-ticket.js';

/** Set on a stream socket one node passes to another: a forwarded socket is never forwarded again. */
export const forwardedHeader = 'x-dstream-forwarded-by';

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
  offer(request: StreamOfferRequest, signal: AbortSignal): Promise<StreamOffer>;
  /** What this node holds, for the other nodes' operator API (cluster-view.ts). */
  readonly view: LocalView;
}

/**
 * A hub node's view of the cluster it belongs to (implemented by cluster/node.ts).
 * A hub without one is a single node with its own registry.
 */
export interface HubCluster {
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
  /** Pass a stream socket for another node's stream to that node. */
  forward(req: IncomingMessage, socket: Duplex, head: Buffer, streamId: string): void;
  /**
   * A resuming half with a valid ticket reached this node: find where its stream's halves
   * meet (cluster/meeting.ts). Resolves 'here' when this node is the place; otherwise the
   * socket was forwarded there, or refused (503) when no node can take it yet.
   */
  meet(
    claims: ResumeClaims,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
  ): Promise<'here' | 'elsewhere'>;
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
