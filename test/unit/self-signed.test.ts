import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  certificateFingerprint,
  createSelfSignedCertificate,
  isSelfSigned,
} from '../../src/tls/self-signed.js';

describe('self-signed certificate', () => {
  it('is a valid X.509 certificate naming the hosts, and serves TLS', async () => {
    const made = await createSelfSignedCertificate('dstream hub', [
      'localhost',
      '127.0.0.1',
      '::1',
    ]);
    const cert = new X509Certificate(made.cert);
    expect(cert.subject).toBe('CN=dstream hub');
    expect(cert.subjectAltName).toBe(
      'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(isSelfSigned(made.cert)).toBe(true);
    expect(certificateFingerprint(made.cert)).toMatch(/^[0-9A-F]{64}$/);
    expect(new Date(cert.validTo).getTime()).toBeGreaterThan(
      Date.now() + 9 * 365 * 24 * 3600 * 1000,
    );

    const server = createServer({ cert: made.cert, key: made.key }, (s) => s.end('hi'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    // Trusting exactly this certificate as a CA makes OpenSSL verify the chain and the name.
    const client = connect({
      port: (server.address() as AddressInfo).port,
      host: '127.0.0.1',
      ca: made.cert,
      servername: 'localhost',
    });
    await once(client, 'secureConnect');
    expect(client.authorized).toBe(true);
    client.destroy();
    server.close();
  });
});
