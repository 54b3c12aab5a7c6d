import { bridge, type BridgeableStream, type BridgeResult, type Bridged } from './bridge.js';
import type { Carrier, StreamSocket } from './carrier.js';
import { resumableStreamProtocol } from '../protocol/constants.js';
import type { Logger } from '../log/logger.js';
import { resumableBridge, type ResumableResult } from './resumable-bridge.js';
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
 */
export function carryStream(
  socket: BridgeableStream,
  ws: StreamSocket,
  options: CarryOptions,
): CarriedStream {
  if (ws.protocol !== resumableStreamProtocol) {
    const bridged = bridge(socket, ws, { onEnd: options.onEnd });
    return { close: () => socket.destroy(), stop: () => bridged.stop() };
  }
  const url = ws.url;
  const log = options.logger;
  // Once the hub says the peer is plain, the v1 bridge carries the stream, and stops it.
  let plain: Bridged | undefined;
  const resumable = resumableBridge(socket, ws, {
    resumeWindowMs: options.resumeWindowMs ?? 120_000,
    budget: options.budget,
    reconnect: async (ticket) => {
      if (ticket === undefined) throw new Error('no resume ticket from the hub yet');
      const next = await options.carrier.resume(url, ticket);
      options.onSocket?.(next);
      return next;
    },
    onEvent: (event) => {
      if (event.type === 'suspended')
        log.warn('stream suspended; resuming', { reason: event.reason });
      else
        log.info('stream resumed', {
          afterMs: event.afterMs,
          attempts: event.attempts,
          replayedBytes: event.replayedBytes,
        });
    },
    onPlain: (peer) => {
      log.debug('the other end is not resumable; carrying on without', { peer });
      // Half-close goes out as v1's eof even toward a raw peer: the hub ends such a stream
      // once the raw peer is quiet (relay.ts), rather than this end cutting off its answer.
      plain = bridge(socket, ws, { onEnd: options.onEnd, halfClose: true });
    },
    onEnd: (result) => {
      if (result.end === 'gave-up' || result.end === 'protocol-error')
        log.warn('stream ended: it could not be resumed', { reason: result.reason });
      options.onEnd(asBridgeResult(result));
    },
  });
  return {
    close: () => (plain ? socket.destroy() : resumable.close()),
    stop: () => (plain ? plain.stop() : resumable.stop()),
  };
}
