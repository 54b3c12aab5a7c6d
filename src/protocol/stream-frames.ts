import { isSafeOffset } from './offsets.js';

/**
 * Stream frames of resumable streams (`dstream.stream.v2`, docs/protocol.md). Payload bytes travel as binary WebSocket messages, as in v1;
 * these travel as text messages, JSON, one object each:
 *
 * - `{"type":"ack","received":N}`: I have received N payload bytes from you (cumulative).
 * - `{"type":"eof","sent":N}`: no more bytes from me; I sent N in all (v1's half-close, with
 *   the count, so that a resumption knows whether the end was already delivered).
 * - `{"type":"resume","received":N}`: the first frame after reconnecting: send again from N.
 * - `{"type":"ticket","ticket":"v1..."}`: from the hub, the credential for the next resumption.
 * - `{"type":"plain","peer":"v1"|"raw"}`: from the hub, first: the other side is not
 *   resumable (an older dstream, or an Azure peer); carry on as v1 (or raw bytes).
 */
export type StreamFrame =
  | { readonly type: 'ack'; readonly received: number }
  | { readonly type: 'eof'; readonly sent: number }
  | { readonly type: 'resume'; readonly received: number }
  | { readonly type: 'ticket'; readonly ticket: string }
  | { readonly type: 'plain'; readonly peer: 'v1' | 'raw' };

/** Control frames are small; anything longer is a protocol violation. */
export const maxStreamFrameBytes = 2048;

export function formatStreamFrame(frame: StreamFrame): string {
  return JSON.stringify(frame);
}

/** Parse a text message; undefined for anything that is not exactly one of the frames. */
export function parseStreamFrame(text: string): StreamFrame | undefined {
  if (text.length > maxStreamFrameBytes) return undefined;
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return undefined;
  const f = o as Record<string, unknown>;
  // Exactly two keys: `type`, and the field each case checks (a value that passes its check
  // is there). Counted, not sorted and joined: several of these arrive per stream at each end.
  if (Object.keys(f).length !== 2) return undefined;
  switch (f.type) {
    case 'ack':
      return isSafeOffset(f.received) ? { type: 'ack', received: f.received } : undefined;
    case 'resume':
      return isSafeOffset(f.received) ? { type: 'resume', received: f.received } : undefined;
    case 'eof':
      return isSafeOffset(f.sent) ? { type: 'eof', sent: f.sent } : undefined;
    case 'ticket':
      return typeof f.ticket === 'string' && f.ticket.length <= 1024
        ? { type: 'ticket', ticket: f.ticket }
        : undefined;
    case 'plain':
      return f.peer === 'v1' || f.peer === 'raw' ? { type: 'plain', peer: f.peer } : undefined;
    default:
      return undefined;
  }
}
