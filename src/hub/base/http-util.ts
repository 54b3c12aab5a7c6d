import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import {
  errorCodeHeader,
  iotHubErrorBody,
  type IotHubErrorName,
} from '../../protocol/iothub-error.js';

/** The WebSocket scheme of a hub URL: `wss:` for https (or wss), else `ws:`. */
export function webSocketScheme(url: URL): 'wss:' | 'ws:' {
  return url.protocol === 'https:' || url.protocol === 'wss:' ? 'wss:' : 'ws:';
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}),
    'content-length': Buffer.byteLength(text).toString(),
    'cache-control': 'no-store',
    // After a refusal the connection is closed once the answer is flushed: a client that
    // collects refused connections and keeps them silent must not hold descriptors for ever.
    ...(status >= 400 ? { connection: 'close' } : {}),
    ...headers,
  });
  res.end(text);
}

/**
 * Answer with an error in IoT Hub's shape: the `iothub-errorcode` header names it, the body
 * is `{"Message": "<JSON with errorCode, trackingId, message, timestampUtc>", "ExceptionMessage": ""}`,
 * so Microsoft's SDKs read it as they read IoT Hub's.
 */
export function sendError(
  res: ServerResponse,
  status: number,
  errorCode: IotHubErrorName,
  message: string,
): void {
  const text = iotHubErrorBody(errorCode, message);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text).toString(),
    'cache-control': 'no-store',
    [errorCodeHeader]: errorCode,
    // After a refusal the connection is closed once the answer is flushed (see sendJson).
    connection: 'close',
  });
  res.end(text);
}

/** How long a refused connection may linger for its answer to reach the client. */
export const refusedLingerMs = 1000;

/**
 * Close a socket we have answered and ended: the HTTP server allows half-open sockets, so
 * after our FIN a client that never sends its own would keep the descriptor open for ever.
 * What the client still sends is discarded; the socket is destroyed when the client ends its
 * side or after `refusedLingerMs`, whichever comes first.
 */
export function closeSoon(socket: Duplex): void {
  const timer = setTimeout(() => socket.destroy(), refusedLingerMs);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('end', () => socket.destroy());
  socket.resume();
}

/** Answer a WebSocket upgrade request with an HTTP error and close the connection. */
export function refuseUpgrade(
  socket: Duplex,
  status: number,
  errorCode: IotHubErrorName,
  message: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = iotHubErrorBody(errorCode, message);
  closeSoon(socket);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      'Connection: close\r\n' +
      Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      `${errorCodeHeader}: ${errorCode}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n` +
      body,
  );
}

export class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Read a small JSON body; empty bodies give undefined. */
export function readJsonBody(req: IncomingMessage, limit = 64 * 1024): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const tooLarge = (): void => {
      // Not req.destroy(): that would take the socket before the 413 could be sent. The rest
      // is read and thrown away while the answer goes out; error answers close the connection.
      reject(new BodyError(413, `request body larger than ${limit} bytes`));
      chunks.length = 0;
      req.removeAllListeners('data');
      req.resume();
    };
    if (Number(req.headers['content-length'] ?? 0) > limit) return tooLarge();
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return tooLarge();
      chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new BodyError(400, 'request body is not valid JSON'));
      }
    });
  });
}

/**
 * Split a request's raw target into decoded path segments. The raw form is read, not a URL
 * object's pathname: WHATWG URL parsing resolves `..` and `.`, so `/twins/d/streams/22/../x`
 * would silently name another stream. Dot segments and encoded slashes are refused instead,
 * so that what a client asked for is exactly what is authorised and logged.
 */
export function parseRequestPath(
  rawUrl: string | undefined,
): { readonly segments: string[] } | { readonly problem: string } {
  const raw = (rawUrl ?? '/').split(/[?#]/, 1)[0] ?? '';
  if (!raw.startsWith('/')) return { problem: 'the request target is not an absolute path' };
  const segments: string[] = [];
  for (const part of raw.split('/').slice(1)) {
    if (/%2f|%5c/i.test(part) || part.includes('\\'))
      return { problem: 'encoded slashes are not allowed in a path segment' };
    let decoded: string;
    try {
      decoded = decodeURIComponent(part);
    } catch {
      return { problem: 'bad percent-encoding in the path' };
    }
    if (decoded === '.' || decoded === '..')
      return { problem: 'dot segments (. and ..) are not allowed in the path' };
    segments.push(decoded);
  }
  return { segments };
}

/** The remote address for logs. */
export function remoteOf(req: IncomingMessage): string | undefined {
  return req.socket.remoteAddress;
}

/**
 * Read a small JSON body. On a bad body the error is answered here (400 or 413) and
 * undefined is returned; otherwise `{ value }` (undefined for an empty body).
 */
export async function readBody(
  req: IncomingMessage,
  res: ServerResponse,
): Promise<{ readonly value: unknown } | undefined> {
  try {
    return { value: await readJsonBody(req) };
  } catch (error) {
    if (!(error instanceof BodyError)) throw error;
    sendError(res, error.status, 'ArgumentInvalid', error.message);
    return undefined;
  }
}

/** readBody, then one field of it (undefined when the body is not an object or lacks it). */
export async function readBodyField(
  req: IncomingMessage,
  res: ServerResponse,
  field: string,
): Promise<{ readonly value: unknown } | undefined> {
  const body = await readBody(req, res);
  if (!body) return undefined;
  const value =
    typeof body.value === 'object' && body.value !== null
      ? (body.value as Record<string, unknown>)[field]
      : undefined;
  return { value };
}

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped forms: a client on this machine. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}
