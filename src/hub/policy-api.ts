import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatServiceConnectionString, type HubAddress } from '../auth/connection-string.js';
import type { Logger } from '../log/logger.js';
import type { Guard } from './guard.js';
import { readBodyField, sendError, sendJson } from './http-util.js';
import {
  allRights,
  AlreadyExistsError,
  type PolicyRecord,
  type Registry,
  type Right,
} from './registry.js';

export interface PolicyApiContext {
  readonly registry: Registry;
  readonly hubAddress: HubAddress;
  readonly logger: Logger;
  readonly guard: Guard;
}

const policyName = /^[A-Za-z0-9\-._]{1,64}$/;

function policyJson(
  ctx: PolicyApiContext,
  p: PolicyRecord,
  withSecrets: boolean,
): Record<string, unknown> {
  return {
    name: p.name,
    rights: p.rights,
    ...(withSecrets
      ? {
          key: p.key,
          connectionString: formatServiceConnectionString(ctx.hubAddress, p.name, p.key),
        }
      : {}),
  };
}

/**
 * Shared access policies: GET /policies, PUT /policies/{name} {"rights": [...]},
 * DELETE /policies/{name}. Needs RegistryWrite (RegistryRead to list). A policy can only
 * create policies with rights it holds itself, and cannot delete itself.
 */
export async function handlePolicyApi(
  ctx: PolicyApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  name: string | undefined,
): Promise<void> {
  const method = req.method ?? 'GET';
  const caller = ctx.guard.serviceOrRefuse(
    req,
    res,
    method === 'GET' ? 'RegistryRead' : 'RegistryWrite',
    'policy',
  );
  if (!caller) return;
  if (name === undefined) {
    if (method !== 'GET')
      return sendError(res, 405, 'MethodNotAllowed', `${method} is not supported on /policies`);
    return sendJson(
      res,
      200,
      ctx.registry.listPolicies().map((p) => policyJson(ctx, p, false)),
    );
  }
  if (!policyName.test(name))
    return sendError(
      res,
      400,
      'ArgumentInvalid',
      'a policy name is 1-64 letters, digits, -, . or _',
    );
  switch (method) {
    case 'PUT': {
      const rightsField = await readBodyField(req, res, 'rights');
      if (!rightsField) return;
      const rights = rightsField.value;
      if (
        !Array.isArray(rights) ||
        rights.length === 0 ||
        !rights.every(
          (r): r is Right => typeof r === 'string' && (allRights as readonly string[]).includes(r),
        )
      )
        return sendError(
          res,
          400,
          'ArgumentInvalid',
          `rights must be a non-empty list of ${allRights.join(', ')}`,
        );
      const beyond = rights.filter((r) => !caller.rights.includes(r));
      if (beyond.length > 0)
        return sendError(
          res,
          403,
          'IotHubUnauthorizedAccess',
          `policy '${caller.name}' cannot grant ${beyond.join(', ')}, which it lacks`,
        );
      try {
        const created = await ctx.registry.addPolicy(name, [...new Set(rights)]);
        ctx.logger.info('policy added', {
          name,
          rights: created.rights.join(','),
          by: caller.name,
        });
        return sendJson(res, 200, policyJson(ctx, created, true));
      } catch (error) {
        if (error instanceof AlreadyExistsError)
          return sendError(res, 409, 'PolicyAlreadyExists', `policy '${name}' already exists`);
        throw error;
      }
    }
    case 'DELETE': {
      if (name === caller.name)
        return sendError(
          res,
          409,
          'ArgumentInvalid',
          `policy '${name}' cannot remove itself; use another policy`,
        );
      if (!(await ctx.registry.removePolicy(name)))
        return sendError(res, 404, 'PolicyNotFound', `policy '${name}' does not exist`);
      ctx.logger.info('policy removed', { name, by: caller.name });
      res.writeHead(204).end();
      return;
    }
    default:
      return sendError(
        res,
        405,
        'MethodNotAllowed',
        `${method} is not supported on /policies/{name}`,
      );
  }
}
