import { describe, expect, it } from 'vitest';
import { parseStoreUrl, redactedUrl } from '../../src/hub/cluster/store-url.js';

describe('--redis URL', () => {
  it('takes redis://, rediss:// and unix: with an absolute path', () => {
    expect(parseStoreUrl('redis://10.0.0.2:6379').host).toBe('10.0.0.2:6379');
    expect(parseStoreUrl('rediss://u:p@redis.example:6380/2').protocol).toBe('rediss:');
    expect(parseStoreUrl('unix:/run/redis/redis.sock').pathname).toBe('/run/redis/redis.sock');
  });

  it.each([
    ['http://x:1', 'expected redis://HOST:PORT, rediss://HOST:PORT or unix:/PATH'],
    ['localhost:6379', 'expected redis://HOST:PORT, rediss://HOST:PORT or unix:/PATH'],
    ['not a url', 'expected redis://HOST:PORT, rediss://HOST:PORT or unix:/PATH'],
    ['unix:redis.sock', 'a unix socket needs an absolute path'],
  ])('refuses %s', (text, why) => {
    expect(() => parseStoreUrl(text)).toThrow(`--redis ${text}: ${why}`);
  });

  it('never shows a password', () => {
    expect(redactedUrl(new URL('redis://dstream:hunter2@h:6379/0'))).toBe(
      'redis://dstream:***@h:6379/0',
    );
    expect(redactedUrl(new URL('redis://h:6379'))).toBe('redis://h:6379');
  });
});
