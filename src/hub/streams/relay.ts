import { parseStreamFrame } from '../../protocol/stream-frames.js';
import type { RawData } from 'ws';
import type { StreamSocket } from '../../net/stream-socket.js';
import {
  closeCodes,
  defaultRawEofLingerMs,
  eofFrame,
  resumableStreamProtocol,
  streamProtocol,
} from '../../protocol/constants.js';
import { closeWebSocket } from '../../net/close.js';
import { defaultHighWaterMark, InFlight } from '../../net/flow.js';

export interface RelayResult {
  /** Bytes relayed from a to b and from b to a. */
  readonly bytesAtoB: number;
  readonly bytesBtoA: number;
  /** Close code of the side that closed first. */
  readonly closeCode: number;
  /** Which side closed first. */
  readonly closedBy: 'a' | 'b';
}

/** A message received before the relay started. */
export type EarlyMessage = readonly [data: Buffer, isBinary: boolean];

/** Which side of a relay: `a` and `b` as they were passed to `relay`. */
export type RelaySide = 'a' | 'b';

/**
 * What a relay reports, each about the `subject` it was given: one object for all of a caller's
 * relays (not closures per stream, which the hub held for each open stream's life).
 */
export interface RelayEvents<T> {
  /** An end's `resume`: how many bytes it holds from the other side (it is relayed too). */
  resumed?(subject: T, from: RelaySide, received: number): void;
  /** A frame only the hub may send (`ticket`, `plain`) came from an end and was dropped. */
  forged?(subject: T, from: RelaySide): void;
  /** The first close, from either side (the other side is being closed). */
  ended?(subject: T, result: RelayResult): void;
}

export interface RelayOptions<T> {
  readonly highWaterMark?: number;
  /** Messages each side sent before its partner arrived; relayed first, in order. */
  readonly backlog?: { readonly a: readonly EarlyMessage[]; readonly b: readonly EarlyMessage[] };
  readonly events?: RelayEvents<T>;
  /** What `events` are about (the caller's record of the stream). */
  readonly subject?: T;
  /** A live tally of binary bytes a->b and b->a, for callers that report while the relay runs. */
  readonly counts?: { a: number; b: number };
  /**
   * A half-close (v1 `eof`) toward a raw peer, which has no way to hear of it: the stream is
   * closed normally once the raw peer has been quiet this long (default 2 s).
   */
  readonly rawEofLingerMs?: number;
  /**
   * A hop between cluster nodes (cluster/forward.ts): one side is another node's relay, whose
   * `ticket` and `plain` frames must pass; every frame goes through as it came (the node at the
   * far side judges the ends' frames).
   */
  readonly passThrough?: boolean;
}

/** What a text frame from an end is, to the relay. */
function textFrameKind(text: string): 'eof' | 'hub-only' | 'resume' | 'other' {
  if (text === eofFrame) return 'eof';
  // Once per socket: where the other end must send from (replayed bytes are counted by it).
  if (text.startsWith('{"type":"resume"')) return 'resume';
  // Only the hub hands out tickets and says `plain`: the same frames from an end are forged
  // (an end that took them would resume with a stranger's ticket, or drop to raw bytes).
  // Acknowledgements, the frames an end sends most, are not parsed.
  if (!text.includes('"ticket"') && !text.includes('"plain"')) return 'other';
  try {
    const type = (JSON.parse(text) as { type?: unknown } | null)?.type;
    return type === 'ticket' || type === 'plain' ? 'hub-only' : 'other';
  } catch {
    return 'other';
  }
}

/** Close codes a peer may be sent (RFC 6455 7.4); anything else becomes peer-lost. */
function forwardable(code: number): number {
  if (code === 1005) return closeCodes.normal;
  if (code === 1000 || code === 1001 || (code >= 3000 && code <= 4999)) return code;
  return closeCodes.peerLost;
}

/** On each relayed socket: the direction that reads it (its listeners find it there). */
const kDirection = Symbol('dstream.relayDirection');

/** A socket carrying the direction that reads it. */
type Linked = StreamSocket & { [kDirection]?: RelayDirection<unknown> };

/**
 * One direction of a relay: what `src` sends goes to `dst`, with at most the high-water mark
 * sent and not yet written (`src` is paused above it).
 */
class RelayDirection<T> extends InFlight {
  readonly relay: Relay<T>;
  readonly src: StreamSocket;
  readonly dst: StreamSocket;
  readonly name: RelaySide;
  /** Only a side that negotiated dstream.stream.v1 or v2 takes text (control) frames. */
  readonly dstTakesText: boolean;

  constructor(
    relay: Relay<T>,
    src: StreamSocket,
    dst: StreamSocket,
    name: RelaySide,
    high: number,
  ) {
    super(high, high / 2, src);
    this.relay = relay;
    this.src = src;
    this.dst = dst;
    this.name = name;
    this.dstTakesText = dst.protocol === streamProtocol || dst.protocol === resumableStreamProtocol;
  }

  /** Start reading `src`: with listeners every relay shares (none made per stream). */
  listen(): void {
    (this.src as Linked)[kDirection] = this;
    this.src.on('message', RelayDirection.#onMessage);
    this.src.on('close', RelayDirection.#onClose);
  }

  // `this` is the socket that emitted (a socket is relayed once, so it names one direction).

  static #onMessage(this: Linked, data: RawData, isBinary: boolean): void {
    const direction = this[kDirection];
    direction?.relay.forward(direction, data as Buffer, isBinary);
  }

  static #onClose(this: Linked, code: number, reason: Buffer): void {
    const direction = this[kDirection];
    direction?.relay.closed(direction, code, reason);
  }
}

/** A relay's state: one object per stream, its two directions and their listeners. */
class Relay<T> {
  readonly #a: StreamSocket;
  readonly #b: StreamSocket;
  readonly #events: RelayEvents<T> | undefined;
  readonly #subject: T | undefined;
  readonly #counts: { a: number; b: number };
  readonly #lingerMs: number;
  readonly #passThrough: boolean;
  #ended = false;
  /** Running once a side half-closed toward a raw peer. */
  #linger: NodeJS.Timeout | undefined;
  /** The raw side whose quiet ends the stream. */
  #lingeringFor: StreamSocket | undefined;
  /** When that side last sent a frame: one timestamp per frame, not a new timer. */
  #lastFromRaw = 0;

  constructor(a: StreamSocket, b: StreamSocket, options: RelayOptions<T>) {
    this.#a = a;
    this.#b = b;
    this.#events = options.events;
    this.#subject = options.subject;
    this.#counts = options.counts ?? { a: 0, b: 0 };
    this.#lingerMs = options.rawEofLingerMs ?? defaultRawEofLingerMs;
    this.#passThrough = options.passThrough ?? false;
    const high = options.highWaterMark ?? defaultHighWaterMark;
    this.#start(new RelayDirection(this, a, b, 'a', high), options.backlog?.a ?? []);
    this.#start(new RelayDirection(this, b, a, 'b', high), options.backlog?.b ?? []);
  }

  #start(direction: RelayDirection<T>, backlog: readonly EarlyMessage[]): void {
    for (const [data, isBinary] of backlog) this.forward(direction, data, isBinary);
    direction.listen();
  }

  forward(direction: RelayDirection<T>, buf: Buffer, isBinary: boolean): void {
    const { src, dst, name } = direction;
    if (!isBinary) {
      const text = buf.toString('utf8');
      const kind = this.#passThrough ? 'other' : textFrameKind(text);
      if (kind === 'hub-only') return this.#events?.forged?.(this.#subject as T, name);
      if (kind === 'resume') {
        const frame = parseStreamFrame(text);
        if (frame?.type === 'resume')
          this.#events?.resumed?.(this.#subject as T, name, frame.received);
      }
      if (!direction.dstTakesText) {
        // dst cannot take a half-close; its quiet will end the stream instead.
        if (kind === 'eof' && this.#lingeringFor === undefined) {
          this.#lingeringFor = dst;
          this.#lastFromRaw = Date.now();
          this.#linger = setTimeout(() => this.#checkQuiet(), this.#lingerMs);
        }
        return;
      }
    } else if (src === this.#lingeringFor) this.#lastFromRaw = Date.now();
    if (dst.readyState !== dst.OPEN) return;
    if (isBinary) this.#counts[name] += buf.length;
    const n = buf.length;
    direction.add(n);
    dst.send(buf, { binary: isBinary }, () => direction.done(n));
  }

  #checkQuiet(): void {
    const quietFor = Date.now() - this.#lastFromRaw;
    if (quietFor < this.#lingerMs) {
      this.#linger = setTimeout(() => this.#checkQuiet(), this.#lingerMs - quietFor);
      return;
    }
    const reason = 'half-closed toward a peer without half-close';
    closeWebSocket(this.#a, closeCodes.normal, reason);
    closeWebSocket(this.#b, closeCodes.normal, reason);
  }

  closed(direction: RelayDirection<T>, code: number, reason: Buffer): void {
    clearTimeout(this.#linger);
    // dst may be paused because src could not take more: closeWebSocket resumes it.
    closeWebSocket(
      direction.dst,
      forwardable(code),
      code === 1006 ? 'peer connection lost' : reason.toString(),
    );
    if (this.#ended) return;
    this.#ended = true;
    this.#events?.ended?.(this.#subject as T, {
      bytesAtoB: this.#counts.a,
      bytesBtoA: this.#counts.b,
      closeCode: code,
      closedBy: direction.name,
    });
  }
}

/**
 * Relay two open WebSockets into each other (the hub's half of a stream): binary frames
 * always, text (control) frames only towards a side that negotiated dstream.stream.v1.
 * Bounded buffering each way; a close on either side is passed on to the other.
 */
export function relay<T>(a: StreamSocket, b: StreamSocket, options: RelayOptions<T> = {}): void {
  new Relay(a, b, options);
  // Either side may have been paused while it waited for its partner.
  a.resume();
  b.resume();
}
