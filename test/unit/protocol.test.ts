import { describe, expect, it } from 'vitest';
import { buildAllowList } from '../../src/agent/allow-list.js';
import { parseAgentMessage, parseHubMessage } from '../../src/protocol/control-messages.js';
import { deviceIdProblem, isValidDeviceId } from '../../src/protocol/identifiers.js';

describe('device IDs', () => {
  it("accepts IoT Hub's alphabet up to 128 characters", () => {
    expect(isValidDeviceId("pi-01.site:a+b%_#*?!(),=@$'")).toBe(true);
    expect(isValidDeviceId('x'.repeat(128))).toBe(true);
  });
  it.each([
    ['', 'empty'],
    ['x'.repeat(129), '129 characters'],
    ['a/b', "may not contain '/': use letters, digits"],
    ['a b', 'may not contain a space: use letters, digits'],
    ['é', 'may not contain U+00E9: use letters, digits'],
    ['a;b', "may not contain ';': use letters, digits"],
  ])('rejects %j', (id, message) => expect(deviceIdProblem(id)).toContain(message));
});

describe('control messages', () => {
  it('parses a stream response and cleans its reason', () => {
    expect(
      parseAgentMessage(
        '{"type":"stream-response","requestId":"r1","accepted":false,"reason":"no\\nway"}',
      ),
    ).toEqual({
      type: 'stream-response',
      requestId: 'r1',
      accepted: false,
      reason: 'no way',
    });
    expect(
      parseAgentMessage(
        '{"type":"stream-response","requestId":"r1","accepted":true,"reason":"' +
          'x'.repeat(900) +
          '"}',
      )?.reason,
    ).toHaveLength(256);
  });
  it.each([
    'not json',
    '[]',
    'null',
    '{"type":"stream-response","requestId":"r1"}',
    '{"type":"stream-response","requestId":"r 1","accepted":true}',
    '{"type":"stream-response","requestId":"r1","accepted":"yes"}',
    '{"type":"stream-response","requestId":"r1","accepted":true,"reason":5}',
    '{"type":"other","requestId":"r1","accepted":true}',
    JSON.stringify({
      type: 'stream-response',
      requestId: 'r',
      accepted: true,
      pad: 'x'.repeat(20000),
    }),
  ])('rejects agent message %j', (text) => expect(parseAgentMessage(text)).toBeUndefined());

  it('parses a stream request and rejects bad ones', () => {
    const ok = {
      type: 'stream-request',
      requestId: 'abc',
      streamName: '22',
      url: 'wss://h:1/bridges/x',
      authorizationToken: 't',
    };
    expect(parseHubMessage(JSON.stringify(ok))).toEqual(ok);
    expect(parseHubMessage(JSON.stringify({ ...ok, url: 'http://evil' }))).toBeUndefined();
    expect(parseHubMessage(JSON.stringify({ ...ok, streamName: '../22' }))).toBeUndefined();
    expect(parseHubMessage(JSON.stringify({ ...ok, authorizationToken: 1 }))).toBeUndefined();
  });
});

describe('agent allow-list', () => {
  it('maps --port P to 127.0.0.1:P and --target NAME=HOST:PORT', () => {
    const list = buildAllowList(['22'], ['rdp=127.0.0.1:3389', 'web=[::1]:8080']);
    expect([...list]).toEqual([
      ['22', { host: '127.0.0.1', port: 22 }],
      ['rdp', { host: '127.0.0.1', port: 3389 }],
      ['web', { host: '::1', port: 8080 }],
    ]);
  });
  it.each([
    [[], [], 'allows no streams'],
    [['0'], [], 'not a port number'],
    [['70000'], [], 'not a port number'],
    [['ssh'], [], 'not a port number'],
    [['22', '22'], [], "stream '22' is allowed twice"],
    [[], ['ssh'], 'missing NAME'],
    [[], ['ssh=localhost'], 'expected NAME=HOST:PORT'],
    [[], ['a b=h:1'], "stream name 'a b' may not contain a space"],
  ])('rejects ports %j targets %j', (ports, targets, message) => {
    expect(() => buildAllowList(ports, targets)).toThrow(message);
  });
});
