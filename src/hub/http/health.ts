import type { IncomingMessage, ServerResponse } from 'node:http';
import { isLoopbackAddress, sendError, sendJson } from '../base/http-util.js';
import type { HubMetrics } from '../observe/metrics.js';

/** Who may GET /metrics: loopback clients only (default), anyone, or nobody. */
export type MetricsAccess = 'local' | 'open' | 'off';

/** GET /healthz: the process answers. */
export function handleHealth(_req: IncomingMessage, res: ServerResponse): void {
  sendJson(res, 200, { status: 'ok' });
}

/**
 * GET /readyz: ready to take new streams and devices. False while draining, so a balancer
 * moves on; false while a cluster node is cut off from Redis, where local devices still work
 * but new ones should go to a node that can register them and route to them.
 */
export function handleReadiness(
  res: ServerResponse,
  state: { readonly draining: boolean; readonly clusterReady: boolean },
): void {
  if (state.draining) return sendJson(res, 503, { status: 'draining' });
  if (!state.clusterReady) return sendJson(res, 503, { status: 'redis-unreachable' });
  sendJson(res, 200, { status: 'ready' });
}

/** GET /metrics in Prometheus' text format, to whom `access` allows. */
export async function handleMetrics(
  req: IncomingMessage,
  res: ServerResponse,
  metrics: HubMetrics,
  access: MetricsAccess,
): Promise<void> {
  if (access === 'local' && !isLoopbackAddress(req.socket.remoteAddress))
    return sendError(
      res,
      403,
      'Forbidden',
      'metrics are served to loopback clients only (start the hub with --metrics open)',
    );
  const text = await metrics.render();
  res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
  res.end(text);
}
