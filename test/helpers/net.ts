import { createReadStream } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A file's SHA-256 (hex), read as a stream. */
export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => hash.update(d))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject);
  });
}
export { randomBytes };

/** Connect to 127.0.0.1:port with half-open allowed. */
export async function dial(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  return socket;
}

/** Read everything until the peer ends; rejects if the socket errors or it takes too long. */
export function readAll(socket: Socket, timeoutMs = 30_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(
      () => reject(new Error(`readAll timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * Collect what `socket` receives; resolves once `n` bytes are in (and stops listening, so the
 * socket can carry the next exchange). Rejects if the socket closes first, or after `limitMs`
 * (well inside the test's own timeout, so that a stall is reported with the processes' logs
 * instead of as a bare timeout).
 */
export function collect(
  socket: Socket,
  n: number,
  onProgress: (got: number) => void = () => undefined,
  /** The processes' logs, for the error. */
  explain: () => string = () => '',
  limitMs = 75_000,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const stop = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`stalled: ${got} of ${n} bytes after ${limitMs / 1000} s\n${explain()}`));
    }, limitMs);
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      onProgress(got);
      if (got >= n) {
        stop();
        resolve(Buffer.concat(chunks));
      }
    };
    const onClose = (): void => {
      stop();
      reject(new Error(`closed after ${got} of ${n} bytes\n${explain()}`));
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

/** Wait for a socket to close; resolves with whether it closed with an error. */
export function closed(
  socket: Socket,
  timeoutMs = 10_000,
): Promise<{ hadError: boolean; error?: NodeJS.ErrnoException }> {
  if (socket.closed) return Promise.resolve({ hadError: false });
  return new Promise((resolve, reject) => {
    let error: NodeJS.ErrnoException | undefined;
    socket.on('error', (e) => (error = e));
    const timer = setTimeout(
      () => reject(new Error(`socket did not close within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once('close', (hadError: boolean) => {
      clearTimeout(timer);
      resolve({ hadError, ...(error ? { error } : {}) });
    });
  });
}

/** Resolve when `emitter` emits `event`, or reject after `timeoutMs`. */
export async function waitEvent<T = unknown>(
  emitter: NodeJS.EventEmitter,
  event: string,
  timeoutMs = 10_000,
): Promise<T> {
  const [value] = (await once(emitter, event, { signal: AbortSignal.timeout(timeoutMs) })) as [T];
  return value;
}

/** Poll a condition driven by events elsewhere; rejects after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Read a value kept elsewhere (a hub's /metrics, its stream list) until it is `expected` or
 * `timeoutMs` passed; returns the last reading, for the test to assert on.
 */
export async function readUntil<T>(
  read: () => Promise<T>,
  expected: T,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (value !== expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    value = await read();
  }
  return value;
}

/** A port free on 127.0.0.1 just now (for a process that must be told its port in advance). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}
