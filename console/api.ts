import type { TokenSigner } from './credentials.js';

/** A refusal from the hub, with IoT Hub's error name and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Read IoT Hub's error shape: {"Message": "<JSON with errorCode and message>"}. */
async function errorOf(response: Response): Promise<ApiError> {
  const code = response.headers.get('iothub-errorcode') ?? `HTTP ${response.status}`;
  let message = response.statusText;
  try {
    const body = (await response.json()) as { Message?: string };
    const inner = JSON.parse(body.Message ?? '{}') as { message?: string };
    message = inner.message ?? message;
  } catch {
    // not in IoT Hub's shape: the status text says enough
  }
  return new ApiError(response.status, code, message);
}

/** The hub's REST API, on this page's own origin, each request with a fresh-enough token. */
export class Api {
  constructor(private readonly signer: TokenSigner) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: await this.signer.token() };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
    if (!response.ok) throw await errorOf(response);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  /**
   * Follow GET /events (Server-Sent Events) until `signal` aborts, calling `onEvent` for each;
   * reconnects (with a fresh token) after the hub ends the stream or the network drops it.
   */
  async follow(
    onEvent: (type: string, data: unknown) => void,
    onState: (connected: boolean) => void,
    signal: AbortSignal,
  ): Promise<void> {
    while (!signal.aborted) {
      try {
        const response = await fetch('/events', {
          headers: { authorization: await this.signer.token(), accept: 'text/event-stream' },
          cache: 'no-store',
          signal,
        });
        if (!response.ok || !response.body) throw await errorOf(response);
        onState(true);
        await readEvents(response.body, onEvent);
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
          onState(false);
          return;
        }
      }
      onState(false);
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }
}

/** Parse an SSE body: blocks of `event:` and `data:` lines separated by a blank line. */
async function readEvents(
  body: ReadableStream<Uint8Array>,
  onEvent: (type: string, data: unknown) => void,
): Promise<void> {
  const reader = body
    .pipeThrough(new TextDecoderStream() as ReadableWritablePair<string, Uint8Array>)
    .getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) type = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data === '') continue;
      try {
        onEvent(type, JSON.parse(data));
      } catch {
        // a broken event is skipped; the next tick refreshes the page anyway
      }
    }
  }
}
