import { generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import {
  bitString,
  boolean,
  explicit,
  implicit,
  integer,
  octetString,
  oid,
  sequence,
  set,
  time,
  utf8String,
} from './der.js';

export interface SelfSignedCertificate {
  /** PEM certificate. */
  readonly cert: string;
  /** PEM PKCS#8 private key. */
  readonly key: string;
}

function ipBytes(address: string): Buffer {
  if (isIP(address) === 4) return Buffer.from(address.split('.').map(Number));
  // Expand an IPv6 address ("::1") to its 16 bytes.
  const [head = '', tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = address.includes('::')
    ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
    : h;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/**
 * Create an ECDSA P-256 certificate signed by its own key, valid for ten years, naming
 * `hostnames` (DNS names or IP addresses) in its subjectAltName. Clients trust it by pinning
 * its SHA-256 fingerprint, so the names matter only to tools that check them.
 */
export function createSelfSignedCertificate(
  commonName: string,
  hostnames: readonly string[],
  now: Date = new Date(),
): SelfSignedCertificate {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecdsaWithSha256 = sequence(oid('1.2.840.10045.4.3.2'));
  const name = sequence(set(sequence(oid('2.5.4.3'), utf8String(commonName))));
  const notBefore = new Date(now.getTime() - 24 * 3600 * 1000);
  const notAfter = new Date(now.getTime() + 10 * 365 * 24 * 3600 * 1000);
  const altNames = [...new Set(hostnames)].map((h) =>
    isIP(h) ? implicit(7, ipBytes(h)) : implicit(2, Buffer.from(h, 'ascii')),
  );
  const extensions = sequence(
    sequence(oid('2.5.29.19'), boolean(true), octetString(sequence())), // basicConstraints: not a CA
    sequence(oid('2.5.29.15'), boolean(true), octetString(bitString(Buffer.from([0x80]), 7))), // digitalSignature
    sequence(oid('2.5.29.37'), octetString(sequence(oid('1.3.6.1.5.5.7.3.1')))), // serverAuth
    sequence(oid('2.5.29.17'), octetString(sequence(...altNames))),
  );
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const tbs = sequence(
    explicit(0, integer(Buffer.from([2]))),
    integer(serial),
    ecdsaWithSha256,
    name,
    sequence(time(notBefore), time(notAfter)),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, extensions),
  );
  const signature = sign('sha256', tbs, privateKey);
  const der = sequence(tbs, ecdsaWithSha256, bitString(signature));
  const b64 =
    der
      .toString('base64')
      .match(/.{1,64}/g)
      ?.join('\n') ?? '';
  return {
    cert: `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`,
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** The certificate's SHA-256 fingerprint as 64 upper-case hex digits. */
export function certificateFingerprint(pem: string | Buffer): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, '');
}

/** True when a certificate is signed by its own key (so clients must pin it). */
export function isSelfSigned(pem: string | Buffer): boolean {
  const cert = new X509Certificate(pem);
  // checkIssued() would demand keyCertSign usage, which a leaf certificate does not have.
  return cert.subject === cert.issuer && cert.verify(cert.publicKey);
}
