import { describe, expect, it } from 'vitest';
import { parseForward } from '../../src/proxy/forward-spec.js';

describe('-L [BIND:]PORT:DEVICE:REMOTE', () => {
  it.each([
    ['2222:pi-01:22', { bind: '127.0.0.1', port: 2222, deviceId: 'pi-01', streamName: '22' }],
    [
      '0.0.0.0:3389:pi-01:rdp',
      { bind: '0.0.0.0', port: 3389, deviceId: 'pi-01', streamName: 'rdp' },
    ],
    ['[::1]:2222:pi-01:22', { bind: '::1', port: 2222, deviceId: 'pi-01', streamName: '22' }],
    [
      '2222:site:a:pi:22',
      { bind: '127.0.0.1', port: 2222, deviceId: 'site:a:pi', streamName: '22' },
    ],
    ['localhost:0:d:ssh', { bind: 'localhost', port: 0, deviceId: 'd', streamName: 'ssh' }],
  ])('%s', (spec, expected) => expect(parseForward(spec, '127.0.0.1')).toEqual(expected));

  it.each([
    ['2222:22', 'too few fields'],
    ['x:y:pi:22', "'y' is not a local port"],
    ['99999:pi:22', "'99999' is not a local port"],
    ['2222:pi 1:22', "device ID 'pi 1' may not contain a space"],
    ['2222:pi:99999', "'99999' is not a remote port"],
    ['2222:pi:', 'stream name is empty'],
  ])('rejects %s', (spec, message) =>
    expect(() => parseForward(spec, '127.0.0.1')).toThrow(message),
  );
});
