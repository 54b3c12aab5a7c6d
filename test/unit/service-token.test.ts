import { describe, expect, it } from 'vitest';
import {
  parseConnectionString,
  type ServiceConnectionString,
} from '../../src/auth/connection-string.js';
import { hasValidSignature, parseSas } from '../../src/auth/sas.js';
import { serviceToken } from '../../src/service/credentials.js';

const key = Buffer.alloc(32, 9).toString('base64');
const service = (text: string): ServiceConnectionString => {
  const cs = parseConnectionString(text);
  if (cs.kind !== 'service') throw new Error('not a service string');
  return cs;
};
const connectionString = `HostName=hub.example:8443;SharedAccessKeyName=service;SharedAccessKey=${key}`;

describe('service tokens', () => {
  it('reuses one signed token until fewer than 15 minutes of its hour are left', () => {
    const cs = service(connectionString);
    const t0 = 1_900_000_000_000;
    const first = serviceToken(cs, t0);
    const parsed = parseSas(first);
    expect(parsed.expiry).toBe(t0 / 1000 + 3600);
    expect(parsed.keyName).toBe('service');
    expect(hasValidSignature(parsed, key)).toBe(true);
    expect(serviceToken(cs, t0 + 1_000)).toBe(first);
    expect(serviceToken(cs, t0 + 2_699_000)).toBe(first);
    const renewed = serviceToken(cs, t0 + 2_701_000);
    expect(renewed).not.toBe(first);
    expect(parseSas(renewed).expiry).toBe(t0 / 1000 + 2701 + 3600);
    expect(serviceToken(cs, t0 + 2_702_000)).toBe(renewed);
  });

  it('signs for each connection string on its own', () => {
    const a = service(connectionString);
    const b = service(
      connectionString.replace('SharedAccessKeyName=service', 'SharedAccessKeyName=other'),
    );
    const t0 = 1_900_000_000_000;
    expect(parseSas(serviceToken(a, t0)).keyName).toBe('service');
    expect(parseSas(serviceToken(b, t0)).keyName).toBe('other');
  });
});
