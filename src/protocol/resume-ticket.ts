import { createHmac, timingSafeEqual, type Hmac } from 'node:crypto';
import { isSafeOffset } from './offsets.js';

/**
 * Resume tickets (`--resume`; signed and checked by hub/stream-endpoint.ts). A ticket lets one
 * end of a stream reconnect its half after the link or the hub went away. The hub signs it
 * with a key kept in its data dir (shared by a cluster's nodes), so a hub that lost all
 * memory of the stream, or another node, can still check it: who may resume, which stream,
 * which side, until when. `generation` counts resumptions: the hub pairs two halves only when
 * both present the same generation and hands both a ticket for the next, so a ticket that
 * was used (or stolen earlier) cannot pair with its peer's current one.
 */
export type StreamSide = 'service' | 'device';

export interface ResumeClaims {
  readonly streamId: string;
  readonly deviceId: string;
  /** The stream's name, for logs and the audit log of a hub that no longer knows it. */
  readonly streamName: string;
  readonly side: StreamSide;
  readonly generation: number;
  /** Unix seconds; past it the stream is not resumed (the resume window). */
  readonly expiresAt: number;
  /**
   * In a cluster, the node the stream ran on when the ticket was issued: its halves meet
   * there again while it lives (hub/cluster/meeting.ts). Absent on a single hub.
   */
  readonly node?: string | undefined;
}

export type TicketProblem = 'malformed' | 'bad-signature' | 'expired' | 'wrong-side';

export type TicketCheck =
  | { readonly ok: true; readonly claims: ResumeClaims }
  | { readonly ok: false; readonly problem: TicketProblem; readonly message: string };

const prefix = 'v1.';
/** Tickets travel in a header: bound what is parsed. */
const maxTicketLength = 1024;

/** The ticket's HMAC over its payload, to digest as bytes (checking) or as text (signing). */
function mac(key: Buffer, payload: string): Hmac {
  return createHmac('sha256', key).update(prefix + payload);
}

/** Sign claims into a ticket: `v1.<base64url JSON>.<base64url HMAC-SHA256>`. */
export function signResumeTicket(key: Buffer, claims: ResumeClaims): string {
  const payload = Buffer.from(
    JSON.stringify({
      s: claims.streamId,
      d: claims.deviceId,
      n: claims.streamName,
      w: claims.side,
      g: claims.generation,
      e: claims.expiresAt,
      ...(claims.node === undefined ? {} : { o: claims.node }),
    }),
  ).toString('base64url');
  // Digested straight to text: no Buffer made for the signature (two tickets per stream).
  return `${prefix}${payload}.${mac(key, payload).digest('base64url')}`;
}

const bad = (problem: TicketProblem, message: string): TicketCheck => ({
  ok: false,
  problem,
  message,
});

/**
 * Check a ticket against the keys (the current one first; older ones during a rotation), the
 * side that presents it (undefined: the hub, which learns the side from the ticket) and the
 * time. Every failure is one of four problems with a sentence.
 */
export function verifyResumeTicket(
  keys: readonly Buffer[],
  ticket: string,
  side: StreamSide | undefined,
  nowSeconds: number,
): TicketCheck {
  if (ticket.length > maxTicketLength || !ticket.startsWith(prefix))
    return bad('malformed', 'not a resume ticket');
  const [payload = '', signature = '', extra] = ticket.slice(prefix.length).split('.');
  if (
    extra !== undefined ||
    !/^[A-Za-z0-9_-]+$/.test(payload) ||
    !/^[A-Za-z0-9_-]{43}$/.test(signature)
  )
    return bad('malformed', 'not a resume ticket');
  const given = Buffer.from(signature, 'base64url');
  if (!keys.some((key) => timingSafeEqual(mac(key, payload).digest(), given)))
    return bad('bad-signature', 'the resume ticket is not signed by this hub');
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return bad('malformed', 'not a resume ticket');
  }
  const { s, d, n, w, g, e, o: node } = o;
  if (
    typeof s !== 'string' ||
    typeof d !== 'string' ||
    typeof n !== 'string' ||
    (w !== 'service' && w !== 'device') ||
    !isSafeOffset(g) ||
    !isSafeOffset(e) ||
    (node !== undefined && typeof node !== 'string')
  )
    return bad('malformed', 'not a resume ticket');
  if (side !== undefined && w !== side)
    return bad('wrong-side', `the resume ticket is for the ${w} side`);
  if (e < nowSeconds) return bad('expired', 'the resume window has passed');
  return {
    ok: true,
    claims: {
      streamId: s,
      deviceId: d,
      streamName: n,
      side: w,
      generation: g,
      expiresAt: e,
      ...(node === undefined ? {} : { node }),
    },
  };
}
