import type { Logger } from '../log/logger.js';
import { closeWebSocket } from '../net/close.js';
import { defaultHeartbeatMs, Heartbeat } from '../net/heartbeat.js';
import { closeCodes, resumableStreamProtocol } from '../protocol/constants.js';
import type { BridgeableStream, BridgeResult } from './bridge.js';
import { carryStream, type CarriedStream, type CarryOptions } from './carry.js';
import {
  initiateWith,
  type Carrier,
  type StreamGrant,
  type StreamRequest,
  type StreamSocket,
} from './carrier.js';
import { streamEndFields } from './end-report.js';
import { ReplayBudget } from './replay-budget.js';
import { Hangup, type AbortLike } from '../runtime/hangup.js';

export interface StreamEndsOptions {
  /** How stream sockets reach the hub. Closed with the table. */
  readonly carrier: Carrier;
  /** Offer resumable streams (dstream.stream.v2). */
  readonly resume: boolean;
  /** How long a suspended stream may take to resume (ms, default 120 s). */
  readonly resumeWindowMs?: number | undefined;
  /** Ping interval for stream sockets (ms); two missed pings drop one. */
  readonly heartbeatMs?: number | undefined;
  /** What all resumable streams keep for replay, together (default 128 MiB: replay-budget.ts). */
  readonly replayBudgetBytes?: number | undefined;
}

/** How one stream ended, for the owner of its end. */
export interface StreamEnd extends Partial<BridgeResult> {
  /** 'failed': the stream never opened (rejected, refused, unreachable, or given up). */
  readonly outcome: 'completed' | 'local-error' | 'peer-error' | 'failed';
  readonly reason?: string;
  readonly durationMs: number;
}

/** What one stream's owner wants to hear about it. */
export interface StreamHooks {
  /** The stream's logger: its one end line ('stream ended') goes here. */
  readonly logger: Logger;
  /** The stream socket is open, before a byte is carried (SOCKS sends its reply here). */
  readonly onOpen?: ((socket: StreamSocket) => void) | undefined;
  /**
   * The stream could not be opened; the local connection is the owner's to answer and close.
   * `abandoned` when the local side left first (nothing worth a warning).
   */
  readonly onFailed?: ((error: unknown, abandoned: boolean) => void) | undefined;
  /** The carried stream ended (once). */
  readonly onEnd?: ((result: BridgeResult, durationMs: number) => void) | undefined;
}

/** A stream end in the table, for its owner. */
export interface StreamEndHandle {
  /** A deliberate end: closed normally at once, never suspended. */
  stop(): void;
}

/**
 * One stream end in the table: what its owner's handle and the teardown need, and, once its
 * stream socket is open, the carry's options (its callbacks are this object's methods: one
 * object per stream rather than closures and their context).
 */
class Entry implements CarryOptions {
  /**
   * Abandons the opening of its stream socket, while it is being opened: let go once it is open
   * (an AbortSignal that has had listeners was about 0.4 KiB, which every open stream kept; a
   * Hangup, not an AbortController, for the time one takes to make: runtime/hangup.ts).
   */
  hangup: Hangup | undefined;
  socket: StreamSocket | undefined;
  carried: CarriedStream | undefined;
  /** stop() came before the stream socket opened. */
  stopped = false;
  /** When the stream was asked for (its end line reports the duration). */
  readonly started = Date.now();

  constructor(
    readonly local: BridgeableStream,
    readonly ends: StreamEnds,
    readonly hooks: StreamHooks,
  ) {}

  get carrier(): Carrier {
    return this.ends.options.carrier;
  }

  get resumeWindowMs(): number | undefined {
    return this.ends.options.resumeWindowMs;
  }

  get budget(): ReplayBudget {
    return this.ends.budget;
  }

  get logger(): Logger {
    return this.hooks.logger;
  }

  /** Its stream socket, the first or a resumed one: kept for teardown, under the heartbeat. */
  onSocket(next: StreamSocket): void {
    this.socket = next;
    this.ends.heartbeat.add(next);
  }

  onEnd(result: BridgeResult): void {
    this.ends.forget(this);
    const durationMs = Date.now() - this.started;
    this.hooks.logger.info('stream ended', streamEndFields(result, durationMs));
    this.hooks.onEnd?.(result, durationMs);
  }
}

/**
 * The ends of the streams one process carries, on either side (proxy, SOCKS, connect, agent):
 * each local connection gets its stream socket from the carrier, goes under the heartbeat,
 * is carried plainly or resumably, is torn down once, and logs one line when it ends. The
 * owners keep only where the local bytes come from.
 */
export class StreamEnds {
  readonly #entries = new Set<Entry>();
  /** Stream sockets are pinged; two missed pings drop one (each entry adds its sockets). */
  readonly heartbeat: Heartbeat;
  /** What all resumable streams keep for replay, together. */
  readonly budget: ReplayBudget;

  constructor(readonly options: StreamEndsOptions) {
    this.heartbeat = new Heartbeat(options.heartbeatMs ?? defaultHeartbeatMs);
    this.budget = new ReplayBudget(options.replayBudgetBytes);
  }

  /** An entry's stream ended: it leaves the table. */
  forget(entry: Entry): void {
    this.#entries.delete(entry);
  }

  /** Streams being opened or carried right now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Bytes all resumable streams keep for replay now (for tests and metrics). */
  get replayBytes(): number {
    return this.budget.used;
  }

  /**
   * Open a stream for `local` (connected, paused, allowHalfOpen, with an 'error' listener) and
   * carry it. `ask` is the grant the hub gave (the device side), or the stream to ask the hub
   * for (the service side: the carrier asks and opens in one step where it can); a local
   * connection that closes before the stream opened aborts it.
   */
  start(
    local: BridgeableStream,
    ask: ((signal: AbortLike) => Promise<StreamGrant>) | StreamRequest,
    hooks: StreamHooks,
  ): StreamEndHandle {
    const entry = new Entry(local, this, hooks);
    this.#entries.add(entry);
    const signal = (entry.hangup = new Hangup());
    const onEarlyClose = (): void => signal.hangUp();
    local.once('close', onEarlyClose);
    const { carrier, resume } = this.options;
    (typeof ask === 'function'
      ? ask(signal).then((grant) => carrier.open(grant, { resume }))
      : initiateWith(carrier, ask, { resume, signal })
    ).then(
      (socket) => {
        local.off('close', onEarlyClose);
        // The local side left, the user stopped, or the table closed while the socket opened.
        if (local.destroyed || signal.aborted) {
          this.#entries.delete(entry);
          if (entry.stopped) closeWebSocket(socket, closeCodes.normal, 'stopped');
          else closeWebSocket(socket, closeCodes.localError, 'local connection closed');
          return;
        }
        this.#carry(entry, socket);
      },
      (error: unknown) => {
        this.#entries.delete(entry);
        local.off('close', onEarlyClose);
        hooks.onFailed?.(error, signal.aborted);
      },
    );
    return { stop: () => this.#stop(entry) };
  }

  /** Carry `local` over a stream socket already open (`dstream connect` opens its own). */
  carry(local: BridgeableStream, socket: StreamSocket, hooks: StreamHooks): StreamEndHandle {
    const entry = new Entry(local, this, hooks);
    this.#entries.add(entry);
    this.#carry(entry, socket);
    return { stop: () => this.#stop(entry) };
  }

  #carry(entry: Entry, socket: StreamSocket): void {
    entry.hangup = undefined;
    entry.onSocket(socket);
    entry.hooks.logger.debug('stream open', {
      resumable: socket.protocol === resumableStreamProtocol,
    });
    entry.hooks.onOpen?.(socket);
    entry.carried = carryStream(entry.local, socket, entry);
  }

  #stop(entry: Entry): void {
    if (entry.carried) return entry.carried.stop();
    // Not open yet: the hub drops the unpaired half when its socket never comes (pair timeout).
    entry.stopped = true;
    entry.hangup?.hangUp();
  }

  /** End every stream now with a reset (the process is shutting down) and let go of the carrier. */
  close(): void {
    this.heartbeat.stop();
    for (const entry of this.#entries) {
      entry.hangup?.hangUp();
      // A suspended resumable stream would otherwise go on trying to resume.
      entry.carried?.close();
      entry.socket?.terminate();
      entry.local.destroy();
    }
    this.#entries.clear();
    // Last: a carrier that carries many streams on one connection sends their closes first.
    this.options.carrier.close();
  }
}
