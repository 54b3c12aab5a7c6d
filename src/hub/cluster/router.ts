import { randomBytes } from 'node:crypto';
import { describeError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import {
  offline,
  refused,
  type StreamOffer,
  type StreamOfferRequest,
} from '../streams/stream-offer.js';
import { keys } from './keys.js';
import type { Presence } from './presence.js';
import type { Store } from './store.js';
import type { AbortLike } from '../../runtime/hangup.js';

/** Messages on a node's channel. */
type NodeMessage =
  | { readonly t: 'drop'; readonly device: string; readonly epoch: number }
  | {
      readonly t: 'offer';
      readonly id: string;
      readonly from: string;
      readonly request: StreamOfferRequest;
      /** The requester stops waiting for the ack at this time (ms since the epoch). */
      readonly ackBy: number;
    }
  | { readonly t: 'ack'; readonly id: string; readonly from: string }
  | {
      readonly t: 'result';
      readonly id: string;
      readonly from: string;
      readonly offer: StreamOffer;
    }
  | { readonly t: 'cancel'; readonly id: string };

interface Waiting {
  readonly ack: () => void;
  readonly result: (offer: StreamOffer) => void;
}

export interface RouterOptions {
  /** How long the owner node has to acknowledge a routed request (default 1 s). */
  readonly ackTimeoutMs?: number | undefined;
  /** How often to look again for a device that is not online (connect timeout > 0). */
  readonly pollMs?: number | undefined;
}

/** What the router needs of the local hub. */
export interface LocalStreams {
  isOnline(deviceId: string): boolean;
  offer(request: StreamOfferRequest, signal: AbortLike): Promise<StreamOffer>;
}

const unavailable = (): StreamOffer =>
  refused(
    'unavailable',
    503,
    'ServiceUnavailable',
    'the cluster store (redis) is unreachable: only devices connected to this node can be reached',
    5,
  );

const sleep = (ms: number, signal: AbortLike): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });

/**
 * Stream requests across the cluster. A request may land on any node; the router finds the
 * node holding the device's control connection (presence) and passes the request to it
 * over that node's Redis channel. The owner acknowledges at once, offers the stream to its
 * device and publishes the result back. The streaming URL in the result names the owner, so
 * both sides connect there and the bytes are relayed in one process.
 *
 * A request to a node that is gone fails fast: PUBLISH reaches no subscriber (the node's
 * Redis connection closed with it), or its lease has expired, or it does not acknowledge
 * within a second (paused, or cut off from Redis).
 */
export class StreamRouter {
  readonly #waiting = new Map<string, Waiting>();
  /** Offers this node is working on for other nodes, by request id. */
  readonly #serving = new Map<string, AbortController>();
  readonly #ackTimeoutMs: number;
  readonly #pollMs: number;
  /** Requests passed to another node: answered there, or that node not reachable. */
  readonly counts = { routed: 0, unreachable: 0 };
  #local: LocalStreams | undefined;

  constructor(
    private readonly store: Store,
    private readonly presence: Presence,
    private readonly nodeId: string,
    private readonly logger: Logger,
    options: RouterOptions = {},
  ) {
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 1000;
    this.#pollMs = options.pollMs ?? 250;
  }

  /** Listen on this node's channel. */
  async start(local: LocalStreams): Promise<void> {
    this.#local = local;
    await this.store.subscribe(keys.nodeChannel(this.nodeId), (text) => this.#onMessage(text));
  }

  #send(nodeId: string, message: NodeMessage): Promise<number> {
    return this.store.publish(keys.nodeChannel(nodeId), JSON.stringify(message));
  }

  #sendQuietly(nodeId: string, message: NodeMessage): void {
    this.#send(nodeId, message).catch((error: unknown) =>
      this.logger.debug('cannot publish to another node', {
        node: nodeId,
        error: describeError(error),
      }),
    );
  }

  #onMessage(text: string): void {
    let message: NodeMessage;
    try {
      message = JSON.parse(text) as NodeMessage;
    } catch {
      this.logger.warn('ignoring an invalid message on this node channel');
      return;
    }
    switch (message.t) {
      case 'drop':
        this.presence.dropIfStale(message.device, message.epoch);
        return;
      case 'offer':
        this.#serve(message);
        return;
      case 'cancel':
        this.#serving.get(message.id)?.abort();
        return;
      case 'ack': {
        const waiting = this.#waiting.get(message.id);
        // The requester gave up (we were too slow): tell the owner to drop the offer.
        if (!waiting) this.#sendQuietly(message.from, { t: 'cancel', id: message.id });
        else waiting.ack();
        return;
      }
      case 'result':
        this.#waiting.get(message.id)?.result(message.offer);
        return;
    }
  }

  /** Another node passed us a request for one of our devices. */
  #serve(message: Extract<NodeMessage, { t: 'offer' }>): void {
    const local = this.#local;
    // Stale: sat in our Redis buffer while we were paused; the requester has answered.
    if (!local || Date.now() > message.ackBy) return;
    this.#sendQuietly(message.from, { t: 'ack', id: message.id, from: this.nodeId });
    const controller = new AbortController();
    this.#serving.set(message.id, controller);
    local
      .offer(message.request, controller.signal)
      .catch((error: unknown): StreamOffer => {
        this.logger.error('routed stream request failed', { error: describeError(error) });
        return refused('unavailable', 500, 'ServerError', 'internal error');
      })
      .then((offer) => {
        this.#serving.delete(message.id);
        if (!controller.signal.aborted)
          this.#sendQuietly(message.from, {
            t: 'result',
            id: message.id,
            from: this.nodeId,
            offer,
          });
      })
      .catch(() => undefined);
  }

  /**
   * Offer a stream to `request.deviceId` wherever it is connected, waiting up to
   * `connectTimeoutS` for it to come online.
   */
  async route(
    request: StreamOfferRequest,
    connectTimeoutS: number,
    signal: AbortLike,
  ): Promise<StreamOffer> {
    const local = this.#local;
    if (!local) return unavailable();
    const deadline = Date.now() + connectTimeoutS * 1000;
    for (;;) {
      if (local.isOnline(request.deviceId)) return local.offer(request, signal);
      if (!this.store.up) return unavailable();
      try {
        const owner = await this.presence.lookup(request.deviceId);
        if (owner && owner.nodeId !== this.nodeId) {
          const offer = await this.#ask(owner.nodeId, request, signal);
          if (offer) return offer;
        }
      } catch (error) {
        this.logger.warn('cannot route a stream request', { error: describeError(error) });
        return unavailable();
      }
      if (signal.aborted || Date.now() + this.#pollMs > deadline) return offline(request.deviceId);
      await sleep(this.#pollMs, signal);
    }
  }

  /** Ask the owner; undefined if it cannot be reached (then the device counts as offline). */
  async #ask(
    nodeId: string,
    request: StreamOfferRequest,
    signal: AbortLike,
  ): Promise<StreamOffer | undefined> {
    const id = randomBytes(12).toString('base64url');
    let acked!: () => void;
    let answered!: (offer: StreamOffer) => void;
    const ack = new Promise<boolean>((resolve) => (acked = () => resolve(true)));
    const result = new Promise<StreamOffer>((resolve) => (answered = resolve));
    this.#waiting.set(id, { ack: acked, result: answered });
    const cancel = (): void => this.#sendQuietly(nodeId, { t: 'cancel', id });
    try {
      const receivers = await this.#send(nodeId, {
        t: 'offer',
        id,
        from: this.nodeId,
        request,
        ackBy: Date.now() + this.#ackTimeoutMs,
      });
      if (receivers === 0) {
        this.counts.unreachable++;
        this.logger.debug('the node holding the device is gone', { node: nodeId });
        return undefined;
      }
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        ack,
        new Promise<boolean>(
          (resolve) => (timer = setTimeout(() => resolve(false), this.#ackTimeoutMs)),
        ),
      ]);
      clearTimeout(timer);
      if (!inTime) {
        this.counts.unreachable++;
        this.logger.warn('the node holding the device did not answer in time', {
          node: nodeId,
          device: request.deviceId,
          ackTimeoutMs: this.#ackTimeoutMs,
        });
        return undefined;
      }
      this.counts.routed++;
      signal.addEventListener('abort', cancel);
      const limitMs = request.responseTimeoutS * 1000 + this.#ackTimeoutMs + 1000;
      const offer = await Promise.race([
        result,
        new Promise<StreamOffer>((resolve) => {
          timer = setTimeout(
            () =>
              resolve(
                refused(
                  'timeout',
                  504,
                  'GatewayTimeout',
                  `device '${request.deviceId}' did not answer within ${request.responseTimeoutS} s`,
                ),
              ),
            limitMs,
          );
        }),
        new Promise<StreamOffer>((resolve) => {
          if (signal.aborted) resolve(offline(request.deviceId, 'request abandoned'));
          signal.addEventListener('abort', () =>
            resolve(offline(request.deviceId, 'request abandoned')),
          );
        }),
      ]);
      clearTimeout(timer);
      return offer;
    } finally {
      signal.removeEventListener('abort', cancel);
      this.#waiting.delete(id);
    }
  }

  /** Abandon what this node serves for others (shutting down). */
  close(): void {
    for (const controller of this.#serving.values()) controller.abort();
    this.#serving.clear();
  }
}
