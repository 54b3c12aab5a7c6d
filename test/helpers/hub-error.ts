import { errorCodeHeader, iotHubErrorNumbers } from '../../src/protocol/iothub-error.js';

const nameOf = new Map<number, string>(
  Object.entries(iotHubErrorNumbers).map(([name, n]) => [n, name]),
);

/**
 * Read a hub error answer, checking that it has IoT Hub's shape exactly: a body of
 * `{"Message": "<JSON>", "ExceptionMessage": ""}` whose inner JSON has a six-digit errorCode, a
 * tracking id, the sentence and a UTC time; and, where the headers are at hand, an
 * `iothub-errorcode` header naming the same error. Throws when the shape is off.
 */
export function hubError(res: {
  readonly body: string;
  readonly headers?: Readonly<Record<string, string | string[] | undefined>>;
}): { errorCode: string; message: string } {
  const outer = JSON.parse(res.body) as Record<string, unknown>;
  if (
    Object.keys(outer).sort().join() !== 'ExceptionMessage,Message' ||
    outer.ExceptionMessage !== ''
  )
    throw new Error(`not IoT Hub's error shape: ${res.body}`);
  const inner = JSON.parse(outer.Message as string) as Record<string, unknown>;
  const { errorCode, trackingId, message, timestampUtc } = inner;
  if (
    typeof errorCode !== 'number' ||
    !/^\d{6}$/.test(String(errorCode)) ||
    typeof trackingId !== 'string' ||
    !/^[0-9A-F]{32}$/.test(trackingId) ||
    typeof message !== 'string' ||
    typeof timestampUtc !== 'string' ||
    Number.isNaN(Date.parse(timestampUtc))
  )
    throw new Error(`not IoT Hub's error shape: ${res.body}`);
  const name = nameOf.get(errorCode) ?? String(errorCode);
  const header = res.headers?.[errorCodeHeader];
  if (res.headers && header !== name)
    throw new Error(`${errorCodeHeader} header is ${String(header)}, the body says ${name}`);
  return { errorCode: name, message };
}
