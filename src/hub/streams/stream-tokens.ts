import { timingSafeEqual } from 'node:crypto';
import type { StreamSide } from '../../protocol/resume-ticket.js';
import { randomText } from './random-text.js';

/** A new stream's two single-use tokens: one for each side's stream socket. */
export interface StreamTokens {
  readonly device: string;
  readonly service: string;
  /** The same, as the bytes a presented token is compared with. */
  readonly expected: Readonly<Record<StreamSide, Buffer>>;
}

/** Mint a stream's tokens: 256 random bits each, base64url. */
export function mintStreamTokens(): StreamTokens {
  const device = randomText(32);
  const service = randomText(32);
  return {
    device,
    service,
    expected: { device: Buffer.from(device), service: Buffer.from(service) },
  };
}

/** Which side a presented bearer token belongs to, checked in constant time; undefined if neither. */
export function sideOfToken(
  expected: Readonly<Record<StreamSide, Buffer>>,
  token: string,
): StreamSide | undefined {
  const given = Buffer.from(token);
  for (const side of ['device', 'service'] as const) {
    const mine = expected[side];
    if (given.length === mine.length && timingSafeEqual(given, mine)) return side;
  }
  return undefined;
}
