import { describe, expect, it } from 'vitest';
import { createLogger, formatBytes, formatDuration } from '../../src/log/logger.js';
import { streamEndFields, whyStreamEnded } from '../../src/stream/end-report.js';
import { isLoopbackAddress } from '../../src/hub/base/http-util.js';

describe('human units in text logs', () => {
  it.each([
    [0, '0B'],
    [1023, '1023B'],
    [1024, '1.0KiB'],
    [3000, '2.9KiB'],
    [200_000, '195KiB'],
    [1024 ** 3 * 1.5, '1.5GiB'],
  ])('formatBytes(%d) = %s', (n, text) => expect(formatBytes(n)).toBe(text));

  it.each([
    [0, '0ms'],
    [950, '950ms'],
    [12_340, '12.3s'],
    [4_000_000, '1h6m40s'],
    [61_000, '1m1s'],
  ])('formatDuration(%d) = %s', (ms, text) => expect(formatDuration(ms)).toBe(text));

  it('text shows *Bytes and *Ms fields in human units; JSON keeps the numbers', () => {
    const lines: string[] = [];
    const fields = { sentBytes: 2048, durationMs: 1500, port: 22 };
    createLogger({ level: 'info', format: 'text', write: (l) => lines.push(l) }).info('x', fields);
    createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }).info('x', fields);
    expect(lines[0]).toBe('INFO  x sentBytes=2.0KiB durationMs=1.5s port=22');
    expect(JSON.parse(lines[1] ?? '')).toMatchObject(fields);
  });
});

describe('child loggers', () => {
  it('add their fields to every line, a nearer child wins, levels and redaction hold, and the root is untouched', () => {
    const lines: string[] = [];
    const root = createLogger({ level: 'info', format: 'text', write: (l) => lines.push(l) });
    const stream = root.child({ device: 'dev', stream: 'ssh' });
    const inner = stream.child({ stream: 'rdp', authorizationToken: 'secret' });
    stream.info('opened', { port: 22 });
    inner.warn('lost');
    inner.debug('below the level');
    root.error('plain');
    expect(lines).toEqual([
      'INFO  opened device=dev stream=ssh port=22',
      'WARN  lost device=dev stream=rdp authorizationToken=[redacted]',
      'ERROR plain',
    ]);
  });
});

describe('why a stream ended', () => {
  const base = { bytesSent: 1, bytesReceived: 2, closeCode: 1000, error: undefined };
  it.each([
    [{ ...base, end: 'completed' as const }, 'closed normally'],
    [
      { ...base, end: 'local-error' as const, error: new Error('read ECONNRESET') },
      'local connection failed: read ECONNRESET',
    ],
    [
      { ...base, end: 'peer-error' as const, closeCode: 1006 },
      'the connection to the hub was lost',
    ],
    [
      { ...base, end: 'peer-error' as const, closeCode: 4003 },
      'the hub shut down or the device was disabled',
    ],
    [{ ...base, end: 'peer-error' as const, closeCode: 4321 }, 'closed by the hub (code 4321)'],
  ])('%o -> %s', (result, why) => {
    expect(whyStreamEnded(result)).toBe(why);
    expect(streamEndFields(result, 5)).toEqual({
      end: result.end,
      why,
      sentBytes: 1,
      receivedBytes: 2,
      durationMs: 5,
    });
  });
});

describe('isLoopbackAddress (who may read /metrics by default)', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.8.9.10', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['10.0.0.1', false],
    ['::ffff:10.0.0.1', false],
    ['fe80::1', false],
    ['1270.0.0.1', false],
    [undefined, false],
  ])('%s -> %s', (address, loopback) => expect(isLoopbackAddress(address)).toBe(loopback));
});
