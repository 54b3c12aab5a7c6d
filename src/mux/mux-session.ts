import { channel } from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import type { RawData, WebSocket } from 'ws';
import {
  MuxFrameType,
  MuxProtocolError,
  muxInitialWindow,
  muxMaxHandshake,
  muxMaxPayload,
  readMuxFrames,
  parseOpenRequest,
  writeMuxHeader,
  type MuxOpenRequest,
} from '../protocol/mux-frames.js';
import { frameHeaderRoom, writeFrameHeader, type DirectFraming } from './direct-frame.js';
import { batchBytes, pooledFrom, releaseMessageBuffer, takeMessageBuffer } from './message-pool.js';
import { MuxStream, type MuxLink } from './mux-stream.js';

export interface MuxSessionOptions {
  /**
   * 'dialler' on the side that opened the carrier WebSocket (its streams have odd ids),
   * 'listener' on the side that accepted it (even ids).
   */
  readonly role: 'dialler' | 'listener';
  /**
   * Credit this side grants a stream, per direction, at most (default 2 MiB): while few of the
   * connection's streams are busy (see `connectionWindow`).
   */
  readonly receiveWindow?: number | undefined;
  /**
   * Credit this side grants the connection's streams beyond their first window (256 KiB
   * each), all together (default 16 MiB): shared out equally among the busy ones, those whose
   * credit went back within `sharedHoldMs`. See `windowFor`.
   */
  readonly connectionWindow?: number | undefined;
  /**
   * Credit per stream while an interactive stream shares the connection (default 128 KiB, at
   * most `receiveWindow`): see `windowFor`.
   */
  readonly sharedReceiveWindow?: number | undefined;
  /**
   * How long after an interactive stream's last frame beside another the connection counts as
   * shared (ms, default 1,000).
   */
  readonly sharedHoldMs?: number | undefined;
  /** The time in ms the hold is counted on (default `Date.now`; tests move it on). */
  readonly clock?: (() => number) | undefined;
  /** Streams open at once on this connection, opened by either side (default 65,536). */
  readonly maxStreams?: number | undefined;
  /** More frames than this in one second from the peer is a flood: the connection closes. */
  readonly maxFramesPerSecond?: number | undefined;
  /**
   * Bytes handed to the WebSocket and not yet written out, above which no more is sent
   * (default 256 KiB: in one run each of bench scenario 1 through hub and agent, 64 KiB gave
   * 78/81 MB/s up and down where 256 KiB gave 111/101; this machine's runs vary by a fifth).
   */
  readonly sendHighWater?: number | undefined;
  /**
   * The socket under the WebSocket, when this side may write its messages to it as whole
   * frames itself (direct-frame.ts): one buffer per message for the TLS socket to encrypt, not
   * `ws`'s header and message, which the socket copies into a new one. Without it, or once the
   * WebSocket is no longer open, messages go through `ws`.
   */
  readonly direct?: DirectFraming | undefined;
}

/** The events of a MuxSession. */
export interface MuxSessionEvents {
  /**
   * The peer opens a stream. The listener answers with `stream.accept(protocol)` or
   * `stream.refuse(status, body)`, now or later; without a listener streams are refused.
   */
  'open-request': [stream: MuxStream, request: MuxOpenRequest];
  /** The peer broke the framing: the connection is being closed (1002). */
  'protocol-error': [message: string];
  /** The carrier connection closed; every stream on it has closed as lost. */
  close: [code: number, reason: string];
}

/** What `muxMessageChannel` publishes: one carrier message, sent or taken. */
export interface MuxMessageTrace {
  readonly session: MuxSession;
  /** 'out': handed to the WebSocket; 'in': taken and every frame in it dispatched. */
  readonly direction: 'in' | 'out';
  /** The frame types in the message, in order. */
  readonly frames: readonly MuxFrameType[];
  /** 'in': when the message arrived (process.hrtime.bigint()), before its frames were handled. */
  readonly arrivedAt?: bigint | undefined;
}

/**
 * Every carrier message, for tracing tools (bench/setup-timeline.ts): the named
 * `diagnostics_channel` 'dstream:mux:message', published only while someone subscribes, so it
 * costs one check per message otherwise. Not a stable interface.
 */
export const muxMessageChannel = channel('dstream:mux:message');

/** How every carrier message is sent (one object for all, not one per send). */
const binaryMessage = { binary: true } as const;

/** The frame types of a message this side wrote (for tracing only). */
function frameTypesOf(message: Buffer): MuxFrameType[] {
  const types: MuxFrameType[] = [];
  readMuxFrames(message, (type) => {
    types.push(type);
    return true;
  });
  return types;
}

/** Default credit per stream and direction, at most: OpenSSH's channel window. */
export const defaultMuxReceiveWindow = 2 * 1024 * 1024;
/** Default credit beyond the first windows for all of a connection's streams: smux's session buffer. */
export const defaultMuxConnectionWindow = 16 * 1024 * 1024;
/** And while an interactive stream shares the connection (see `windowFor`). */
export const defaultMuxSharedReceiveWindow = 128 * 1024;
/** A `data` frame this small after another as small on its stream is an interactive stream's. */
const interactiveFrameBytes = 1024;

/**
 * A carrier connection: one WebSocket carrying many streams (MuxStream), in the framing of
 * protocol/mux-frames.ts. It sends the streams' frames in turn, one frame per stream per turn
 * (so an interactive stream waits behind at most one frame of each busy one), only while the
 * WebSocket keeps up, and checks everything the peer sends: a frame that breaks the rules
 * closes the connection with 1002, and every stream on it closes as lost.
 */
export class MuxSession extends EventEmitter<MuxSessionEvents> implements MuxLink {
  readonly #streams = new Map<number, MuxStream>();
  /** Streams with a frame they may send, in turn. */
  readonly #turns: MuxStream[] = [];
  #turnHead = 0;
  /** `window` frames, sent ahead of every turn: stream id and increment, in pairs. */
  readonly #grants: number[] = [];
  #grantHead = 0;
  /** The send callbacks of the message being put together. */
  #batchDone: Array<(error?: Error) => void> | undefined;
  readonly #receiveWindow: number;
  readonly #connectionWindow: number;
  /** Credit granted beyond the first window, all streams together: at most `#connectionWindow`. */
  #extra = 0;
  /** Streams whose credit went back within `#sharedHoldMs`, and when (pruned now and then). */
  readonly #busy = new Map<MuxStream, number>();
  #busyPrunedAt = -Infinity;
  readonly #sharedReceiveWindow: number;
  readonly #sharedHoldMs: number;
  readonly #clock: () => number;
  /** The live stream the last `data` frame was for (forgotten when it ends). */
  #lastReceiver: MuxStream | undefined;
  /** That frame was an interactive stream's. */
  #lastInteractive = false;
  /** When an interactive stream last received beside another (`#clock`). */
  #sharedAt = -Infinity;
  readonly #maxStreams: number;
  readonly #maxFrames: number;
  readonly #sendHighWater: number;
  readonly #direct: DirectFraming | undefined;
  #nextId: number;
  /** id % 2 of the streams the peer opens. */
  readonly #peerParity: 0 | 1;
  #inFlight = 0;
  #buffered = 0;
  #pumpQueued = false;
  #flushQueued = false;
  /** Payload bytes streams queued since the last send (see `queued`). */
  #queuedSinceSend = 0;
  #closeWhenIdle: { readonly code: number; readonly reason: string } | undefined;
  #closed = false;
  #frames = 0;
  #framesSince = 0;
  /** Streams that asked for a pong (the heartbeat), answered by the connection's next pong. */
  readonly #pings = new Set<MuxStream>();

  constructor(
    private readonly ws: WebSocket,
    options: MuxSessionOptions,
  ) {
    super();
    this.#nextId = options.role === 'dialler' ? 1 : 2;
    this.#peerParity = options.role === 'dialler' ? 0 : 1;
    this.#receiveWindow = Math.max(
      muxInitialWindow,
      options.receiveWindow ?? defaultMuxReceiveWindow,
    );
    this.#connectionWindow = options.connectionWindow ?? defaultMuxConnectionWindow;
    this.#sharedReceiveWindow = Math.min(
      this.#receiveWindow,
      Math.max(muxMaxPayload, options.sharedReceiveWindow ?? defaultMuxSharedReceiveWindow),
    );
    this.#sharedHoldMs = options.sharedHoldMs ?? 1000;
    this.#clock = options.clock ?? Date.now;
    this.#maxStreams = options.maxStreams ?? 65_536;
    this.#maxFrames = options.maxFramesPerSecond ?? 200_000;
    this.#sendHighWater = options.sendHighWater ?? 256 * 1024;
    this.#direct = options.direct;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: RawData, isBinary: boolean) => this.#onMessage(data, isBinary));
    ws.on('pong', () => {
      const waiting = [...this.#pings];
      this.#pings.clear();
      for (const stream of waiting) stream.emit('pong');
    });
    ws.on('close', (code: number, reason: Buffer) => this.#onClose(code, reason.toString()));
    // The 'close' that follows is what ends the streams.
    ws.on('error', () => undefined);
  }

  /** Streams open on this connection (until both sides closed them). */
  get size(): number {
    return this.#streams.size;
  }

  /** Bytes received and not yet taken, all streams together. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Open a stream: its `open` frame goes out now, and its owner may send right after, within
   * the first window, before the peer answers ('open' when accepted, 'refused' and 'close'
   * when not). The stream comes back paused.
   */
  open(url: string, request: MuxOpenRequest): MuxStream {
    if (this.#closed) throw new Error('the carrier connection is closed');
    if (this.#streams.size >= this.#maxStreams)
      throw new Error('too many streams on one carrier connection');
    const payload = Buffer.from(JSON.stringify(request));
    // The peer would close the whole connection for it (and a message has room for no more).
    if (payload.length > muxMaxHandshake)
      throw new RangeError(`a stream's open request may not exceed ${muxMaxHandshake} bytes`);
    const id = this.#allocateId();
    const stream = new MuxStream(id, url, true, this);
    this.#streams.set(id, stream);
    stream.sendOpen(payload);
    return stream;
  }

  /**
   * Take no new streams (they are refused with 403) and close the connection once every
   * stream on it has closed: what they queued (their close frames) goes out first.
   */
  closeWhenIdle(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closeWhenIdle = { code, reason };
    this.#closeIfIdle();
  }

  /**
   * Take new streams again after `closeWhenIdle`, if the connection has not closed yet (true
   * then): the connection is wanted after all (a device's stream offers came back to this
   * node while it finished its last stream here).
   */
  keepOpen(): boolean {
    if (this.#closed) return false;
    this.#closeWhenIdle = undefined;
    return true;
  }

  #closeIfIdle(): void {
    if (!this.#closeWhenIdle || this.#streams.size > 0 || this.#closed) return;
    // A stream is forgotten as its last frame is taken into a message, which is sent right
    // after: the WebSocket's close goes out behind it. Checked again then: `keepOpen` may
    // have been called, or a stream opened, in between.
    queueMicrotask(() => {
      const idle = this.#closeWhenIdle;
      if (idle && this.#streams.size === 0) this.close(idle.code, idle.reason);
    });
  }

  /**
   * Close the connection; every stream on it closes as lost. Frames already queued that need
   * no credit (streams' closes, answers) go out first, so streams closed just before this (a
   * process stopping its streams, then its carrier) end as they were closed, not as lost.
   */
  close(code = 1000, reason = ''): void {
    if (this.#closed) return;
    this.#pump(true);
    this.#end();
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING)
      this.ws.close(code, reason);
  }

  /** Drop the connection at once (tests and the heartbeat). */
  terminate(): void {
    this.#end();
    this.ws.terminate();
  }

  // --- MuxLink: what streams ask of their session ---

  ready(stream: MuxStream): void {
    if (this.#closed || stream.scheduled) return;
    stream.scheduled = true;
    this.#turns.push(stream);
    this.#queuePump();
  }

  /**
   * A frame's worth of payload waiting is sent from the next microtask, not the check phase:
   * batching it with other callbacks' frames saves nothing (it fills messages by itself), and
   * waiting for the check phase would move a bulk stream one message per turn of the event
   * loop at each hop (the ends and the hub hold a bounded amount in flight per stream, and it
   * is only sent on), half the per-stream WebSocket carrier's throughput in bench scenario 1.
   *
   * So is a stream's payload while the connection writes nothing (`#inFlight` 0): a keystroke
   * or its answer then goes out in the turn it came in, as on a WebSocket of its own, and no
   * check phase is asked for. A send in the check phase made every message cost the process
   * another turn of the loop (the write's completion, which Node hands to the check phase,
   * then waits for the next one): one more `epoll_pwait` per message in each process, and a
   * 64-byte round trip through proxy, hub and agent slower at p50 in most rounds in turns
   * (docs/benchmark.md, "One buffer per message, payload at once"). The stream protocol's own frames (opens, answers, closes, windows, text) still
   * wait for the check phase, where many streams' go out in one message under load; so does a
   * stream's payload while a message is being written (a write completes in the check phase:
   * the first callback of a busy I/O phase flushes at once, the others' frames go together).
   */
  queued(n: number, binary: boolean): void {
    this.#queuedSinceSend += n;
    if (this.#flushQueued || this.#closed) return;
    if (this.#queuedSinceSend < muxMaxPayload && !(binary && this.#inFlight === 0)) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#pump();
    });
  }

  grant(stream: MuxStream, increment: number): void {
    if (this.#closed) return;
    this.#grants.push(stream.id, increment);
    this.#queuePump();
  }

  /**
   * Bytes received and not yet taken, all streams together: bounded by the credit granted (a
   * window per open stream), never by pausing the connection. The connection is always read:
   * the `window` frames that let this side's own streams move arrive on it too (pausing it for
   * one direction's backlog can leave two connections each waiting for the other's credit),
   * and so does the peer's close. An earlier 16 MiB cap that paused it is the likely cause of
   * a CI soak run whose proxy and agent each took ws's 30 s close timeout to exit.
   */
  buffered(n: number): void {
    this.#buffered += n;
  }

  /**
   * A bulk stream's window is what it may have in flight on each hop, and a frame of any other
   * stream sent after it waits behind those bytes in the kernel's queues, where the turns
   * between streams do not reach. Beside a bulk upload, a 64-byte ping took 29-39 ms at p99
   * with 1 MiB windows, 14-17 ms with 128 KiB (docs/benchmark.md, where the bulk stream lost a
   * third of its speed meanwhile). So while an interactive stream (small `data` frames) has
   * received beside another within `sharedHoldMs`, every stream is granted the shared window.
   *
   * Otherwise a stream gets the first window and an equal share of the connection window among
   * the busy streams, up to the full `receiveWindow`, as far as what the others were granted
   * leaves room. A bulk stream alone moves fastest with a large window (2 MiB against 1: about
   * a tenth more each way through proxy, hub and agent), but a flat 2 MiB per stream made 100
   * busy streams cost the hub and the proxy 25-40 MB more at peak (docs/benchmark.md, "The
   * connection window"). Counting busy streams, not open ones, keeps a bulk stream's 2 MiB
   * beside many idle ones; credit once granted cannot be taken back, so a stream that went
   * quiet keeps its share of the room until its credit next goes back or it closes: what this
   * side may hold for a connection stays within a first window per stream and the connection
   * window.
   */
  windowFor(stream: MuxStream): number {
    // Not (or no longer) this connection's: nothing is counted for it.
    if (this.#streams.get(stream.id) !== stream) return stream.window;
    const now = this.#clock();
    const held = Math.max(0, stream.window - muxInitialWindow);
    let window = this.#sharedReceiveWindow;
    if (now - this.#sharedAt >= this.#sharedHoldMs) {
      this.#busy.set(stream, now);
      if (now - this.#busyPrunedAt >= this.#sharedHoldMs / 4) {
        this.#busyPrunedAt = now;
        for (const [s, at] of this.#busy) if (now - at >= this.#sharedHoldMs) this.#busy.delete(s);
      }
      const share = Math.floor(this.#connectionWindow / Math.max(1, this.#busy.size));
      const room = this.#connectionWindow - this.#extra + held;
      window =
        muxInitialWindow +
        Math.max(0, Math.min(this.#receiveWindow - muxInitialWindow, share, room));
    }
    this.#extra += Math.max(0, window - muxInitialWindow) - held;
    return window;
  }

  forget(stream: MuxStream): void {
    if (this.#streams.get(stream.id) === stream) {
      this.#streams.delete(stream.id);
      // Its credit is spent or void: the room goes back to the others.
      this.#extra -= Math.max(0, stream.window - muxInitialWindow);
      this.#busy.delete(stream);
    }
    // A stream that ended shares nothing with the next one.
    if (this.#lastReceiver === stream) this.#lastReceiver = undefined;
    this.#pings.delete(stream);
    this.#closeIfIdle();
  }

  written(callback: (error?: Error) => void): void {
    (this.#batchDone ??= []).push(callback);
  }

  ping(stream: MuxStream): void {
    if (this.#closed) return;
    const first = this.#pings.size === 0;
    this.#pings.add(stream);
    if (first) this.ws.ping();
  }

  // --- sending ---

  #allocateId(): number {
    // Ids of closed streams come back into use once both sides have closed them, so a
    // connection never runs out; a wrap skips ids still open.
    for (;;) {
      const id = this.#nextId;
      this.#nextId = this.#nextId + 2 > 0xffffffff ? (this.#nextId % 2 === 1 ? 1 : 2) : id + 2;
      if (!this.#streams.has(id)) return id;
    }
  }

  #queuePump(): void {
    // A flush is on its way this turn (`queued`): what is queued meanwhile goes with it.
    if (this.#pumpQueued || this.#flushQueued) return;
    this.#pumpQueued = true;
    // Frames queued in the same turn of the event loop go out together, in one message: not
    // only one callback's (a microtask would flush after each), but those of every callback
    // of the loop's I/O phase, which under load is many streams' answers, windows and bytes
    // in one TLS record and one write instead of one each (one quiet A/B round, 50 openers:
    // 15-20% more new streams a second). The check phase runs right after the I/O phase: no
    // timer waits.
    setImmediate(() => {
      this.#pumpQueued = false;
      this.#pump();
    });
  }

  /** Send what may go now, while the WebSocket keeps up (`all`: regardless, before a close). */
  #pump(all = false): void {
    this.#queuedSinceSend = 0;
    while (!this.#closed && (all || this.#inFlight < this.#sendHighWater)) {
      if (this.#grantHead === this.#grants.length && this.#turnHead === this.#turns.length) return;
      // Frames are written straight into the message, nothing allocated per frame: an object
      // per frame and an array per message, at every hop, were most of the carrier's own
      // garbage in a bulk transfer (docs/benchmark.md, "Bulk per hop").
      const batch = takeMessageBuffer();
      // Room in front for the WebSocket frame's header, when this side writes it itself.
      const direct = this.#direct && this.ws.readyState === this.ws.OPEN ? this.#direct : undefined;
      const room = direct ? frameHeaderRoom : 0;
      const end = this.#writeBatch(batch, room);
      const size = end - room;
      const done = this.#batchDone;
      this.#batchDone = undefined;
      if (size === 0) {
        releaseMessageBuffer(batch);
        return;
      }
      const start = direct ? writeFrameHeader(batch, room, size, direct.masked) : 0;
      // A small message is copied into one of its size, and the buffer goes back at once.
      const pooled = size >= pooledFrom;
      const message = pooled ? batch.subarray(start, end) : Buffer.allocUnsafe(end - start);
      if (!pooled) {
        batch.copy(message, 0, start, end);
        releaseMessageBuffer(batch);
      }
      this.#inFlight += size;
      if (muxMessageChannel.hasSubscribers)
        muxMessageChannel.publish({
          session: this,
          direction: 'out',
          frames: frameTypesOf(message.subarray(message.length - size)),
        } satisfies MuxMessageTrace);
      const sent = (error?: Error | null): void => {
        this.#inFlight -= size;
        // Written out (the socket has let go of it): the buffer may carry another message. A
        // failed send may have left it anywhere: it is not reused.
        if (!error && pooled) releaseMessageBuffer(batch);
        if (done) for (const cb of done) cb(error ?? undefined);
        if (this.#turnHead < this.#turns.length || this.#grantHead < this.#grants.length)
          this.#queuePump();
      };
      // `ws` writes every frame of its own (pings, the close) whole and at once, in the order
      // asked, so a frame written here between two of them cannot interleave with one; and it
      // is open, so its close has not gone out yet.
      if (direct) direct.socket.write(message, sent);
      else this.ws.send(message, binaryMessage, sent);
    }
  }

  /**
   * Put the next message together in `message` from `room` on: window frames first, then one
   * frame from each stream whose turn it is, up to a batch. Returns where it ends (`room`:
   * nothing may go now). A buffer has room for a batch, the frame that crosses its end and
   * `frameHeaderRoom` (message-pool.ts).
   */
  #writeBatch(message: Buffer, room: number): number {
    let at = room;
    const grants = this.#grants;
    const full = room + batchBytes;
    // Grants are bounded per message (a batch's room is the buffer's); the rest go next.
    while (this.#grantHead < grants.length && at < room + batchBytes / 2) {
      at = writeMuxHeader(message, at, MuxFrameType.window, grants[this.#grantHead] as number, 4);
      at = message.writeUInt32BE(grants[this.#grantHead + 1] as number, at);
      this.#grantHead += 2;
    }
    if (this.#grantHead === grants.length) {
      grants.length = 0;
      this.#grantHead = 0;
    }
    while (at < full && this.#turnHead < this.#turns.length) {
      const stream = this.#turns[this.#turnHead++] as MuxStream;
      at = stream.writeFrame(message, at);
      if (stream.sendable && !this.#closed) this.#turns.push(stream);
      else stream.scheduled = false;
    }
    if (this.#turnHead === this.#turns.length) {
      this.#turns.length = 0;
      this.#turnHead = 0;
    } else if (this.#turnHead > 1024 && this.#turnHead * 2 > this.#turns.length) {
      this.#turns.splice(0, this.#turnHead);
      this.#turnHead = 0;
    }
    return at;
  }

  // --- receiving ---

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.#closed) return;
    try {
      if (!isBinary || !Buffer.isBuffer(data))
        throw new MuxProtocolError('a text message on a carrier connection');
      const now = Date.now();
      if (now - this.#framesSince >= 1000) {
        this.#framesSince = now;
        this.#frames = 0;
      }
      if (!muxMessageChannel.hasSubscribers) {
        readMuxFrames(data, this.#onFrame);
        return;
      }
      const arrivedAt = process.hrtime.bigint();
      const frames: MuxFrameType[] = [];
      readMuxFrames(data, (type, id, payload) => {
        frames.push(type);
        return this.#onFrame(type, id, payload);
      });
      if (!this.#closed)
        muxMessageChannel.publish({
          session: this,
          direction: 'in',
          frames,
          arrivedAt,
        } satisfies MuxMessageTrace);
    } catch (error) {
      if (!(error instanceof MuxProtocolError)) throw error;
      this.#fail(error.message);
    }
  }

  /** One frame of a message from the peer; false once the connection has closed. */
  readonly #onFrame = (type: MuxFrameType, id: number, payload: Buffer): boolean => {
    this.#countFrame();
    this.#dispatch(type, id, payload);
    return !this.#closed;
  };

  /** Frames in the current second (from the first message of it): past the ceiling, a flood. */
  #countFrame(): void {
    if (++this.#frames > this.#maxFrames) throw new MuxProtocolError('frame flood');
  }

  #dispatch(type: MuxFrameType, id: number, payload: Buffer): void {
    const stream = this.#streams.get(id);
    if (type !== MuxFrameType.open) {
      if (!stream) throw new MuxProtocolError(`frame for unknown stream ${id}`);
      if (type === MuxFrameType.data) {
        // An interactive stream's data comes a few bytes at a time: a small frame after a small
        // one of the same stream (a bulk stream's small frames end its reads of full ones; the
        // resumable protocol's acknowledgements, small too, are text frames). One next to
        // another live stream's data shares the connection with it.
        const small = payload.length <= interactiveFrameBytes;
        const interactive = small && stream.smallBefore;
        stream.smallBefore = small;
        if (stream !== this.#lastReceiver) {
          if (this.#lastReceiver !== undefined && (interactive || this.#lastInteractive))
            this.#sharedAt = this.#clock();
          this.#lastReceiver = stream;
        }
        this.#lastInteractive = interactive;
      }
      stream.receive(type, payload);
      return;
    }
    if (stream) throw new MuxProtocolError(`stream ${id} is already open`);
    if (id % 2 !== this.#peerParity)
      throw new MuxProtocolError(`stream ${id} has this side's parity`);
    const request = parseOpenRequest(payload);
    const opened = new MuxStream(id, request.path, false, this);
    this.#streams.set(id, opened);
    if (this.#streams.size > this.#maxStreams)
      return opened.refuse(
        503,
        JSON.stringify({ Message: 'too many streams on one carrier connection' }),
      );
    if (this.#closeWhenIdle)
      return opened.refuse(403, JSON.stringify({ Message: 'this connection is closing' }));
    if (this.listenerCount('open-request') === 0)
      return opened.refuse(404, JSON.stringify({ Message: 'this side accepts no streams' }));
    this.emit('open-request', opened, request);
  }

  #fail(message: string): void {
    this.emit('protocol-error', message);
    this.close(1002, message);
  }

  #end(): void {
    if (this.#closed) return;
    this.#closed = true;
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#turns.length = 0;
    this.#turnHead = 0;
    this.#grants.length = 0;
    this.#grantHead = 0;
    this.#pings.clear();
    this.#busy.clear();
    for (const stream of streams) stream.lost();
  }

  #onClose(code: number, reason: string): void {
    this.#end();
    this.emit('close', code, reason);
  }
}
