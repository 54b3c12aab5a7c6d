import { describe, expect, it } from 'vitest';
import {
  clientIdProblem,
  parseStreamResponseTopic,
  streamRequestTopic,
  usernameProblem,
} from '../../src/hub/devices/mqtt-topics.js';

describe("IoT Hub's MQTT stream topics", () => {
  it('a request carries name, request id, the URL escaped and the token', () => {
    expect(
      streamRequestTopic({
        type: 'stream-request',
        requestId: 'r-1',
        streamName: '22',
        url: 'wss://hub.example.com:443/bridges/abc',
        authorizationToken: 'tok_en-1',
      }),
    ).toBe(
      '$iothub/streams/POST/22/?$rid=r-1&$url=wss%3A%2F%2Fhub.example.com%3A443%2Fbridges%2Fabc&$auth=tok_en-1',
    );
  });

  it('reads answers: 200 accepts, other statuses reject, anything else is no answer', () => {
    expect(parseStreamResponseTopic('$iothub/streams/res/200/?$rid=r-1')).toEqual({
      type: 'stream-response',
      requestId: 'r-1',
      accepted: true,
    });
    expect(parseStreamResponseTopic('$iothub/streams/res/400/?$rid=r-1')).toEqual({
      type: 'stream-response',
      requestId: 'r-1',
      accepted: false,
      reason: 'the device answered 400',
    });
    for (const topic of [
      '$iothub/streams/res/200/',
      '$iothub/streams/res/200/?$rid=',
      '$iothub/streams/res/200/?$rid=bad id',
      '$iothub/streams/res/20/?$rid=r',
      'devices/d/messages/events/',
      '$iothub/twin/res/200/?$rid=1',
    ])
      expect(parseStreamResponseTopic(topic), topic).toBeUndefined();
  });

  it('username <host>/<deviceId>/?api-version=... must name the client id', () => {
    expect(usernameProblem('hub.example.com/d1/?api-version=2021-04-12', 'd1')).toBeUndefined();
    expect(usernameProblem('hub.example.com/d1', 'd1')).toBeUndefined();
    expect(usernameProblem(undefined, 'd1')).toBe('no username');
    expect(usernameProblem('d1', 'd1')).toBe('username is not <host>/<deviceId>/...');
    expect(usernameProblem('h/d2/?api-version=1', 'd1')).toBe(
      "username names device 'd2', the client id 'd1'",
    );
  });

  it('client ids are device ids; module clients are refused by name', () => {
    expect(clientIdProblem('d1')).toBeUndefined();
    expect(clientIdProblem('d1/m1')).toBe(
      "client id 'd1/m1' names a module: dstream has no module identities, connect as the device",
    );
    expect(clientIdProblem('')).toBe('device ID is empty');
  });
});
