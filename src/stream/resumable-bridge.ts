import type { RawData } from 'ws';
import type { StreamSocket } from '../net/stream-socket.js';
import type { BridgeableStream } from './bridge.js';
import { closeWebSocket } from '../net/close.js';
import { resetSocket } from '../net/reset.js';
import { defaultHighWaterMark, TickWriter } from '../net/flow.js';
import { closeCodes } from '../protocol/constants.js';
import { AckTracker } from './ack-tracker.js';
import {
  formatStreamFrame,
  parseStreamFrame,
  type StreamFrame,
} from '../protocol/stream-frames.js';
import { ReplayBuffer, ReplayOffsetError } from './replay-buffer.js';
import type { ReplayBudget } from './replay-budget.js';

/**
 * One end of a resumable stream (`--resume`; chosen by carry.ts). The local TCP connection stays open while the
 * stream socket in the middle is lost and rebuilt: every byte read from it is kept until the
 * other end acknowledges it; after a reconnection each end says how much it has received
 * (`resume`) and the other sends again from there, so nothing is lost, duplicated or
 * reordered. Half-close travels as `eof` with the byte count, so it survives too.
 *
 * Protocol on each stream socket (docs: protocol/stream-frames.ts): the hub, once it has paired the
 * socket with a resumable peer, sends a `ticket` (or `plain` when the peer is not
 * resumable); on the ticket each end sends `resume{received}`, and payload only after the
 * peer's `resume` arrived; then
 * binary messages (payload) and `ack`/`eof`/`ticket` text frames. A normal end is a close
 * with 1000 by an end that has delivered and had acknowledged everything in both directions;
 * any other loss of the socket suspends the stream until it resumes or the window passes.
 */
export interface ResumableBridgeOptions {
  /**
   * Open a new stream socket for a resumption, given the latest ticket the hub handed out:
   * resolves with it open and paused (as net/hub-client's openWebSocket does); rejects to be
   * tried again after a backoff.
   */
  readonly reconnect: (ticket: string | undefined) => Promise<StreamSocket>;
  /** How long a suspended stream may take to resume before it ends with a reset. */
  readonly resumeWindowMs: number;
  /** Unacknowledged bytes kept for replay (default 8 MiB); past it the socket is paused. */
  readonly replayBytes?: number;
  /** Acknowledge after this many bytes (default a quarter of replayBytes, at most 256 KiB). */
  readonly ackEveryBytes?: number;
  /** Acknowledge what is left this long after the last payload (default 50 ms). */
  readonly ackIdleMs?: number;
  /** Jittered exponential backoff between reconnection attempts. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly highWaterMark?: number;
  /** What the process keeps for replay across all its streams; past it, reading waits. */
  readonly budget?: ReplayBudget | undefined;
  readonly onEvent?: (event: ResumeEvent) => void;
  readonly onEnd?: (result: ResumableResult) => void;
  /**
   * The hub said the other end is not resumable (its first frame, before any byte): this
   * bridge lets go of both sockets, untouched, and the caller carries on with v1's bridge.
   */
  readonly onPlain?: (peer: 'v1' | 'raw') => void;
}

export type ResumeEvent =
  | { readonly type: 'suspended'; readonly reason: string }
  | {
      readonly type: 'resumed';
      readonly afterMs: number;
      readonly attempts: number;
      /** Bytes this end sent again. */
      readonly replayedBytes: number;
    };

export interface ResumableResult {
  readonly end: 'completed' | 'local-error' | 'peer-reset' | 'gave-up' | 'protocol-error';
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly resumptions: number;
  readonly reason: string | undefined;
}

export interface ResumableBridge {
  /** Bytes held for replay now (for tests and metrics). */
  readonly replayBytes: () => number;
  readonly suspended: () => boolean;
  /** End it now (the process is shutting down): no more resumptions; the socket is reset. */
  readonly close: () => void;
  /**
   * A deliberate end (the user stopped the process): the stream socket is closed normally,
   * which the other end takes as the stream's end (not a loss to resume from), and the local
   * side is ended. Suspended, there is nobody to tell: as close().
   */
  readonly stop: () => void;
}

const defaultReplayBytes = 8 * 1024 * 1024;

/**
 * The hub refused a resumption for good (the stream ended, the ticket is spent, the device was
 * disabled): `reconnect` rejects with this, and the stream ends at once instead of retrying.
 */
export class ResumeRefusedError extends Error {
  override readonly name = 'ResumeRefusedError';
}

/**
 * Bridge `socket` (connected, paused, allowHalfOpen, with an 'error' listener) and the first
 * stream socket `ws` (OPEN, paused or not), resuming across lost stream sockets.
 */
export function resumableBridge(
  socket: BridgeableStream,
  ws: StreamSocket,
  options: ResumableBridgeOptions,
): ResumableBridge {
  return new ResumableEnd(socket, ws, options);
}

/** On the local socket and each stream socket it listens to: the ResumableEnd they belong to. */
const kEnd = Symbol('dstream.resumableEnd');

/** A socket carrying its end: the listeners are shared functions that find it there. */
type Linked<T> = T & { [kEnd]?: ResumableEnd | undefined };

/**
 * The resumable bridge's state. A class rather than closures over locals, and its listeners
 * shared by every stream (static methods that find the stream's end on the socket that
 * emitted, as ws finds its WebSocket on its socket): an open stream holds one object, not
 * some thirty closures and their contexts (about 1.5 KiB of heap per stream at each end).
 */
class ResumableEnd implements ResumableBridge {
  readonly #socket: BridgeableStream;
  /** Writes to the socket, a turn's worth in one system call. */
  readonly #writer: TickWriter;
  readonly #options: ResumableBridgeOptions;
  readonly #replayCapacity: number;
  readonly #replay: ReplayBuffer;
  readonly #acks: AckTracker;
  readonly #high: number;
  #current: StreamSocket | undefined;
  /** The peer's resume arrived on the current socket (or is presumed): payload may flow. */
  #peerResumed = false;
  /**
   * On the stream's first socket the peer's resume is known before it arrives (see 'ticket'):
   * payload flows from the ticket on, and the resume, when it comes, is only checked.
   */
  #resumePresumed = false;
  #inFlight = 0;
  #localEnded = false;
  #peerEof: number | undefined;
  #socketWriteEnded = false;
  /** Payload bytes from the peer handed to the socket (what a resume says). */
  #received = 0;
  /** Of those, bytes the socket has not taken yet. */
  #undelivered = 0;
  /**
   * Bytes the peer sends again after a resumption that this end had received already: the
   * resume asked from what the socket had taken, not from what had arrived (see 'ticket').
   */
  #duplicates = 0;
  #finished = false;
  #closingNormally = false;
  #ticket: string | undefined;
  /** This socket's resume was sent (after the hub's ticket on it). */
  #helloSent = false;
  #resumptions = 0;
  #suspendedAt: number | undefined;
  #attempts = 0;
  #ackTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  /** What the replay budget calls once it has room: made only if this stream ever waits. */
  #budgetWake: (() => void) | undefined;

  constructor(socket: BridgeableStream, ws: StreamSocket, options: ResumableBridgeOptions) {
    this.#socket = socket;
    this.#writer = new TickWriter(socket);
    this.#options = options;
    this.#replayCapacity = options.replayBytes ?? defaultReplayBytes;
    this.#replay = new ReplayBuffer(this.#replayCapacity);
    this.#acks = new AckTracker(
      options.ackEveryBytes ??
        Math.min(256 * 1024, Math.max(1, Math.floor(this.#replayCapacity / 4))),
    );
    this.#high = options.highWaterMark ?? defaultHighWaterMark;
    // Nothing is read before the hub has told this end what its peer is (a ticket or `plain`):
    // a server that speaks first (sshd's banner) would otherwise have bytes taken into the
    // replay buffer that a plain (v1 or raw) peer never gets. Paused first, listening to
    // 'data' does not start the flow; updateFlow() does, once the peer has resumed.
    socket.pause();
    (socket as Linked<BridgeableStream>)[kEnd] = this;
    socket.on('data', ResumableEnd.#onSocketData);
    socket.on('end', ResumableEnd.#onSocketEnd);
    socket.on('error', ResumableEnd.#onSocketError);
    socket.on('close', ResumableEnd.#onSocketClose);
    this.#attach(ws);
  }

  replayBytes(): number {
    return this.#replay.size;
  }

  suspended(): boolean {
    return this.#current === undefined;
  }

  close(): void {
    this.#finish('local-error', 'closed');
  }

  stop(): void {
    if (this.#finished) return;
    if (!this.#current) return this.#finish('local-error', 'stopped while suspended');
    this.#closingNormally = true;
    closeWebSocket(this.#current, closeCodes.normal, 'stopped');
    this.#finish('completed');
  }

  #send(frame: StreamFrame): void {
    const ws = this.#current;
    if (ws?.readyState === ws?.OPEN) ws?.send(formatStreamFrame(frame));
  }

  /** Read from the socket only while the bytes can go somewhere and the bounds allow it. */
  #updateFlow(): void {
    if (this.#finished || this.#localEnded) return;
    const budget = this.#options.budget;
    const canRead =
      this.#current !== undefined &&
      this.#peerResumed &&
      !this.#replay.full &&
      this.#inFlight < this.#high;
    if (canRead && budget?.full) {
      // Other streams hold the process's replay memory: wait for them to give some back.
      budget.wait((this.#budgetWake ??= () => this.#updateFlow()));
      this.#socket.pause();
    } else if (canRead) this.#socket.resume();
    else this.#socket.pause();
  }

  /** Run an acknowledging operation on the replay, giving what it frees back to the budget. */
  #freeing<T>(op: () => T): T {
    const before = this.#replay.size;
    try {
      return op();
    } finally {
      this.#options.budget?.give(before - this.#replay.size);
    }
  }

  #sendPayload(chunk: Buffer): void {
    const ws = this.#current;
    if (!ws || ws.readyState !== ws.OPEN) return;
    this.#inFlight += chunk.length;
    ws.send(chunk, { binary: true }, () => {
      // A send on a socket since replaced does not count against the new one.
      if (ws !== this.#current) return;
      this.#inFlight -= chunk.length;
      this.#updateFlow();
    });
  }

  #finish(end: ResumableResult['end'], reason?: string): void {
    if (this.#finished) return;
    this.#finished = true;
    const budget = this.#options.budget;
    if (this.#budgetWake) budget?.forget(this.#budgetWake);
    // What this stream kept is let go of with it.
    budget?.give(this.#replay.size);
    clearTimeout(this.#ackTimer);
    clearTimeout(this.#retryTimer);
    if (end === 'completed') {
      if (!this.#socketWriteEnded) this.#socket.end();
    } else {
      // A stream that could not be completed must not look complete to the application.
      resetSocket(this.#socket);
    }
    // An end this side chose (its local connection failed, or the peer broke the protocol) is
    // a deliberate reset: the hub and the other end end the stream too, rather than holding
    // it for a resumption that this end will never make.
    if (this.#current && end !== 'completed')
      closeWebSocket(
        this.#current,
        end === 'local-error' || end === 'protocol-error'
          ? closeCodes.localError
          : closeCodes.peerLost,
      );
    this.#options.onEnd?.({
      end,
      bytesSent: this.#replay.sent,
      bytesReceived: this.#received,
      resumptions: this.#resumptions,
      reason,
    });
  }

  /** Everything delivered and acknowledged both ways: close normally. */
  #checkDone(): void {
    if (this.#finished || !this.#current || !this.#peerResumed) return;
    if (!this.#localEnded || this.#replay.size > 0) return;
    if (
      this.#peerEof === undefined ||
      this.#acks.received < this.#peerEof ||
      !this.#socketWriteEnded
    )
      return;
    // (acks.received counts what the socket took: everything the peer sent has landed.)
    this.#closingNormally = true;
    // Our last acknowledgement first, so the peer knows its bytes arrived; none when it has
    // them all acknowledged already (on this socket, or by its resume): an end that received
    // nothing, or whose acknowledgement went out with the peer's `eof` on its way, would
    // otherwise send a frame that says nothing new, and the hub relay it, once per stream.
    if (this.#acks.due) this.#send({ type: 'ack', received: this.#acks.take() });
    closeWebSocket(this.#current, closeCodes.normal);
    this.#finish('completed');
  }

  /** The acknowledgement timer: one function for every stream, given its end. */
  static #ackDue(end: ResumableEnd): void {
    end.#ackNow();
  }

  #ackNow(): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    // Only counted as acknowledged once it is on its way: an acknowledgement taken while the
    // socket is gone would be lost, and the peer would keep those bytes (and wait) for ever.
    const ws = this.#current;
    if (!this.#acks.due || !ws || ws.readyState !== ws.OPEN || !this.#peerResumed) return;
    this.#send({ type: 'ack', received: this.#acks.take() });
  }

  /**
   * Payload from the peer. Counted as received at once (a resume asks for what comes after),
   * acknowledged only once the socket has taken it: the peer keeps at most its replay bound
   * unacknowledged, so that bound is also what this end can hold for a slow application.
   * The stream socket is never paused for the application, so acknowledgements and control
   * frames keep flowing both ways (pausing it would also stall the acks this end needs).
   */
  #onPayload(payload: Buffer): void {
    let data = payload;
    if (this.#duplicates > 0) {
      const skip = Math.min(this.#duplicates, data.length);
      this.#duplicates -= skip;
      if (skip === data.length) return;
      data = data.subarray(skip);
    }
    if (this.#peerEof !== undefined && this.#received + data.length > this.#peerEof)
      return this.#finish('protocol-error', 'payload after the peer said it had ended');
    this.#received += data.length;
    const n = data.length;
    // A peer keeps at most its replay bound unacknowledged, and this end acknowledges only
    // what the socket took: more than that waiting for the socket means the peer ignores the
    // acknowledgements. Bounded here, whatever the peer does.
    this.#undelivered += n;
    if (this.#undelivered > this.#replayCapacity + this.#high)
      return this.#finish('protocol-error', 'the peer sent past its replay window');
    // What the writer says of the socket's buffer is not needed: the bound above holds it.
    this.#writer.write(data, () => {
      this.#undelivered -= n;
      if (this.#finished) return;
      if (this.#acks.onData(n)) this.#ackNow();
      else this.#ackTimer ??= setTimeout(ResumableEnd.#ackDue, this.#options.ackIdleMs ?? 50, this);
      this.#checkDone();
    });
    this.#endSocketIfDelivered();
  }

  #endSocketIfDelivered(): void {
    if (
      this.#peerEof !== undefined &&
      this.#received === this.#peerEof &&
      !this.#socketWriteEnded
    ) {
      this.#socketWriteEnded = true;
      this.#socket.end();
    }
  }

  /** Hand both sockets back as they are (nothing was read from the socket yet). */
  #letGo(peer: 'v1' | 'raw'): void {
    this.#finished = true;
    clearTimeout(this.#ackTimer);
    clearTimeout(this.#retryTimer);
    const socket = this.#socket as Linked<BridgeableStream>;
    socket.off('data', ResumableEnd.#onSocketData);
    socket.off('end', ResumableEnd.#onSocketEnd);
    socket.off('error', ResumableEnd.#onSocketError);
    socket.off('close', ResumableEnd.#onSocketClose);
    // Assigned, not deleted: a delete would turn the socket into a slow dictionary object.
    socket[kEnd] = undefined;
    socket.pause();
    this.#options.onPlain?.(peer);
  }

  #onControl(frame: StreamFrame): void {
    switch (frame.type) {
      case 'plain':
        return;
      case 'resume': {
        if (this.#resumePresumed) {
          this.#resumePresumed = false;
          if (frame.received !== 0)
            return this.#finish('protocol-error', 'a first resume that is not from the start');
          return;
        }
        if (this.#peerResumed)
          return this.#finish('protocol-error', 'a second resume on one socket');
        this.#peerResumed = true;
        let chunks: Buffer[];
        try {
          chunks = this.#freeing(() => this.#replay.replayFrom(frame.received));
        } catch (error) {
          if (error instanceof ReplayOffsetError)
            return this.#finish('protocol-error', error.message);
          throw error;
        }
        let replayed = 0;
        for (const chunk of chunks) {
          replayed += chunk.length;
          this.#sendPayload(chunk);
        }
        if (this.#localEnded) this.#send({ type: 'eof', sent: this.#replay.sent });
        this.#ackNow(); // what was passed on while the socket was away
        if (this.#suspendedAt !== undefined) {
          this.#options.onEvent?.({
            type: 'resumed',
            afterMs: Date.now() - this.#suspendedAt,
            attempts: this.#attempts,
            replayedBytes: replayed,
          });
          this.#suspendedAt = undefined;
          this.#attempts = 0;
        }
        this.#updateFlow();
        return this.#checkDone();
      }
      case 'ack':
        // A resume already acknowledged what the peer had received, which may be more than
        // what it has since passed on and acknowledges now: an older count changes nothing.
        if (frame.received <= this.#replay.acked) return this.#checkDone();
        try {
          this.#freeing(() => this.#replay.ack(frame.received));
        } catch (error) {
          if (error instanceof ReplayOffsetError)
            return this.#finish('protocol-error', error.message);
          throw error;
        }
        this.#updateFlow();
        return this.#checkDone();
      case 'eof':
        if (this.#peerEof !== undefined && this.#peerEof !== frame.sent)
          return this.#finish('protocol-error', 'the peer changed its end offset');
        if (frame.sent < this.#received)
          return this.#finish('protocol-error', 'the peer ended before bytes it had sent');
        this.#peerEof = frame.sent;
        this.#endSocketIfDelivered();
        return this.#checkDone();
      case 'ticket':
        this.#ticket = frame.ticket;
        // The hub hands out a ticket when it has paired this socket with a resumable peer:
        // only then is it safe to speak v2 (a v1 or raw peer would take a resume frame for data).
        if (!this.#helloSent) {
          this.#helloSent = true;
          // From what the socket has taken, not from what has arrived: the peer drops what a
          // resume names, and its replay bound (the window this end's memory relies on) starts
          // again from there. Resuming from `received` with bytes still queued for a slow
          // reader would let the peer send a whole window more on top of them. The bytes in
          // between come again and are dropped here (`duplicates`).
          this.#duplicates = this.#undelivered;
          this.#send({ type: 'resume', received: this.#received - this.#undelivered });
          // The stream's first socket: the peer can have received nothing (the hub hands out
          // both tickets before it relays a byte, and no end sends payload before its ticket),
          // so its resume will say 0. Waiting for it would cost a round trip through the hub
          // before the first byte; payload goes now, after this end's own resume, which is
          // all the peer waits for.
          if (this.#resumptions === 0 && this.#received === 0 && this.#replay.sent === 0) {
            this.#peerResumed = this.#resumePresumed = true;
            this.#updateFlow();
          }
        }
        return;
    }
  }

  /**
   * Take an open stream socket. It comes paused (see net/hub-client.ts: frames that arrive
   * with the handshake's answer are emitted at once, before a promise continuation could add
   * a listener), and is resumed once listened to.
   */
  #attach(ws: StreamSocket): void {
    this.#current = ws;
    this.#peerResumed = this.#resumePresumed = false;
    this.#inFlight = 0;
    ws.on('error', ignore);
    (ws as Linked<StreamSocket>)[kEnd] = this;
    ws.on('message', ResumableEnd.#onMessage);
    // 'on', not 'once': a socket closes once, and once() would keep a wrapper and its state
    // (about 130 B) for the stream's life.
    ws.on('close', ResumableEnd.#onClose);
    this.#helloSent = false;
    ws.resume();
  }

  /** A stream socket's message ('message' listener: `this` is the socket). */
  static #onMessage(this: Linked<StreamSocket>, data: RawData, isBinary: boolean): void {
    const end = this[kEnd];
    if (!end || end.#finished || this !== end.#current) return;
    const buf = data as Buffer;
    if (isBinary) {
      if (!end.#peerResumed)
        return end.#finish('protocol-error', 'payload before the peer resumed');
      return end.#onPayload(buf);
    }
    const frame = parseStreamFrame(buf.toString('utf8'));
    if (!frame) return end.#finish('protocol-error', 'an invalid stream frame');
    if (frame.type === 'plain') {
      if (end.#peerResumed || end.#resumptions > 0 || end.#replay.sent > 0 || !end.#options.onPlain)
        return end.#finish('protocol-error', 'an unexpected plain frame');
      this.off('message', ResumableEnd.#onMessage);
      this.off('close', ResumableEnd.#onClose);
      this[kEnd] = undefined;
      return end.#letGo(frame.peer);
    }
    end.#onControl(frame);
  }

  /** A stream socket closed ('close' listener: `this` is the socket). */
  static #onClose(this: Linked<StreamSocket>, code: number): void {
    const end = this[kEnd];
    if (!end || this !== end.#current || end.#finished) return;
    end.#current = undefined;
    end.#peerResumed = false;
    if (code === closeCodes.normal && !end.#closingNormally) {
      // The peer closes normally only once everything arrived both ways.
      if (!end.#socketWriteEnded) end.#socket.end();
      return end.#finish('completed');
    }
    // The other end reset the stream on purpose (its local connection failed, or its
    // process was stopped): nothing to resume.
    if (code === closeCodes.localError)
      return end.#finish('peer-reset', 'the other end reset the stream');
    end.#suspend(`stream socket closed (${code})`);
  }

  #suspend(reason: string): void {
    this.#socket.pause();
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const suspendedAt = Date.now();
    this.#suspendedAt = suspendedAt;
    this.#attempts = 0;
    const options = this.#options;
    options.onEvent?.({ type: 'suspended', reason });
    const deadline = suspendedAt + options.resumeWindowMs;
    // At most a second between attempts (half to a whole, jittered): a hub that restarts is
    // found within about a second of listening, at the cost of one refused connection a second
    // per suspended stream while it is away.
    const backoff = options.backoff ?? { initialMs: 100, maxMs: 1000 };
    const tryOnce = (): void => {
      if (this.#finished) return;
      this.#attempts++;
      options.reconnect(this.#ticket).then(
        (ws) => {
          if (this.#finished) return closeWebSocket(ws, closeCodes.normal);
          this.#resumptions++;
          this.#attach(ws);
        },
        (error: unknown) => {
          if (this.#finished) return;
          if (error instanceof ResumeRefusedError)
            return this.#finish(
              'gave-up',
              `the hub refused to resume the stream: ${error.message}`,
            );
          const base = Math.min(
            backoff.maxMs,
            backoff.initialMs * 2 ** Math.min(this.#attempts - 1, 16),
          );
          // Jitter: ends that lost the hub together do not come back in lockstep.
          const delay = base / 2 + Math.random() * (base / 2);
          if (Date.now() + delay > deadline)
            return this.#finish(
              'gave-up',
              `did not resume within ${Math.round(options.resumeWindowMs / 1000)} s`,
            );
          this.#retryTimer = setTimeout(tryOnce, delay);
        },
      );
    };
    tryOnce();
  }

  // The local socket's listeners (`this` is the socket).

  static #onSocketData(this: Linked<BridgeableStream>, chunk: Buffer): void {
    const end = this[kEnd];
    if (!end || end.#finished) return;
    end.#replay.push(chunk);
    end.#options.budget?.take(chunk.length);
    if (end.#peerResumed) end.#sendPayload(chunk);
    end.#updateFlow();
  }

  static #onSocketEnd(this: Linked<BridgeableStream>): void {
    const end = this[kEnd];
    if (!end || end.#finished) return;
    end.#localEnded = true;
    if (end.#peerResumed) end.#send({ type: 'eof', sent: end.#replay.sent });
    end.#checkDone();
  }

  static #onSocketError(this: Linked<BridgeableStream>, error: Error): void {
    const end = this[kEnd];
    if (end) end.#finish('local-error', error.message);
  }

  static #onSocketClose(this: Linked<BridgeableStream>): void {
    const end = this[kEnd];
    if (end && !end.#finished && !(end.#localEnded && end.#socketWriteEnded))
      end.#finish('local-error', 'socket closed');
  }
}

/** A stream socket's errors end in its close, which the bridge handles. */
function ignore(): void {}
