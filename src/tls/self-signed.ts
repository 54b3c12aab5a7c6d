import { createPrivateKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

export interface SelfSignedCertificate {
  /** PEM certificate. */
  readonly cert: string;
  /** PEM PKCS#8 private key. */
  readonly key: string;
}

const ecdsaP256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/**
 * Create an ECDSA P-256 certificate signed by its own key, valid for ten years, naming
 * `hostnames` (DNS names or IP addresses) in its subjectAltName. Clients trust it by pinning
 * its SHA-256 fingerprint, so the names matter only to tools that check them.
 */
export async function createSelfSignedCertificate(
  commonName: string,
  hostnames: readonly string[],
  now: Date = new Date(),
): Promise<SelfSignedCertificate> {
  // Loaded only when a certificate is made (a hub's first start), not on every CLI start.
  // @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata
  // API: that polyfill is loaded first.
  await import('reflect-metadata');
  const {
    BasicConstraintsExtension,
    ExtendedKeyUsage,
    ExtendedKeyUsageExtension,
    KeyUsageFlags,
    KeyUsagesExtension,
    SubjectAlternativeNameExtension,
    X509CertificateGenerator,
  } = await import('@peculiar/x509');
  const keys = await webcrypto.subtle.generateKey(ecdsaP256, true, ['sign', 'verify']);
  const serial = randomBytes(16);
  // A positive serial number (RFC 5280 4.1.2.2).
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const certificate = await X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString('hex'),
      // The name as an RDN list, so that no character of it is parsed as DN syntax.
      name: [{ CN: [commonName] }],
      notBefore: new Date(now.getTime() - 24 * 3600 * 1000),
      notAfter: new Date(now.getTime() + 10 * 365 * 24 * 3600 * 1000),
      signingAlgorithm: ecdsaP256,
      keys,
      extensions: [
        new BasicConstraintsExtension(false, undefined, true),
        new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
        new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth]),
        new SubjectAlternativeNameExtension(
          [...new Set(hostnames)].map((h) => ({ type: isIP(h) ? 'ip' : 'dns', value: h })),
        ),
      ],
    },
    webcrypto,
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return {
    cert: certificate.toString('pem') + '\n',
    key: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })
      .export({ type: 'pkcs8', format: 'pem' })
      .toString(),
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
