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

export interface RelayOptions {
  readonly highWaterMark?: number;
  /** Messages each side sent before its partner arrived; relayed first, in order. */
  readonly backlog?: { readonly a: readonly EarlyMessage[]; readonly b: readonly EarlyMessage[] };
  readonly onEnd?: (result: RelayResult) => void;
  /** A live tally of binary bytes a->b and b->a, for callers that report while the relay runs. */
  readonly counts?: { a: number; b: number };
  /**
   * A half-close (v1 `eof`) toward a raw peer, which has no way to hear of it: the stream is
   * closed normally once the raw peer has been quiet this long (default 2 s).
   */
  readonly rawEofLingerMs?: number;
  /** A frame only the hub may send (`ticket`, `plain`) came from an end and was dropped. */
  readonly onForgedFrame?: (from: 'a' | 'b') => void;
  /** An end's `resume`: how many bytes it holds from the other side (it is relayed too). */
  readonly onResume?: (from: 'a' | 'b', received: number) => void;
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

/**
 * Relay two open WebSockets into each other (the hub's half of a stream): binary frames
 * always, text (control) frames only towards a side that negotiated dstream.stream.v1.
 * Bounded buffering each way; a close on either side is passed on to the other.
 */
export function relay(a: StreamSocket, b: StreamSocket, options: RelayOptions = {}): void {
  const high = options.highWaterMark ?? defaultHighWaterMark;
  const counts = options.counts ?? { a: 0, b: 0 };
  const lingerMs = options.rawEofLingerMs ?? defaultRawEofLingerMs;
  let ended = false;
  /** Running once a side half-closed toward a raw peer. */
  let linger: NodeJS.Timeout | undefined;
  /** The raw side whose quiet ends the stream. */
  let lingeringFor: StreamSocket | undefined;
  /** When that side last sent a frame: one timestamp per frame, not a new timer. */
  let lastFromRaw = 0;
  const checkQuiet = (): void => {
    const quietFor = Date.now() - lastFromRaw;
    if (quietFor < lingerMs) {
      linger = setTimeout(checkQuiet, lingerMs - quietFor);
      return;
    }
    closeWebSocket(a, closeCodes.normal, 'half-closed toward a peer without half-close');
    closeWebSocket(b, closeCodes.normal, 'half-closed toward a peer without half-close');
  };

  const pipe = (
    src: StreamSocket,
    dst: StreamSocket,
    name: 'a' | 'b',
    backlog: readonly EarlyMessage[],
  ): void => {
    const dstTakesText =
      dst.protocol === streamProtocol || dst.protocol === resumableStreamProtocol;
    const flow = new InFlight(high, high / 2, src);
    const forward = (data: RawData, isBinary: boolean): void => {
      const buf = data as Buffer;
      if (!isBinary) {
        const text = buf.toString('utf8');
        const kind = options.passThrough ? 'other' : textFrameKind(text);
        if (kind === 'hub-only') return options.onForgedFrame?.(name);
        if (kind === 'resume') {
          const frame = parseStreamFrame(text);
          if (frame?.type === 'resume') options.onResume?.(name, frame.received);
        }
        if (!dstTakesText) {
          // dst cannot take a half-close; its quiet will end the stream instead.
          if (kind === 'eof' && lingeringFor === undefined) {
            lingeringFor = dst;
            lastFromRaw = Date.now();
            linger = setTimeout(checkQuiet, lingerMs);
          }
          return;
        }
      } else if (src === lingeringFor) lastFromRaw = Date.now();
      if (dst.readyState !== dst.OPEN) return;
      if (isBinary) counts[name] += buf.length;
      const n = buf.length;
      flow.add(n);
      dst.send(buf, { binary: isBinary }, () => flow.done(n));
    };
    for (const [data, isBinary] of backlog) forward(data, isBinary);
    src.on('message', forward);
    src.on('close', (code: number, reason: Buffer) => {
      clearTimeout(linger);
      // dst may be paused because src could not take more: closeWebSocket resumes it.
      closeWebSocket(
        dst,
        forwardable(code),
        code === 1006 ? 'peer connection lost' : reason.toString(),
      );
      if (!ended) {
        ended = true;
        options.onEnd?.({
          bytesAtoB: counts.a,
          bytesBtoA: counts.b,
          closeCode: code,
          closedBy: name,
        });
      }
    });
  };
  pipe(a, b, 'a', options.backlog?.a ?? []);
  pipe(b, a, 'b', options.backlog?.b ?? []);
  // Either side may have been paused while it waited for its partner.
  a.resume();
  b.resume();
}
