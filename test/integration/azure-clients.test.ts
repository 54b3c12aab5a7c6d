import { ConnectionString, SharedAccessSignature, anHourFromNow } from 'azure-iot-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConnectionString } from '../../src/auth/connection-string.js';
import { closeWebSocket } from '../../src/net/close.js';
import { hubRequest, openWebSocket } from '../../src/net/hub-client.js';
import { controlProtocol } from '../../src/protocol/constants.js';
import { RegistryClient } from '../../src/service/registry-client.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';

// Microsoft's own code (azure-iot-common, the package under azure-iothub and the device SDK)
// reads dstream's connection strings and signs tokens dstream accepts. The hub's strings name
// port 443 as IoT Hub's do, with no port in HostName; the test reaches the hub on the port it
// really bound (the host part of a token's resource is not compared).

let t: TestHub;
beforeAll(async () => {
  t = await startTestHub({ publicUrl: new URL('https://localhost') });
});
afterAll(async () => {
  await t.cleanup();
});

const target = (): Parameters<typeof hubRequest>[0] => ({
  ...t.service.hub,
  host: '127.0.0.1',
  port: t.hub.port,
});

describe("Microsoft's azure-iot-common against dstream", () => {
  it('parses the service string: HostName is a bare host, as IoT Hub prints it', () => {
    expect(t.serviceString).toMatch(/^HostName=localhost;SharedAccessKeyName=service;/);
    const cs = ConnectionString.parse(t.serviceString, [
      'HostName',
      'SharedAccessKeyName',
      'SharedAccessKey',
    ]);
    expect(cs.HostName).toBe('localhost');
    // dstream's own clients read the bare host as port 443.
    expect(parseConnectionString(t.serviceString).hub).toMatchObject({
      host: 'localhost',
      port: 443,
    });
  });

  it('a service token made by SharedAccessSignature.create is accepted', async () => {
    const cs = ConnectionString.parse(t.serviceString);
    const sas = SharedAccessSignature.create(
      encodeURIComponent(cs.HostName ?? ''),
      cs.SharedAccessKeyName ?? '',
      cs.SharedAccessKey ?? '',
      anHourFromNow(),
    ).toString();
    const res = await hubRequest(target(), {
      method: 'GET',
      path: '/devices',
      headers: { authorization: sas },
    });
    expect(res.status).toBe(200);
    const wrongKey = SharedAccessSignature.create(
      encodeURIComponent(cs.HostName ?? ''),
      cs.SharedAccessKeyName ?? '',
      Buffer.alloc(32, 3).toString('base64'),
      anHourFromNow(),
    ).toString();
    expect(
      (
        await hubRequest(target(), {
          method: 'GET',
          path: '/devices',
          headers: { authorization: wrongKey },
        })
      ).status,
    ).toBe(401);
  });

  it("a device string parses as Microsoft's device SDK reads it, and its token opens the control channel", async () => {
    // (The helper's own client would dial the strings' port 443; this one dials the real port.)
    const registry = new RegistryClient(t.service, target());
    const text = (await registry.add('ms-device')).connectionString ?? '';
    expect(text).toMatch(/^HostName=localhost;DeviceId=ms-device;SharedAccessKey=/);
    const cs = ConnectionString.parse(text, ['HostName', 'DeviceId', 'SharedAccessKey']);
    const sas = SharedAccessSignature.create(
      encodeURIComponent(`${cs.HostName ?? ''}/devices/${cs.DeviceId ?? ''}`),
      '',
      cs.SharedAccessKey ?? '',
      anHourFromNow(),
    ).toString();
    const ws = await openWebSocket(
      `wss://127.0.0.1:${t.hub.port}/devices/ms-device/control`,
      target(),
      { headers: { authorization: sas }, protocols: [controlProtocol] },
    );
    expect(ws.protocol).toBe(controlProtocol);
    closeWebSocket(ws, 1000);
  });
});
