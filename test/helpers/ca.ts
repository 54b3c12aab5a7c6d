import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A private CA and one server certificate it issued, as PEM files in a directory. */
export interface TestCa {
  /** The CA's certificate: what clients are given with --ca or NODE_EXTRA_CA_CERTS. */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

function openssl(args: readonly string[], cwd: string): void {
  // No fallback: a machine without openssl fails these tests (.ci/run installs it).
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Make a CA with the real openssl and issue a server certificate for `names` (DNS names or
 * IP addresses), as an operator with a private CA would.
 */
export function makeTestCa(dir: string, names: readonly string[]): TestCa {
  const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  writeFileSync(
    join(dir, 'leaf.ext'),
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
  );
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '30',
      '-subj',
      '/CN=dstream test CA',
    ],
    dir,
  );
  openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'hub.key',
      '-out',
      'hub.csr',
      '-subj',
      '/CN=dstream hub',
    ],
    dir,
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'hub.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'hub.pem',
      '-days',
      '30',
      '-extfile',
      'leaf.ext',
    ],
    dir,
  );
  return {
    caFile: join(dir, 'ca.pem'),
    certFile: join(dir, 'hub.pem'),
    keyFile: join(dir, 'hub.key'),
  };
}
