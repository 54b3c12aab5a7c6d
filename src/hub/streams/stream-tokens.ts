import { timingSafeEqual } from 'node:crypto';
import type { StreamSide } from '../../protocol/resume-ticket.js';
import { randomText } from './random-text.js';

/** A new stream's two single-use tokens: one for each side's stream socket. */
export interface StreamTokens {
  readonly device: string;
  readonly service: string;
}

/** Mint a stream's tokens: 256 random bits each, base64url. */
export function mintStreamTokens(): StreamTokens {
  const device = randomText(32);
  const service = randomText(32);
  return { device, service };
}

/**
 * Which side a presented bearer token belongs to, checked in constant time; undefined if neither.
 * The expected tokens are kept as strings and made bytes only here: a small Buffer kept for the
 * life of a stream is a slice of an 8 KiB slab of Node's pool, and keeps the whole slab alive
 * (about 1 KiB of the hub's memory per open stream went that way).
 */
export function sideOfToken(
  expected: Readonly<Record<StreamSide, string>>,
  token: string,
): StreamSide | undefined {
  const given = Buffer.from(token);
  for (const side of ['device', 'service'] as const) {
    const mine = Buffer.from(expected[side]);
    if (given.length === mine.length && timingSafeEqual(given, mine)) return side;
  }
  return undefined;
}
