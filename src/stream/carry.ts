import { bridge, type BridgeableStream, type BridgeResult, type Bridged } from './bridge.js';
import type { Carrier, StreamSocket } from './carrier.js';
import { resumableStreamProtocol } from '../protocol/constants.js';
import type { Logger } from '../log/logger.js';
import {
  resumableBridge,
  type ResumableBridge,
  type ResumableBridgeOptions,
  type ResumableResult,
  type ResumeEvent,
} from './resumable-bridge.js';
import type { ReplayBudget } from './replay-budget.js';

export interface CarryOptions {
  /** Opens the sockets of resumptions. */
  readonly carrier: Pick<Carrier, 'resume'>;
  /** How long a suspended stream may take to resume (default 120 s). */
  readonly resumeWindowMs?: number | undefined;
  /** What the process's resumable streams keep for replay, together. */
  readonly budget?: ReplayBudget | undefined;
  /** Suspensions and resumptions are logged here. */
  readonly logger: Logger;
  /** Every stream socket opened for a resumption (e.g. to put it under the heartbeat). */
  readonly onSocket?: ((socket: StreamSocket) => void) | undefined;
  readonly onEnd: (result: BridgeResult) => void;
}

/** A carried stream, for its owner. */
export interface CarriedStream {
  /** End it now with a reset (the process is shutting down). */
  close(): void;
  /** A deliberate end (the user stopped the process): closed normally, never suspended. */
  stop(): void;
}

function asBridgeResult(r: ResumableResult): BridgeResult {
  return {
    end:
      r.end === 'completed' ? 'completed' : r.end === 'local-error' ? 'local-error' : 'peer-error',
    bytesSent: r.bytesSent,
    bytesReceived: r.bytesReceived,
    closeCode: r.end === 'completed' ? 1000 : 4000,
    error: r.reason === undefined || r.end === 'completed' ? undefined : new Error(r.reason),
  };
}

/**
 * Carry a local connection over a stream socket: resumably when the hub negotiated
 * dstream.stream.v2 (and the other end turns out to be resumable too), else as v1 or raw
 * bytes. Both sockets as bridge() wants them (connected, paused, 'error' listeners).
 * `options` may be an object whose methods are the callbacks: they are called on it.
 */
export function carryStream(
  socket: BridgeableStream,
  ws: StreamSocket,
  options: CarryOptions,
): CarriedStream {
  if (ws.protocol !== resumableStreamProtocol) {
    const bridged = bridge(socket, ws, { onEnd: (result) => options.onEnd(result) });
    return { close: () => socket.destroy(), stop: () => bridged.stop() };
  }
  return new ResumableCarriage(socket, ws, options);
}

/**
 * A resumably carried stream: the resumable bridge's options (its callbacks are this object's
 * methods) and the handle its owner keeps, in one object rather than a closure each and their
 * context, held for the stream's life at every end.
 */
class ResumableCarriage implements CarriedStream, ResumableBridgeOptions {
  readonly #socket: BridgeableStream;
  /** The stream's first socket: resumptions are opened for its URL. */
  readonly #ws: StreamSocket;
  readonly #options: CarryOptions;
  readonly #resumable: ResumableBridge;
  /** Once the hub says the peer is plain, the v1 bridge carries the stream, and stops it. */
  #plain: Bridged | undefined;

  constructor(socket: BridgeableStream, ws: StreamSocket, options: CarryOptions) {
    this.#socket = socket;
    this.#ws = ws;
    this.#options = options;
    this.#resumable = resumableBridge(socket, ws, this);
  }

  get resumeWindowMs(): number {
    return this.#options.resumeWindowMs ?? 120_000;
  }

  get budget(): ReplayBudget | undefined {
    return this.#options.budget;
  }

  async reconnect(ticket: string | undefined): Promise<StreamSocket> {
    if (ticket === undefined) throw new Error('no resume ticket from the hub yet');
    const next = await this.#options.carrier.resume(this.#ws.url, ticket);
    this.#options.onSocket?.(next);
    return next;
  }

  onEvent(event: ResumeEvent): void {
    const log = this.#options.logger;
    if (event.type === 'suspended')
      log.warn('stream suspended; resuming', { reason: event.reason });
    else
      log.info('stream resumed', {
        afterMs: event.afterMs,
        attempts: event.attempts,
        replayedBytes: event.replayedBytes,
      });
  }

  onPlain(peer: 'v1' | 'raw'): void {
    this.#options.logger.debug('the other end is not resumable; carrying on without', { peer });
    // Half-close goes out as v1's eof even toward a raw peer: the hub ends such a stream
    // once the raw peer is quiet (relay.ts), rather than this end cutting off its answer.
    const options = this.#options;
    this.#plain = bridge(this.#socket, this.#ws, {
      onEnd: (result) => options.onEnd(result),
      halfClose: true,
    });
  }

  onEnd(result: ResumableResult): void {
    if (result.end === 'gave-up' || result.end === 'protocol-error')
      this.#options.logger.warn('stream ended: it could not be resumed', { reason: result.reason });
    this.#options.onEnd(asBridgeResult(result));
  }

  close(): void {
    if (this.#plain) this.#socket.destroy();
    else this.#resumable.close();
  }

  stop(): void {
    if (this.#plain) this.#plain.stop();
    else this.#resumable.stop();
  }
}
