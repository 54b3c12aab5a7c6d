import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Guard } from '../admission/guard.js';
import { sendError, sendJson } from '../base/http-util.js';
import type { AuditQuery, AuditTrail } from '../store/audit-trail.js';

/** Records per page of `GET /audit` unless `limit` says otherwise, and at most. */
export const auditPageSize = { default: 100, max: 500 } as const;

type Parsed = { readonly query: AuditQuery } | { readonly problem: string };

function time(value: string | null, name: string): number | undefined | { problem: string } {
  if (value === null || value === '') return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? { problem: `${name} must be an ISO 8601 time` } : ms;
}

/** The query string of `GET /audit`, checked. */
export function parseAuditQuery(search: URLSearchParams): Parsed {
  const since = time(search.get('since'), 'since');
  const until = time(search.get('until'), 'until');
  if (typeof since === 'object') return since;
  if (typeof until === 'object') return until;
  const limitText = search.get('limit');
  const limit = limitText === null ? auditPageSize.default : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > auditPageSize.max)
    return { problem: `limit must be a whole number from 1 to ${auditPageSize.max}` };
  const beforeText = search.get('before');
  const before = beforeText === null ? undefined : Number(beforeText);
  if (before !== undefined && (!Number.isInteger(before) || before < 1))
    return { problem: "before must be a page's next cursor (a positive whole number)" };
  const text = (name: string): string | undefined => {
    const value = search.get(name);
    return value === null || value === '' ? undefined : value;
  };
  return {
    query: { device: text('deviceId'), outcome: text('outcome'), since, until, before, limit },
  };
}

/**
 * GET /audit (RegistryRead): the newest audit records this hub keeps, newest first, filtered
 * by `deviceId`, `outcome`, `since` and `until`, a page of `limit`; `next` names the cursor
 * (`before`) of the next, older page.
 */
export function handleAuditApi(
  ctx: { readonly guard: Guard; readonly trail: AuditTrail },
  req: IncomingMessage,
  res: ServerResponse,
): void {
  if (req.method !== 'GET')
    return sendError(res, 405, 'MethodNotAllowed', `${req.method} is not supported on /audit`);
  if (!ctx.guard.serviceOrRefuse(req, res, 'RegistryRead', 'audit')) return;
  const parsed = parseAuditQuery(new URL(req.url ?? '/', 'http://x').searchParams);
  if ('problem' in parsed) return sendError(res, 400, 'ArgumentInvalid', parsed.problem);
  const page = ctx.trail.query(parsed.query);
  sendJson(res, 200, {
    records: page.records.map((entry) => ({ seq: entry.seq, ...entry.record })),
    next: page.next ?? null,
  });
}
