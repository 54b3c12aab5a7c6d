import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubRequest, type HubResponse } from '../../src/net/hub-client.js';
import { hubTarget, serviceToken } from '../../src/service/credentials.js';
import { hubError } from '../helpers/hub-error.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';

// The registry REST API as IoT Hub's, where Microsoft's Node SDK does not reach: conditional
// writes with a real etag (the C# SDK's UpdateDeviceAsync/RemoveDeviceAsync send one), bad
// bodies, the twin's read-only methods. Microsoft's own SDK runs in test/e2e/azure-sdk.test.ts.

let t: TestHub;
beforeAll(async () => {
  t = await startTestHub();
});
afterAll(async () => {
  await t.cleanup();
});

const api = '?api-version=2021-04-12';
function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HubResponse> {
  return hubRequest(hubTarget(t.service), {
    method,
    path: path + api,
    headers: {
      authorization: serviceToken(t.service),
      ...(body === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}
const json = (res: HubResponse): Record<string, unknown> =>
  JSON.parse(res.body) as Record<string, unknown>;

describe('registry REST as IoT Hub answers it', () => {
  it('PUT with If-Match updates only at the etag given; DELETE likewise; ETag headers match', async () => {
    const made = await call('PUT', '/devices/etag-dev', { deviceId: 'etag-dev' });
    expect(made.status).toBe(200);
    const etag1 = json(made).etag as string;
    expect(made.headers.etag).toBe(`"${etag1}"`);

    const disabled = await call(
      'PUT',
      '/devices/etag-dev',
      { deviceId: 'etag-dev', status: 'disabled' },
      { 'if-match': `"${etag1}"` },
    );
    expect(disabled.status).toBe(200);
    const etag2 = json(disabled).etag as string;
    expect(etag2).not.toBe(etag1);
    expect(json(disabled)).toMatchObject({
      status: 'disabled',
      generationId: json(made).generationId,
    });
    // Keys not in the body are kept on update.
    expect(json(disabled).authentication).toEqual(json(made).authentication);

    // The old etag no longer matches: 412, nothing changed.
    const stale = await call(
      'PUT',
      '/devices/etag-dev',
      { deviceId: 'etag-dev', status: 'enabled' },
      { 'if-match': `"${etag1}"` },
    );
    expect(stale.status).toBe(412);
    expect(hubError(stale)).toEqual({
      errorCode: 'PreconditionFailed',
      message:
        "device 'etag-dev' has another etag than If-Match names: it changed since it was read",
    });
    expect(json(await call('GET', '/devices/etag-dev')).status).toBe('disabled');
    expect(
      (await call('DELETE', '/devices/etag-dev', undefined, { 'if-match': `"${etag1}"` })).status,
    ).toBe(412);

    // Without If-Match, PUT of an existing device is a create: 409.
    const exists = await call('PUT', '/devices/etag-dev', { deviceId: 'etag-dev' });
    expect(exists.status).toBe(409);
    expect(hubError(exists).errorCode).toBe('DeviceAlreadyExists');

    // Regenerating a key changes the etag too.
    const rotated = await call('POST', '/devices/etag-dev/regenerate-key', { key: 'secondary' });
    const etag3 = json(rotated).etag as string;
    expect(etag3).not.toBe(etag2);
    expect(
      (await call('DELETE', '/devices/etag-dev', undefined, { 'if-match': etag3 })).status,
    ).toBe(204);
    const gone = await call('GET', '/devices/etag-dev');
    expect(gone.status).toBe(404);
    expect(hubError(gone).errorCode).toBe('DeviceNotFound');

    // A device made again under the same id has a new generation: the old etag is foreign.
    const remade = await call('PUT', '/devices/etag-dev', {});
    expect(json(remade).etag).not.toBe(etag1);
    expect(
      (await call('PUT', '/devices/etag-dev', { status: 'disabled' }, { 'if-match': `"${etag1}"` }))
        .status,
    ).toBe(412);
  });

  it('keys given on create are kept and authenticate; bad bodies are 400 with one sentence', async () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const made = await call('PUT', '/devices/keyed', {
      deviceId: 'keyed',
      authentication: { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: '' } },
    });
    expect(made.status).toBe(200);
    expect(t.state.registry.getDevice('keyed')?.primaryKey).toBe(key);
    expect(json(made).connectionString).toContain(`SharedAccessKey=${key}`);

    const cases: [unknown, string][] = [
      [[1], 'the body must be a JSON object (a device identity)'],
      [{ deviceId: 'other' }, "the body's deviceId does not match the path's ('bad')"],
      [{ status: 'off' }, 'status must be "enabled" or "disabled"'],
      [
        { authentication: { symmetricKey: { primaryKey: 'c2hvcnQ=' } } },
        'primaryKey must be 16 to 64 bytes (base64 of 5 bytes given)',
      ],
      [
        { authentication: { symmetricKey: { secondaryKey: 'not base64!' } } },
        'secondaryKey must be base64',
      ],
      [
        { authentication: { type: 'none' } },
        'authentication type "none" is not supported: dstream devices use symmetric keys (type "sas")',
      ],
    ];
    for (const [body, message] of cases) {
      const res = await call('PUT', '/devices/bad', body);
      expect(res.status, message).toBe(400);
      expect(hubError(res)).toEqual({ errorCode: 'ArgumentInvalid', message });
    }
    expect(t.state.registry.getDevice('bad')).toBeUndefined();
  });

  it('twins: GET is a minimal twin; they cannot be changed; unknown devices are 404', async () => {
    await call('PUT', '/devices/twinned', {});
    const twin = await call('GET', '/twins/twinned');
    expect(twin.status).toBe(200);
    expect(twin.headers.etag).toBe('"AAAAAAAAAAE="');
    expect(json(twin)).toMatchObject({
      deviceId: 'twinned',
      etag: 'AAAAAAAAAAE=',
      deviceEtag: json(await call('GET', '/devices/twinned')).etag,
      status: 'enabled',
      connectionState: 'Disconnected',
      tags: {},
    });
    const patch = await call('PATCH', '/twins/twinned', { tags: { a: 1 } });
    expect(patch.status).toBe(405);
    expect(hubError(patch).errorCode).toBe('MethodNotAllowed');
    const missing = await call('GET', '/twins/nobody');
    expect(missing.status).toBe(404);
    expect(hubError(missing).errorCode).toBe('DeviceNotFound');
  });

  it('the module stream path checks the module id as IoT Hub does', async () => {
    const res = await call('POST', '/twins/twinned/modules/a%20b/streams/22');
    expect(res.status).toBe(400);
    expect(hubError(res).message).toBe(
      "module ID 'a b' may not contain a space: use letters, digits and - . : + % _ # * ? ! ( ) , = @ $ '",
    );
    const get = await call('GET', '/twins/twinned/modules/m/streams/22');
    expect(get.status).toBe(405);
  });
});
