import { EventEmitter } from 'node:events';
import {
  codeAndText,
  muxInitialWindow,
  muxMaxClose,
  muxMaxCredit,
  muxMaxHandshake,
  muxMaxPayload,
  MuxFrameType,
  MuxProtocolError,
  parseAccept,
  writeMuxHeader,
} from '../protocol/mux-frames.js';
import { resumableStreamProtocol, streamProtocol } from '../protocol/constants.js';

/** What a stream needs from its session (mux-session.ts implements it). */
export interface MuxLink {
  /** The stream has a frame it may send now: put it in the send rotation. */
  ready(stream: MuxStream): void;
  /**
   * The owner is about to queue `n` payload bytes to send, binary (`data`) or not: the session
   * flushes sooner when it is a lot, or when it is a stream's bytes and nothing is being
   * written (called before the frame is queued, so that the session knows which flush it
   * takes).
   */
  queued(n: number, binary: boolean): void;
  /** Send a `window` frame ahead of the rotation (credit is never held behind data). */
  grant(stream: MuxStream, increment: number): void;
  /**
   * The window `stream` is granted from now on (asked each time its credit goes back,
   * `stream.window` still the one before): the first window and its share of the
   * connection's, or a smaller one while an interactive stream shares the connection, so that
   * a bulk stream's bytes in flight, which every other stream's frames wait behind, stay few.
   */
  windowFor(stream: MuxStream): number;
  /** Bytes received on some stream and not yet taken by its owner went up or down by `n`. */
  buffered(n: number): void;
  /** The stream sent and received its close: its id is free. */
  forget(stream: MuxStream): void;
  /** Ask the carrier for a pong on this stream's behalf (the heartbeat's ping). */
  ping(stream: MuxStream): void;
  /**
   * `writeFrame` just wrote the last piece of a send: run `callback` once the message holding
   * it has been written out (or with the error that lost it).
   */
  written(callback: (error?: Error) => void): void;
}

/** What a stream has queued to send: one owner's send, or a frame of the protocol's own. */
interface OutItem {
  readonly type: MuxFrameType;
  readonly payload: Buffer;
  /** Payload bytes already written out in earlier frames (a send larger than a frame). */
  sent: number;
  /** Called once the last of it has reached the connection (or with the error that ends it). */
  readonly done: ((error?: Error) => void) | undefined;
}

type SendCallback = (error?: Error) => void;

/** The events of a MuxStream: a WebSocket's, so the stream layer takes it as a stream socket. */
export interface MuxStreamEvents {
  /** The acceptor accepted (opener side): `protocol` is set. */
  open: [];
  /** The acceptor refused (opener side), with an HTTP status and IoT Hub's error JSON. */
  refused: [status: number, body: string];
  message: [data: Buffer, isBinary: boolean];
  /** Once, when both sides have closed (or the connection is lost: 1006). */
  close: [code: number, reason: Buffer];
  /** Answer to `ping()`: the connection is alive. */
  pong: [];
  error: [Error];
}

const emptyReason = Buffer.alloc(0);

/**
 * dstream's stream protocols, one string each: a stream keeps the protocol its peer accepted
 * for its life, and a copy parsed from every accept is 40 bytes of every open stream.
 */
const knownProtocols = new Map([streamProtocol, resumableStreamProtocol].map((p) => [p, p]));

/**
 * One substream of a carrier connection, with a WebSocket's surface (`StreamSocket`): binary
 * messages are `data` frames, text messages `text` frames, `close(code, reason)` a `close`
 * frame. Each direction has its own credit: this side sends payload only while the peer has
 * granted it, and grants the peer more as its owner takes what arrived, so a stream whose
 * owner stops reading (paused) holds at most its window, and stalls no other stream.
 *
 * A stream starts paused, as the WebSocket carrier's sockets do: what arrives is kept (within
 * the window) until its owner resumes it.
 */
export class MuxStream extends EventEmitter<MuxStreamEvents> {
  // On the prototype (below), not in each stream: constant fields are 8 bytes of every stream.
  declare readonly CONNECTING: 0;
  declare readonly OPEN: 1;
  declare readonly CLOSING: 2;
  declare readonly CLOSED: 3;
  /** It lives and dies with its carrier connection, whose own heartbeat watches both. */
  declare readonly watchedByConnection: true;
  readyState: 0 | 1 | 2 | 3 = 0;
  /** The stream protocol the acceptor chose ('' until accepted, and for raw bytes). */
  protocol = '';

  /**
   * Frames waiting to be sent, in order. This and `#inbox` are replaced by a new empty array
   * whenever they empty: an array keeps the capacity it grew to, and four of them (two streams
   * a hub stream) were about 0.5 KiB of every idle stream's memory in the hub.
   */
  #outbox: OutItem[] = [];
  /** Payload bytes this side may still send. */
  #sendCredit = muxInitialWindow;
  /** Payload bytes the peer may still send. */
  #receiveCredit = muxInitialWindow;
  /**
   * What the peer's credit, what waits here and what was taken and not granted again add up
   * to: the credit this side keeps granting the peer. The first window until credit first
   * goes back, then the session's `windowFor()` each time it does.
   */
  #window = muxInitialWindow;
  /**
   * Bytes taken by the owner and not yet granted back to the peer; below zero after the
   * window shrank, until the peer has used the credit it holds beyond the new window (credit
   * cannot be taken back, only not granted again).
   */
  #taken = 0;
  /** What arrived while paused, in order. */
  #inbox: Array<[Buffer, boolean]> = [];
  #inboxBytes = 0;
  #paused = true;
  #draining = false;
  /** In the session's send rotation. */
  scheduled = false;
  /** The last `data` frame received was a few bytes (the session's, to tell interactive streams). */
  smallBefore = true;
  /** This side's `open` (opener) or answer (acceptor) has gone out: the peer knows the id. */
  #announced = false;
  /** This side's `close` (or `refuse`) is queued: nothing more may be queued after it. */
  #closeQueued = false;
  /** This side refused the stream: what the opener sent meanwhile is dropped. */
  #refused = false;
  #closeSent = false;
  #closeReceived: { code: number; reason: Buffer } | undefined;
  #closeEmitted = false;
  #forgotten = false;

  /**
   * @param id the stream's id on its connection
   * @param url what the stream was opened for (the streaming URL, or the acceptor's path); an
   *   initiation's becomes the streaming URL its accept names
   * @param opener true on the side that sent `open`
   * @param link its session
   */
  constructor(
    readonly id: number,
    public url: string,
    readonly opener: boolean,
    private readonly link: MuxLink,
  ) {
    super();
  }

  get isPaused(): boolean {
    return this.#paused;
  }

  /** Payload bytes received and not yet taken (for tests of bounded memory). */
  get heldBytes(): number {
    return this.#inboxBytes;
  }

  /** The credit this side keeps granting the peer (counted against the connection window). */
  get window(): number {
    return this.#window;
  }

  /** Payload bytes queued to send (not yet handed to the connection). */
  get queuedBytes(): number {
    let n = 0;
    for (const item of this.#outbox) if (isPayload(item.type)) n += item.payload.length - item.sent;
    return n;
  }

  // --- the owner's side (a WebSocket's methods) ---

  /**
   * Send a binary message (a Buffer) or a text message (a string), as `ws` does. The callback
   * runs once the bytes reached the connection, or with an error if the stream closed first.
   */
  send(
    data: Buffer | string,
    options?: { binary?: boolean } | SendCallback,
    cb?: SendCallback,
  ): void {
    const callback = typeof options === 'function' ? options : cb;
    const binary =
      typeof options === 'object' && options.binary !== undefined
        ? options.binary
        : typeof data !== 'string';
    if (this.readyState !== this.OPEN && !(this.readyState === this.CONNECTING && this.opener)) {
      if (this.readyState === this.CONNECTING) throw new Error('the stream is not accepted yet');
      if (callback) process.nextTick(callback, new Error('the stream is closed'));
      return;
    }
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (payload.length === 0) {
      // An empty message carries nothing; frames are never empty.
      if (callback) process.nextTick(callback);
      return;
    }
    if (!binary && payload.length > muxMaxPayload)
      throw new RangeError(`a text message may not exceed ${muxMaxPayload} bytes`);
    this.link.queued(payload.length, binary);
    this.#enqueue(binary ? MuxFrameType.data : MuxFrameType.text, payload, callback);
  }

  /** Close after what is queued has been sent; 'close' follows once the peer closed too. */
  close(code = 1000, reason = ''): void {
    if (this.#closeQueued || this.readyState === this.CLOSED) return;
    this.readyState = this.CLOSING;
    this.#closeQueued = true;
    this.#enqueue(MuxFrameType.close, codeAndText(code, reason, muxMaxClose));
  }

  /**
   * Drop what is queued and close at once; 'close' (1006) follows at once. A close already
   * queued (a deliberate reset's 4001 just before) still goes out, ahead of nothing.
   */
  terminate(): void {
    if (this.readyState === this.CLOSED) return;
    const queuedClose = this.#outbox.find(
      (i) => i.type === MuxFrameType.close || i.type === MuxFrameType.refuse,
    );
    this.#dropOutbox('the stream was terminated');
    this.#dropInbox();
    this.readyState = this.CLOSED;
    if (this.opener && !this.#announced) {
      // The peer never heard of it (its `open` had not gone out): nothing to close there.
      this.#closeQueued = this.#closeSent = true;
      this.#closeReceived ??= { code: 1006, reason: emptyReason };
      this.#finish();
    } else if (!this.#closeSent) {
      this.#closeQueued = true;
      if (queuedClose) this.#enqueue(queuedClose.type, queuedClose.payload);
      else this.#enqueue(MuxFrameType.close, codeAndText(1006, 'terminated', muxMaxClose));
    }
    process.nextTick(() => this.#emitClose(1006, emptyReason));
  }

  pause(): void {
    this.#paused = true;
  }

  /** Deliver what was kept, then what arrives, from the next microtask on (never re-entrant). */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.#inbox.length > 0 || this.#closeReceived) this.#scheduleDrain();
  }

  ping(): void {
    if (this.readyState === this.OPEN) this.link.ping(this);
  }

  // --- the acceptor's answer ---

  /**
   * Accept a stream the peer opened, speaking `protocol` ('' for raw bytes); `path` names the
   * stream's streaming path when the peer opened another (an initiation).
   */
  accept(protocol: string, path?: string): void {
    if (this.opener || this.readyState !== this.CONNECTING) return;
    const payload = Buffer.from(
      JSON.stringify(path === undefined ? { protocol } : { protocol, path }),
    );
    // The peer would close the whole connection for it (and a message has room for no more).
    if (payload.length > muxMaxHandshake)
      throw new RangeError(`a stream's accept may not exceed ${muxMaxHandshake} bytes`);
    this.protocol = protocol;
    this.readyState = this.OPEN;
    this.#enqueue(MuxFrameType.accept, payload);
  }

  /** Refuse a stream the peer opened, with an HTTP status and IoT Hub's error JSON. */
  refuse(status: number, body: string): void {
    if (this.opener || this.readyState !== this.CONNECTING) return;
    this.readyState = this.CLOSING;
    this.#refused = this.#closeQueued = true;
    this.#dropInbox();
    this.#enqueue(MuxFrameType.refuse, codeAndText(status, body, muxMaxHandshake));
  }

  /**
   * The opener's first frame. No `window` with it: a stream starts at the first window and is
   * granted its share of the connection's once its credit first goes back (so a stream that
   * moves little claims none, and an open costs one frame).
   */
  sendOpen(request: Buffer): void {
    this.#enqueue(MuxFrameType.open, request);
  }

  // --- the session's side ---

  /** True when the next frame in the outbox may go now. */
  get sendable(): boolean {
    const head = this.#outbox[0];
    if (!head) return false;
    if (head.type === MuxFrameType.data) return this.#sendCredit > 0;
    if (head.type === MuxFrameType.text) return this.#sendCredit >= head.payload.length;
    return true;
  }

  /**
   * Write the next frame (a `data` frame at most one frame's worth) into `message` at `at`,
   * which has room for a whole frame: returns the offset after it, or `at` when nothing may go
   * now. The payload is copied straight from the owner's buffer into the message.
   */
  writeFrame(message: Buffer, at: number): number {
    if (!this.sendable) return at;
    const head = this.#outbox[0];
    if (!head) return at;
    if (head.type === MuxFrameType.data) {
      const n = Math.min(head.payload.length - head.sent, muxMaxPayload, this.#sendCredit);
      this.#sendCredit -= n;
      const end = writeMuxHeader(message, at, head.type, this.id, n);
      head.payload.copy(message, end, head.sent, head.sent + n);
      head.sent += n;
      if (head.sent === head.payload.length) {
        this.#shiftOutbox();
        if (head.done) this.link.written(head.done);
      }
      return end + n;
    }
    this.#shiftOutbox();
    this.#announced = true;
    if (head.type === MuxFrameType.text) this.#sendCredit -= head.payload.length;
    const end = writeMuxHeader(message, at, head.type, this.id, head.payload.length);
    head.payload.copy(message, end);
    if (head.done) this.link.written(head.done);
    if (head.type === MuxFrameType.close || head.type === MuxFrameType.refuse) {
      this.#closeSent = true;
      this.#dropOutbox('the stream is closed');
      if (this.#closeReceived) this.#finish();
    }
    return end + head.payload.length;
  }

  /** A frame for this stream arrived. Throws MuxProtocolError for one that breaks the rules. */
  receive(type: MuxFrameType, payload: Buffer): void {
    switch (type) {
      case MuxFrameType.data:
      case MuxFrameType.text:
        return this.#receivePayload(payload, type === MuxFrameType.data);
      case MuxFrameType.window: {
        const increment = payload.readUInt32BE(0);
        if (increment === 0 || this.#sendCredit + increment > muxMaxCredit)
          throw new MuxProtocolError('window overflow');
        if (this.#closeSent) return;
        this.#sendCredit += increment;
        if (!this.scheduled && this.sendable) this.link.ready(this);
        return;
      }
      case MuxFrameType.accept: {
        if (!this.opener || this.#closeReceived) throw new MuxProtocolError('unexpected accept');
        if (this.readyState !== this.CONNECTING) {
          // This side closed before the answer came: the close is on its way.
          if (this.#closeQueued) return;
          throw new MuxProtocolError('accept on an accepted stream');
        }
        const accepted = parseAccept(payload);
        this.protocol = knownProtocols.get(accepted.protocol) ?? accepted.protocol;
        if (accepted.path !== undefined) this.url = new URL(accepted.path, this.url).href;
        this.readyState = this.OPEN;
        this.emit('open');
        return;
      }
      case MuxFrameType.refuse: {
        if (!this.opener || this.#closeReceived) throw new MuxProtocolError('unexpected refuse');
        const status = payload.readUInt16BE(0);
        const body = payload.subarray(2).toString('utf8');
        if (this.readyState === this.CONNECTING) this.emit('refused', status, body);
        return this.#receiveClose(1008, Buffer.from(`refused (${status})`));
      }
      case MuxFrameType.close: {
        if (this.#closeReceived) throw new MuxProtocolError('second close');
        return this.#receiveClose(payload.readUInt16BE(0), Buffer.from(payload.subarray(2)));
      }
      default:
        throw new MuxProtocolError(`unexpected frame type ${type} on an open stream`);
    }
  }

  /** The connection is gone: every stream not closed yet closes as lost (1006). */
  lost(): void {
    this.#dropOutbox('carrier connection lost');
    this.#dropInbox();
    this.#closeSent = true;
    this.#closeReceived ??= { code: 1006, reason: Buffer.from('carrier connection lost') };
    this.#forgotten = true;
    if (this.readyState !== this.CLOSED) {
      this.readyState = this.CLOSED;
      this.#emitClose(1006, Buffer.from('carrier connection lost'));
    }
  }

  // --- internals ---

  #receivePayload(payload: Buffer, isBinary: boolean): void {
    if (this.#closeReceived) throw new MuxProtocolError('payload after close');
    if (payload.length > this.#receiveCredit) throw new MuxProtocolError('window exceeded');
    this.#receiveCredit -= payload.length;
    // Refused or terminated by this side: the peer has not heard yet; what it sends is dropped.
    // (After a graceful close, what the peer sends before its own close is still delivered.)
    if (this.#refused || this.readyState === this.CLOSED) return;
    if (this.#paused || this.#inbox.length > 0) {
      this.#inbox.push([payload, isBinary]);
      this.#inboxBytes += payload.length;
      this.link.buffered(payload.length);
      return;
    }
    this.#deliver(payload, isBinary);
  }

  #deliver(payload: Buffer, isBinary: boolean): void {
    this.emit('message', payload, isBinary);
    this.#taken += payload.length;
    // Credit goes back in quarters of the window: few frames, and never a stall at the edge.
    if (this.#taken < this.#window / 4 || this.#closeSent || this.#closeReceived) return;
    const window = this.link.windowFor(this);
    this.#taken += window - this.#window;
    this.#window = window;
    if (this.#taken < window / 4) return;
    this.#receiveCredit += this.#taken;
    this.link.grant(this, this.#taken);
    this.#taken = 0;
  }

  #scheduleDrain(): void {
    if (this.#draining) return;
    this.#draining = true;
    queueMicrotask(() => {
      this.#draining = false;
      while (!this.#paused && this.#inbox.length > 0) {
        const next = this.#inbox.shift();
        if (!next) break;
        this.#inboxBytes -= next[0].length;
        this.link.buffered(-next[0].length);
        this.#deliver(next[0], next[1]);
      }
      if (this.#inbox.length === 0) this.#inbox = [];
      const closed = this.#closeReceived;
      if (!this.#paused && this.#inbox.length === 0 && closed && this.#closeSent)
        this.#emitClose(closed.code, closed.reason);
    });
  }

  #receiveClose(code: number, reason: Buffer): void {
    this.#closeReceived = { code, reason };
    // Never accepted here: its owner has not taken it, and will not hear what was sent.
    if (!this.opener && this.readyState === this.CONNECTING) this.#dropInbox();
    if (!this.#closeSent) {
      // As a WebSocket answers a close: nothing more is sent, the close is echoed at once
      // (also in place of a close of this side's still queued behind data, which the peer
      // would never give credit for now).
      this.#closeQueued = true;
      this.#dropOutbox('the peer closed the stream');
      this.#enqueue(MuxFrameType.close, codeAndText(code, '', muxMaxClose));
      if (this.readyState !== this.CLOSED) this.readyState = this.CLOSING;
      return;
    }
    this.#finish();
  }

  /** Both closes are through: the id is free; 'close' follows what is still to deliver. */
  #finish(): void {
    if (!this.#forgotten) {
      this.#forgotten = true;
      this.link.forget(this);
    }
    const closed = this.#closeReceived;
    if (!closed || this.#closeEmitted) return;
    if (this.readyState === this.CLOSED) return;
    // What arrived before the close is delivered first, as a WebSocket would; a paused owner
    // hears of the close when it resumes (closeWebSocket resumes before closing).
    if (this.#inbox.length === 0) this.#emitClose(closed.code, closed.reason);
    else if (!this.#paused) this.#scheduleDrain();
  }

  #emitClose(code: number, reason: Buffer): void {
    if (this.#closeEmitted) return;
    this.#closeEmitted = true;
    this.readyState = this.CLOSED;
    if (this.#inboxBytes > 0) this.#dropInbox();
    this.emit('close', code, reason);
  }

  /** Queue a frame (a send's whole payload, cut into frames as credit allows). */
  #enqueue(type: MuxFrameType, payload: Buffer, done?: SendCallback): void {
    this.#outbox.push({ type, payload, sent: 0, done });
    if (!this.scheduled && this.sendable) this.link.ready(this);
  }

  #shiftOutbox(): void {
    this.#outbox.shift();
    if (this.#outbox.length === 0) this.#outbox = [];
  }

  /**
   * Fail what is still queued. The error is made only if a send waits on it: an Error takes
   * its stack (2 µs and more), and most streams close with nothing queued.
   */
  #dropOutbox(why: string): void {
    const dropped = this.#outbox;
    this.#outbox = [];
    let error: Error | undefined;
    for (const item of dropped) item.done?.((error ??= new Error(why)));
  }

  #dropInbox(): void {
    if (this.#inboxBytes > 0) this.link.buffered(-this.#inboxBytes);
    this.#inbox = [];
    this.#inboxBytes = 0;
  }
}

Object.defineProperties(MuxStream.prototype, {
  CONNECTING: { value: 0 },
  OPEN: { value: 1 },
  CLOSING: { value: 2 },
  CLOSED: { value: 3 },
  watchedByConnection: { value: true },
});

const isPayload = (t: MuxFrameType): boolean => t === MuxFrameType.data || t === MuxFrameType.text;

/**
 * The answer to an `open` this side sent: undefined when accepted, else the refusal's status and
 * body (status 0: the stream closed first, its connection lost or the stream terminated).
 */
export function answerOf(stream: MuxStream): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const settle = (result: { status: number; body: string } | undefined): void => {
      stream.off('open', onOpen);
      stream.off('refused', onRefused);
      stream.off('close', onClose);
      resolve(result);
    };
    const onOpen = (): void => settle(undefined);
    const onRefused = (status: number, body: string): void => settle({ status, body });
    const onClose = (): void => settle({ status: 0, body: 'carrier connection lost' });
    stream.once('open', onOpen);
    stream.once('refused', onRefused);
    stream.once('close', onClose);
  });
}
