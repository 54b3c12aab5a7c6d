import type { Server } from 'node:net';
import { DstreamError, describeError } from '../errors.js';

/**
 * Bind `server` to host:port; a failure becomes one clear ERR_LISTEN error, with `busyHint`
 * when the port is taken. Resolves once listening.
 */
export function listen(
  server: Server,
  host: string,
  port: number,
  busyHint: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      reject(
        new DstreamError(
          'ERR_LISTEN',
          `cannot listen on ${host}:${port}: ${describeError(error)}`,
          {
            hint: error.code === 'EADDRINUSE' ? busyHint : undefined,
            cause: error,
          },
        ),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
