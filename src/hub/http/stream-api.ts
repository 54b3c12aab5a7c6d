import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../log/logger.js';
import type { Guard } from '../admission/guard.js';
import { remoteOf, sendError, sendJson } from '../base/http-util.js';
import { auditEvent, type AuditLog } from '../store/audit-log.js';
import type { OpenStream, StreamEndpoint } from '../streams/stream-endpoint.js';
import type { HubCluster } from '../cluster/hub-cluster.js';
import type { NodeView } from '../cluster/cluster-view.js';

export interface StreamApiContext {
  readonly streams: StreamEndpoint;
  readonly guard: Guard;
  readonly audit: AuditLog;
  readonly logger: Logger;
  /** In a cluster: the other nodes' streams are listed and ended too. */
  readonly cluster: HubCluster | undefined;
}

/**
 * The other nodes' views in a cluster; none on a single hub, or when Redis cannot be asked
 * (then this node's own answer is the best there is).
 */
export async function otherNodes(
  cluster: HubCluster | undefined,
  logger: Logger,
): Promise<NodeView[]> {
  if (!cluster) return [];
  try {
    return await cluster.otherViews();
  } catch (error) {
    logger.debug('cannot read the other nodes; answering for this one', {
      error: (error as Error).message,
    });
    return [];
  }
}

/** Every open stream in the hub (every node of a cluster), with the node that holds it. */
async function allStreams(
  ctx: StreamApiContext,
): Promise<{ readonly stream: OpenStream; readonly node: string | undefined }[]> {
  const here = ctx.cluster?.nodeId;
  const streams = ctx.streams.list().map((stream) => ({ stream, node: here }));
  for (const view of await otherNodes(ctx.cluster, ctx.logger))
    for (const stream of view.streams) streams.push({ stream, node: view.node });
  return streams;
}

/** The JSON shape of an open stream (`GET /streams`): times as ISO strings. */
export function openStreamJson(
  stream: OpenStream,
  node: string | undefined,
  now = Date.now(),
): Record<string, unknown> {
  return {
    id: stream.id,
    node: node ?? null,
    deviceId: stream.deviceId,
    streamName: stream.name,
    policy: stream.policy ?? null,
    remote: stream.remote ?? null,
    state: stream.state,
    resumable: stream.resumable,
    resumptions: stream.resumptions,
    since: new Date(stream.since).toISOString(),
    ageMs: Math.max(0, now - stream.since),
    bytesToDevice: stream.bytesToDevice,
    bytesFromDevice: stream.bytesFromDevice,
  };
}

/**
 * GET /streams (RegistryRead): every stream not yet finished on this hub, optionally of one
 * device (`?deviceId=`). DELETE /streams/{id} (RegistryWrite): end one; both its ends see it
 * reset (close 4001, not resumed) and the audit log names the policy that ended it.
 */
export async function handleStreamApi(
  ctx: StreamApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  id: string | undefined,
): Promise<void> {
  const method = req.method ?? 'GET';
  if (id === undefined) {
    if (method !== 'GET')
      return sendError(res, 405, 'MethodNotAllowed', `${method} is not supported on /streams`);
    if (!ctx.guard.serviceOrRefuse(req, res, 'RegistryRead', 'streams')) return;
    const deviceId = new URL(req.url ?? '/', 'http://x').searchParams.get('deviceId');
    const now = Date.now();
    const streams = (await allStreams(ctx))
      .filter((s) => deviceId === null || s.stream.deviceId === deviceId)
      .sort((a, b) => a.stream.since - b.stream.since)
      .map((s) => openStreamJson(s.stream, s.node, now));
    return sendJson(res, 200, streams);
  }
  if (method === 'GET') {
    if (!ctx.guard.serviceOrRefuse(req, res, 'RegistryRead', 'streams')) return;
    const found = (await allStreams(ctx)).find((s) => s.stream.id === id);
    if (!found) return sendError(res, 404, 'StreamNotFound', 'no such open stream');
    return sendJson(res, 200, openStreamJson(found.stream, found.node));
  }
  if (method !== 'DELETE')
    return sendError(res, 405, 'MethodNotAllowed', `${method} is not supported on /streams/{id}`);
  const caller = ctx.guard.serviceOrRefuse(req, res, 'RegistryWrite', 'streams');
  if (!caller) return;
  const reason = `ended by policy '${caller.name}'`;
  const ended = ctx.streams.isLocal(id)
    ? ctx.streams.terminate(id, reason)
    : await endElsewhere(ctx, id, reason);
  if (!ended) return sendError(res, 404, 'StreamNotFound', 'no such open stream');
  ctx.audit.write(
    auditEvent({
      policy: caller.name,
      device: ended.deviceId,
      stream: ended.name,
      outcome: 'stream-ended',
      reason: `${reason} (stream ${ended.id})`,
      remote: remoteOf(req),
    }),
  );
  ctx.logger.info('stream ended by an operator', {
    device: ended.deviceId,
    stream: ended.name,
    id: ended.id,
    policy: caller.name,
  });
  res.writeHead(204, { 'cache-control': 'no-store' }).end();
}

/**
 * In a cluster, end a stream another node holds (its id names the node): found in that node's
 * view, then ended there. Undefined if no node has it.
 */
async function endElsewhere(
  ctx: StreamApiContext,
  id: string,
  reason: string,
): Promise<OpenStream | undefined> {
  const nodeId = id.slice(0, Math.max(0, id.indexOf('.')));
  const view = (await otherNodes(ctx.cluster, ctx.logger)).find((v) => v.node === nodeId);
  const stream = view?.streams.find((s) => s.id === id);
  if (!ctx.cluster || !stream) return undefined;
  return (await ctx.cluster.endStreamOn(nodeId, id, reason)) ? stream : undefined;
}
