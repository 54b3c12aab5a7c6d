import { isIP } from 'node:net';

/**
 * The PROXY protocol header a TCP balancer (haproxy `send-proxy` / `send-proxy-v2`, nginx,
 * AWS NLB, ...) puts in front of a connection to say who the client is. Spec:
 * https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt (v1 text, v2 binary).
 */
export type ProxyHeader =
  /** Not enough bytes yet to decide. */
  | { readonly kind: 'incomplete' }
  /** The bytes do not start with a PROXY header. */
  | { readonly kind: 'none' }
  /** They start like one but are malformed. */
  | { readonly kind: 'invalid'; readonly reason: string }
  /**
   * A complete header of `length` bytes. `source` is absent for v1 UNKNOWN, v2 LOCAL (the
   * balancer's own health check) and address families other than TCP over IPv4/IPv6: the
   * connection's own address then stands.
   */
  | {
      readonly kind: 'header';
      readonly length: number;
      readonly source?: { readonly address: string; readonly port: number };
    };

const v1Prefix = Buffer.from('PROXY ', 'latin1');
const v2Signature = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
/** v1: "PROXY TCP6 <39> <39> 65535 65535\r\n" is the longest, 107 bytes. */
const v1MaxLength = 107;
/** A v2 header with TLVs; more than a balancer sends, far less than a flood. */
const v2MaxLength = 16 + 1024;

/** True when `buf` is a prefix of `sig` or starts with it. */
function startsLike(buf: Buffer, sig: Buffer): 'yes' | 'maybe' | 'no' {
  const n = Math.min(buf.length, sig.length);
  if (!buf.subarray(0, n).equals(sig.subarray(0, n))) return 'no';
  return buf.length >= sig.length ? 'yes' : 'maybe';
}

/** Parse what a connection sent first; see ProxyHeader. */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  const v1 = startsLike(buf, v1Prefix);
  const v2 = startsLike(buf, v2Signature);
  if (v1 === 'yes') return parseV1(buf);
  if (v2 === 'yes') return parseV2(buf);
  if (v1 === 'maybe' || v2 === 'maybe') return { kind: 'incomplete' };
  return { kind: 'none' };
}

function parseV1(buf: Buffer): ProxyHeader {
  const end = buf.subarray(0, v1MaxLength).indexOf('\r\n', 0, 'latin1');
  if (end < 0)
    return buf.length >= v1MaxLength
      ? { kind: 'invalid', reason: 'PROXY v1 line longer than 107 bytes' }
      : { kind: 'incomplete' };
  const line = buf.subarray(0, end).toString('latin1');
  const length = end + 2;
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { kind: 'header', length };
  const [, family, src, dst, sport, dport] = parts;
  const want = family === 'TCP4' ? 4 : family === 'TCP6' ? 6 : 0;
  if (
    parts.length !== 6 ||
    want === 0 ||
    isIP(src ?? '') !== want ||
    isIP(dst ?? '') !== want ||
    !isPort(sport) ||
    !isPort(dport)
  )
    return { kind: 'invalid', reason: `malformed PROXY v1 line '${line.slice(0, 60)}'` };
  return { kind: 'header', length, source: { address: src as string, port: Number(sport) } };
}

function isPort(text: string | undefined): boolean {
  return text !== undefined && /^(0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65535;
}

function parseV2(buf: Buffer): ProxyHeader {
  if (buf.length < 16) return { kind: 'incomplete' };
  const verCmd = buf[12] ?? 0;
  const family = buf[13] ?? 0;
  const bodyLength = buf.readUInt16BE(14);
  const length = 16 + bodyLength;
  if (verCmd >> 4 !== 2) return { kind: 'invalid', reason: 'PROXY v2 header of another version' };
  const command = verCmd & 0x0f;
  if (command > 1) return { kind: 'invalid', reason: 'PROXY v2 header with an unknown command' };
  if (length > v2MaxLength) return { kind: 'invalid', reason: 'PROXY v2 header too long' };
  if (buf.length < length) return { kind: 'incomplete' };
  // LOCAL: the balancer speaking for itself (health checks); keep the connection's address.
  if (command === 0) return { kind: 'header', length };
  const body = buf.subarray(16, length);
  if (family === 0x11) {
    if (body.length < 12) return { kind: 'invalid', reason: 'PROXY v2 TCP4 addresses cut short' };
    const address = [...body.subarray(0, 4)].join('.');
    return { kind: 'header', length, source: { address, port: body.readUInt16BE(8) } };
  }
  if (family === 0x21) {
    if (body.length < 36) return { kind: 'invalid', reason: 'PROXY v2 TCP6 addresses cut short' };
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
    return {
      kind: 'header',
      length,
      source: { address: compressIpv6(groups), port: body.readUInt16BE(32) },
    };
  }
  // UNSPEC, UDP or unix sockets: nothing we can use as a client address.
  return { kind: 'header', length };
}

/** The canonical text form (RFC 5952): the longest run of zero groups becomes "::". */
function compressIpv6(groups: readonly string[]): string {
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLength).join(':')}`;
}
