import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  readServingRecord,
  servingContradiction,
  servingRecordFile,
  tlsIdentityChanged,
  writeServingRecord,
  type ServingRecord,
} from '../../src/commands/hub-serving-record.js';

const fp = (c: string): string => c.repeat(64);
const selfSigned: ServingRecord = {
  publicUrl: 'https://127.0.0.1:28443',
  publicUrlFrom: 'listen',
  listen: { host: '127.0.0.1', port: 28443 },
  tls: { mode: 'self-signed', fingerprint: fp('A') },
};
const files: ServingRecord = {
  ...selfSigned,
  tls: {
    mode: 'files',
    certFile: '/etc/c.pem',
    keyFile: '/etc/k.pem',
    fingerprint: fp('B'),
    pinned: false,
  },
};

describe('serving record', () => {
  it('round-trips through the data dir; a corrupt one is a clear error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dstream-serving-'));
    expect(readServingRecord(dir)).toBeUndefined();
    writeServingRecord(dir, files);
    expect(readServingRecord(dir)).toEqual(files);
    writeFileSync(servingRecordFile(dir), '{"publicUrl": 3}');
    expect(() => readServingRecord(dir)).toThrow(
      `${join(dir, 'serving.json')} is not a serving record dstream wrote`,
    );
    rmSync(dir, { recursive: true, force: true });
  });

  it('names each contradiction, and none for flags that agree', () => {
    expect(servingContradiction(selfSigned, { tls: undefined })).toBeUndefined();
    expect(servingContradiction(selfSigned, { tls: 'none' })).toBe(
      '--insecure-no-tls contradicts the data dir: this hub serves its self-signed certificate AA:AA:AA:AA:AA:AA:AA:AA...',
    );
    expect(servingContradiction(selfSigned, { tls: 'files' })).toMatch(/^--tls-cert contradicts/);
    expect(servingContradiction(files, { tls: 'files', fingerprint: fp('B') })).toBeUndefined();
    expect(servingContradiction(files, { tls: 'files', fingerprint: fp('C') })).toBe(
      '--tls-cert is not the certificate the hub serves (/etc/c.pem)',
    );
    expect(servingContradiction(files, { tls: 'none' })).toBe(
      '--insecure-no-tls contradicts the data dir: this hub serves --tls-cert /etc/c.pem',
    );
    const listen = (host: string, port: number) => ({ tls: undefined, listen: { host, port } });
    expect(servingContradiction(selfSigned, listen('127.0.0.1', 28443))).toBeUndefined();
    expect(servingContradiction(selfSigned, listen('127.0.0.1', 0))).toBeUndefined();
    expect(servingContradiction(selfSigned, listen('0.0.0.0', 8443))).toBe(
      '--listen 0.0.0.0:8443 contradicts the data dir: the hub listens on 127.0.0.1:28443',
    );
    // Strings name --public-url, so where the hub listens does not matter to them.
    const pub: ServingRecord = { ...selfSigned, publicUrlFrom: 'public-url' };
    expect(servingContradiction(pub, listen('0.0.0.0', 8443))).toBeUndefined();
  });

  it('a TLS change matters when a pinned fingerprint or the mode changes', () => {
    expect(tlsIdentityChanged(selfSigned.tls, selfSigned.tls)).toBe(false);
    expect(tlsIdentityChanged(selfSigned.tls, { mode: 'self-signed', fingerprint: fp('C') })).toBe(
      true,
    );
    expect(tlsIdentityChanged(selfSigned.tls, files.tls)).toBe(true);
    expect(tlsIdentityChanged(files.tls, { mode: 'none' })).toBe(true);
    // A renewed CA-issued certificate: strings carry no fingerprint and keep verifying.
    expect(
      tlsIdentityChanged(files.tls, { ...files.tls, fingerprint: fp('D') } as typeof files.tls),
    ).toBe(false);
  });
});
