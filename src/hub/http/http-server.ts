import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DstreamError, describeError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import { closeSoon, parseRequestPath, refuseUpgrade, sendError } from '../base/http-util.js';
import type { HubTlsIdentity } from '../store/data-dir.js';
import type { RequestHandler, UpgradeHandler } from './routes.js';
import type { RouteTable } from './route-table.js';

export interface HubServerOptions {
  /** null serves plain HTTP/WS (--insecure-no-tls). */
  readonly tls: HubTlsIdentity | null;
  /** Time a client may take to send its request headers (and finish its TLS handshake). */
  readonly headersTimeoutMs: number;
  /** An idle kept-alive HTTP connection is closed after this long. */
  readonly keepAliveTimeoutMs: number;
  readonly requests: RouteTable<RequestHandler>;
  readonly upgrades: RouteTable<UpgradeHandler>;
  readonly logger: Logger;
}

/**
 * The hub's HTTP(S) server: requests and WebSocket upgrades routed by their tables, slow and
 * silent clients cut off, and a failing handler costing one request, not the hub.
 */
export function createHubServer(options: HubServerOptions): Server {
  const { logger, headersTimeoutMs } = options;
  // How often Node looks for requests past their header/request timeouts (its default is 30 s).
  const checkEveryMs = Math.min(1000, headersTimeoutMs);
  const server: Server = options.tls
    ? createHttpsServer({
        cert: options.tls.cert,
        key: options.tls.key,
        minVersion: 'TLSv1.2',
        // A connection that never finishes its handshake is as slow as slow headers.
        handshakeTimeout: headersTimeoutMs,
        connectionsCheckingInterval: checkEveryMs,
      })
    : createHttpServer({ connectionsCheckingInterval: checkEveryMs });
  // Slow clients (slowloris) are cut off: headers in 15 s, the whole request in 30 s.
  server.headersTimeout = headersTimeoutMs;
  server.keepAliveTimeout = options.keepAliveTimeoutMs;
  server.requestTimeout = Math.max(30_000, server.headersTimeout);
  // Node starts the header clock at a request's first byte, so a connection that finishes its
  // TLS handshake and then sends nothing would stay open for ever. It gets the same limit as
  // an idle socket timeout (Node's HTTP server destroys a socket that times out with no request),
  // cleared when its first request or upgrade arrives.
  server.on(options.tls ? 'secureConnection' : 'connection', (socket: Socket) =>
    socket.setTimeout(headersTimeoutMs),
  );

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = parseRequestPath(req.url);
    if ('problem' in path) return sendError(res, 400, 'ArgumentInvalid', path.problem);
    const method = req.method ?? 'GET';
    const route = options.requests.match(method, path.segments);
    if (route) return route.handler(req, res, route.params);
    sendError(
      res,
      404,
      'NotFound',
      `no such endpoint: ${method} ${(req.url ?? '/').split('?')[0]?.slice(0, 200) ?? ''}`,
    );
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    req.socket.setTimeout(0);
    req.on('error', () => undefined);
    onRequest(req, res).catch((error: unknown) => {
      // The cluster's Redis is away: registry writes cannot be made now. Not a bug: 503.
      if (error instanceof DstreamError && error.code === 'ERR_HUB_UNAVAILABLE') {
        logger.warn('request refused', { path: req.url?.split('?')[0], reason: error.message });
        if (res.headersSent) res.destroy();
        else {
          res.setHeader('retry-after', '5');
          sendError(res, 503, 'ServiceUnavailable', error.message);
        }
        return;
      }
      logger.error('request failed', {
        method: req.method,
        path: req.url?.split('?')[0],
        error: describeError(error),
      });
      if (!res.headersSent) sendError(res, 500, 'ServerError', 'internal error');
      else res.destroy();
    });
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    req.socket.setTimeout(0);
    socket.on('error', (error) => logger.debug('upgrade socket error', { error: error.message }));
    try {
      const path = parseRequestPath(req.url);
      if ('problem' in path) return refuseUpgrade(socket, 400, 'ArgumentInvalid', path.problem);
      const route = options.upgrades.match(req.method ?? 'GET', path.segments);
      if (route) return route.handler(req, socket, head, route.params);
      refuseUpgrade(socket, 404, 'NotFound', 'no such WebSocket endpoint');
    } catch (error) {
      // A bug or a registry failure must cost one connection, not the hub.
      logger.error('upgrade failed', { path: req.url?.split('?')[0], error: describeError(error) });
      refuseUpgrade(socket, 500, 'ServerError', 'internal error');
    }
  });

  server.on('clientError', (error, socket) => {
    logger.debug('bad client request', { error: error.message });
    if (socket.writable) {
      closeSoon(socket);
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    } else socket.destroy();
  });
  // With a listener here Node leaves the socket to us: a failed or timed-out handshake
  // (slow or half-open client) must be destroyed, or it stays open.
  server.on('tlsClientError', (error: Error, socket: Duplex) => {
    logger.debug('TLS handshake failed', { error: error.message });
    socket.destroy();
  });
  return server;
}
