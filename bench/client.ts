import { connect, type Socket } from 'node:net';

/** Connect to 127.0.0.1:port (allowHalfOpen, noDelay); rejects on error or after `timeoutMs`. */
export function dial(port: number, timeoutMs = 15_000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to ${port} timed out`));
    }, timeoutMs);
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      resolve(socket);
    });
  });
}

/** Resolves with the first chunk the peer sends; rejects if it closes first or times out. */
export function firstData(socket: Socket, timeoutMs = 15_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no data in time')), timeoutMs);
    const onClose = (): void => {
      clearTimeout(timer);
      reject(new Error('closed before any data'));
    };
    socket.once('close', onClose);
    socket.once('data', (d: Buffer) => {
      clearTimeout(timer);
      socket.off('close', onClose);
      resolve(d);
    });
  });
}

/** Read exactly `n` bytes (for ping-pong). */
export function readExactly(socket: Socket, n: number, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const timer = setTimeout(() => {
      socket.off('data', onData);
      reject(new Error('echo timed out'));
    }, timeoutMs);
    const onData = (d: Buffer): void => {
      got += d.length;
      if (got >= n) {
        clearTimeout(timer);
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
}

const chunk = Buffer.alloc(1024 * 1024, 0xa5);

/** Write `total` bytes with back-pressure, then end. */
export function sendBytes(socket: Socket, total: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = total;
    socket.once('error', reject);
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end(() => resolve());
    };
    pump();
  });
}

/** Read until the peer ends; resolves with the byte count. */
export function drain(socket: Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    socket.on('data', (d: Buffer) => (n += d.length));
    socket.once('end', () => resolve(n));
    socket.once('error', reject);
  });
}

/** Poll `condition` (driven by events elsewhere) until true; rejects after `timeoutMs`. */
export async function waitUntil(
  condition: () => boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
