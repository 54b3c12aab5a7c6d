import { describe, expect, it } from 'vitest';
import { parseTrustedSources } from '../../src/hub/admission/proxy-protocol-front.js';
import {
  connectionCeiling,
  maxConnectionsFrom,
  openFileLimit,
} from '../../src/commands/hub-fd-limit.js';
import { parseProxyHeader } from '../../src/protocol/proxy-protocol.js';

const sig = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function v2(command: number, family: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = 0x20 | command;
  head[1] = family;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([sig, head, body]);
}

describe('PROXY protocol header', () => {
  it('v1: TCP4, TCP6 and UNKNOWN; the rest of the stream follows the header', () => {
    const line = 'PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n';
    const buf = Buffer.from(line + '\x16\x03\x01');
    expect(parseProxyHeader(buf)).toEqual({
      kind: 'header',
      length: line.length,
      source: { address: '192.0.2.7', port: 56324 },
    });
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 1 443\r\n'))).toEqual({
      kind: 'header',
      length: 42,
      source: { address: '2001:db8::7', port: 1 },
    });
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).toEqual({
      kind: 'header',
      length: 15,
    });
  });

  it('v2: PROXY over TCP4 and TCP6 (TLVs skipped), LOCAL keeps the connection address', () => {
    const tcp4 = Buffer.from([192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb]);
    const tlv = Buffer.from([0x04, 0x00, 0x01, 0x00]);
    const h4 = v2(1, 0x11, Buffer.concat([tcp4, tlv]));
    expect(parseProxyHeader(Buffer.concat([h4, Buffer.from('GET /')]))).toEqual({
      kind: 'header',
      length: h4.length,
      source: { address: '192.0.2.7', port: 0xdc04 },
    });
    const src6 = Buffer.from('20010db8000000000000000000000007', 'hex');
    const h6 = v2(1, 0x21, Buffer.concat([src6, Buffer.alloc(16), Buffer.from([0, 80, 1, 187])]));
    expect(parseProxyHeader(h6)).toEqual({
      kind: 'header',
      length: 52,
      source: { address: '2001:db8::7', port: 80 },
    });
    expect(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0)))).toEqual({ kind: 'header', length: 16 });
  });

  it('waits for more bytes only while they could still be a header', () => {
    expect(parseProxyHeader(Buffer.from('PRO'))).toEqual({ kind: 'incomplete' });
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4'))).toEqual({ kind: 'incomplete' });
    expect(parseProxyHeader(sig.subarray(0, 5))).toEqual({ kind: 'incomplete' });
    expect(parseProxyHeader(v2(1, 0x11, Buffer.alloc(12)).subarray(0, 20))).toEqual({
      kind: 'incomplete',
    });
    expect(parseProxyHeader(Buffer.from('POST /twins'))).toEqual({ kind: 'none' });
    expect(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01]))).toEqual({ kind: 'none' });
  });

  it.each([
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', 'malformed PROXY v1 line'],
    ['PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n', 'malformed PROXY v1 line'],
    ['PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n', 'malformed PROXY v1 line'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n', 'malformed PROXY v1 line'],
    ['PROXY ' + 'x'.repeat(200), 'longer than 107 bytes'],
  ])('refuses %j', (text, reason) => {
    const parsed = parseProxyHeader(Buffer.from(text));
    expect(parsed.kind).toBe('invalid');
    expect(parsed.kind === 'invalid' && parsed.reason).toContain(reason);
  });

  it('refuses a v2 header of another version, command, or cut short', () => {
    const bad = v2(1, 0x11, Buffer.alloc(12));
    bad[12] = 0x31;
    expect(parseProxyHeader(bad)).toEqual({
      kind: 'invalid',
      reason: 'PROXY v2 header of another version',
    });
    expect(parseProxyHeader(v2(2, 0x11, Buffer.alloc(12)))).toMatchObject({ kind: 'invalid' });
    expect(parseProxyHeader(v2(1, 0x11, Buffer.alloc(4)))).toMatchObject({
      kind: 'invalid',
      reason: 'PROXY v2 TCP4 addresses cut short',
    });
    expect(parseProxyHeader(v2(1, 0x11, Buffer.alloc(2000)))).toMatchObject({
      kind: 'invalid',
      reason: 'PROXY v2 header too long',
    });
  });
});

describe('--proxy-protocol-from', () => {
  it('takes addresses and CIDRs of both families; IPv4-mapped addresses match', () => {
    const list = parseTrustedSources('10.0.0.0/8, 127.0.0.1,::1');
    expect(list.check('10.200.1.1', 'ipv4')).toBe(true);
    expect(list.check('127.0.0.1', 'ipv4')).toBe(true);
    expect(list.check('127.0.0.2', 'ipv4')).toBe(false);
    expect(list.check('::ffff:10.1.1.1', 'ipv6')).toBe(true);
    expect(list.check('::1', 'ipv6')).toBe(true);
  });

  it.each(['10.0.0.0/33', 'hub.example.com', '10.0.0.0/', '::1/129', ''])('refuses %j', (text) => {
    expect(() => parseTrustedSources(text)).toThrow(
      /^--proxy-protocol-from .*: expected an address or CIDR/,
    );
  });
});

describe('descriptor limit and --max-connections', () => {
  const limits =
    'Limit Soft Limit Hard Limit Units\nMax open files            1024                 4096                 files\n';
  it('reads RLIMIT_NOFILE from /proc/self/limits', () => {
    expect(openFileLimit(() => limits)).toBe(1024);
    expect(openFileLimit(() => 'Max open files  unlimited  unlimited  files\n')).toBeUndefined();
    expect(
      openFileLimit(() => {
        throw new Error('no /proc');
      }),
    ).toBeUndefined();
    expect(openFileLimit()).toBeGreaterThan(0);
  });

  it('defaults below the limit and refuses a ceiling above it', () => {
    expect(connectionCeiling(1024)).toBe(1024 - 64 - 52);
    expect(maxConnectionsFrom(undefined, 1024)).toBe(908);
    expect(maxConnectionsFrom(500, 1024)).toBe(500);
    expect(maxConnectionsFrom(undefined, undefined)).toBe(10_000);
    expect(() => maxConnectionsFrom(5000, 1024)).toThrow(
      '--max-connections 5000 is more than this process can hold: its descriptor limit (RLIMIT_NOFILE) is 1024, and 116 are kept for files and outgoing sockets',
    );
  });
});
