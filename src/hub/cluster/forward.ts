import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { describeError } from '../../errors.js';
import { refuseUpgrade } from '../base/http-util.js';
import { connectToHub } from '../../net/hub-client.js';
import { forwardedHeader, type Hop, type Passable } from '../streams/stream-hop.js';

/** The request head as it arrived, for the next node (minus our own hop marker). */
function requestHead(req: IncomingMessage, fromNode: string): string {
  let head = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.toLowerCase() === forwardedHeader) continue;
    head += `${name}: ${raw[i + 1] as string}\r\n`;
  }
  return `${head}${forwardedHeader}: ${fromNode}\r\n\r\n`;
}

/**
 * Pass a stream socket that reached the wrong node to the node that holds its stream: one
 * TCP (TLS) hop, the upgrade request replayed as it came, then bytes copied both ways with
 * back-pressure (pipe) and half-close. The owner checks the token and does the WebSocket
 * handshake itself; this node only carries bytes.
 */
function forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, hop: Hop): void {
  const { url, fromNode, logger } = hop;
  const port = Number(url.port) || (hop.trust.tls ? 443 : 80);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // Until the hop is up, bytes the client sends wait in the kernel.
  socket.pause();
  connectToHub({ host, port, ...hop.trust }, 5000).then(
    (upstream: Socket) => {
      if (socket.destroyed) {
        upstream.destroy();
        return;
      }
      upstream.on('error', (error) =>
        logger.debug('forwarded stream: error towards the owner node', { error: error.message }),
      );
      const teardown = (): void => {
        socket.destroy();
        upstream.destroy();
      };
      upstream.once('close', teardown);
      socket.once('close', teardown);
      upstream.write(requestHead(req, fromNode));
      if (head.length > 0) upstream.write(head);
      // pipe: pauses the source when the destination's buffer is full, ends the destination
      // when the source ends (half-close travels through).
      socket.pipe(upstream);
      upstream.pipe(socket);
      socket.resume();
    },
    (error: unknown) => {
      logger.warn('cannot reach the node that holds a stream', {
        node: url.host,
        error: describeError(error),
      });
      refuseUpgrade(
        socket,
        502,
        'BadGateway',
        'the hub node holding this stream cannot be reached',
      );
    },
  );
}

/** A stream socket's upgrade that reached this node, as the cluster passes it on. */
export function upgradePassable(req: IncomingMessage, socket: Duplex, head: Buffer): Passable {
  return {
    hold: () => socket.pause(),
    passTo: (hop) => forwardUpgrade(req, socket, head, hop),
    refuse: (status, errorCode, message, headers) =>
      refuseUpgrade(socket, status, errorCode, message, headers),
  };
}
