import { randomBytes } from 'node:crypto';

/**
 * IoT Hub's numeric error codes for the names dstream answers with (HTTP status * 1000 + a
 * number). IoT Hub's own, from Microsoft's service SDK (IotHubServiceErrorCode); the names
 * IoT Hub does not have are dstream's, numbered 9xx in their status's range.
 */
export const iotHubErrorNumbers = {
  ArgumentInvalid: 400004,
  IotHubUnauthorizedAccess: 401002,
  DeviceDisabled: 403901,
  Forbidden: 403902,
  DeviceNotFound: 404001,
  DeviceNotOnline: 404103,
  NotFound: 404000,
  PolicyNotFound: 404901,
  StreamNotFound: 404902,
  MethodNotAllowed: 405000,
  DeviceAlreadyExists: 409001,
  PolicyAlreadyExists: 409901,
  PreconditionFailed: 412001,
  /** Ours: a substream the hub will not carry on this connection; open it as a stream socket. */
  MisdirectedRequest: 421901,
  ThrottlingException: 429001,
  ServerError: 500001,
  BadGateway: 502901,
  ServiceUnavailable: 503001,
  GatewayTimeout: 504101,
} as const;

/** An error name dstream answers with. */
export type IotHubErrorName = keyof typeof iotHubErrorNumbers;

/** The header that names the error, as IoT Hub sends it. */
export const errorCodeHeader = 'iothub-errorcode';

/**
 * An error body in IoT Hub's shape: `Message` holds a JSON string with the numeric code, a
 * tracking id, the sentence and the time; `ExceptionMessage` is empty.
 */
export function iotHubErrorBody(name: IotHubErrorName, message: string, now = new Date()): string {
  const inner = {
    errorCode: iotHubErrorNumbers[name],
    trackingId: randomBytes(16).toString('hex').toUpperCase(),
    message,
    timestampUtc: now.toISOString(),
  };
  return JSON.stringify({ Message: JSON.stringify(inner), ExceptionMessage: '' });
}

const byNumber = new Map<number, string>(
  Object.entries(iotHubErrorNumbers).map(([name, n]) => [n, name]),
);

/**
 * Read an error answer: IoT Hub's shape (the name from the header, or from the numeric code),
 * IoT Hub's older `ErrorCode:<Name>;<sentence>` form, or dstream's own earlier
 * `{"errorCode","message"}`. Undefined fields where the body says nothing usable.
 */
export function parseIotHubError(
  body: string,
  headerName?: string,
): { readonly name: string | undefined; readonly message: string | undefined } {
  let name = headerName === '' ? undefined : headerName;
  let message: string | undefined;
  try {
    const outer = JSON.parse(body) as Record<string, unknown>;
    if (typeof outer.Message === 'string') {
      const text = outer.Message;
      const old = /^ErrorCode:([A-Za-z]+);(.*)$/s.exec(text);
      if (old) {
        name ??= old[1];
        message = old[2];
      } else {
        const inner = JSON.parse(text) as Record<string, unknown>;
        if (typeof inner.message === 'string') message = inner.message;
        if (typeof inner.errorCode === 'number') name ??= byNumber.get(inner.errorCode);
      }
    } else {
      if (typeof outer.errorCode === 'string') name ??= outer.errorCode;
      if (typeof outer.message === 'string') message = outer.message;
    }
  } catch {
    // Not JSON (a proxy in between?): nothing to read.
  }
  return { name, message };
}
