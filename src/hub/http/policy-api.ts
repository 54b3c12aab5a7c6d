import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatServiceConnectionString, type HubAddress } from '../../auth/connection-string.js';
import type { Logger } from '../../log/logger.js';
import type { Guard } from '../admission/guard.js';
import { BodyError, readBodyField, readJsonBody, sendError, sendJson } from '../base/http-util.js';
import {
  allRights,
  AlreadyExistsError,
  type PolicyRecord,
  type Registry,
  type Right,
} from '../store/registry.js';

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

/** The rights in `rights` that `holder` lacks. */
function beyond(holder: PolicyRecord, rights: readonly Right[]): Right[] {
  return rights.filter((r) => !holder.rights.includes(r));
}

function parseRights(value: unknown): Right[] | undefined {
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    !value.every(
      (r): r is Right => typeof r === 'string' && (allRights as readonly string[]).includes(r),
    )
  )
    return undefined;
  return [...new Set(value)];
}

/** After this change, would any policy still be able to manage policies? */
function keepsAManager(registry: Registry, name: string, rights: readonly Right[] | null): boolean {
  return registry
    .listPolicies()
    .some((p) => (p.name === name ? (rights ?? []) : p.rights).includes('PolicyWrite'));
}

/**
 * Shared access policies: GET /policies, PUT /policies/{name} {"rights": [...]} (create),
 * PATCH /policies/{name} {"rights"?: [...], "regenerateKey"?: true} (change), DELETE
 * /policies/{name}. Every one needs PolicyWrite. A policy can create, change or remove only
 * policies whose rights (before and after) it holds itself, cannot remove itself, and the
 * last policy holding PolicyWrite can be neither removed nor stripped of it: IoT Hub keeps
 * policy management out of the data plane altogether, and a registry-write credential must
 * not be able to mint or delete an all-rights one.
 */
export async function handlePolicyApi(
  ctx: PolicyApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  name: string | undefined,
): Promise<void> {
  const method = req.method ?? 'GET';
  const caller = ctx.guard.serviceOrRefuse(req, res, 'PolicyWrite', 'policy');
  if (!caller) return;
  const forbidden = (message: string): void =>
    sendError(res, 403, 'IotHubUnauthorizedAccess', message);
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
  const badRights = `rights must be a non-empty list of ${allRights.join(', ')}`;
  switch (method) {
    case 'PUT': {
      const rightsField = await readBodyField(req, res, 'rights');
      if (!rightsField) return;
      const rights = parseRights(rightsField.value);
      if (!rights) return sendError(res, 400, 'ArgumentInvalid', badRights);
      const lacking = beyond(caller, rights);
      if (lacking.length > 0)
        return forbidden(
          `policy '${caller.name}' cannot grant ${lacking.join(', ')}, which it lacks`,
        );
      try {
        const created = await ctx.registry.addPolicy(name, rights);
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
    case 'PATCH': {
      let body: unknown;
      try {
        body = await readJsonBody(req);
      } catch (error) {
        if (!(error instanceof BodyError)) throw error;
        return sendError(res, error.status, 'ArgumentInvalid', error.message);
      }
      const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<
        string,
        unknown
      >;
      const rights = fields.rights === undefined ? undefined : parseRights(fields.rights);
      const regenerateKey = fields.regenerateKey === true;
      if (rights === undefined && fields.rights !== undefined)
        return sendError(res, 400, 'ArgumentInvalid', badRights);
      if (rights === undefined && !regenerateKey)
        return sendError(
          res,
          400,
          'ArgumentInvalid',
          'the body must change something: {"rights": [...]} and/or {"regenerateKey": true}',
        );
      const target = ctx.registry.getPolicy(name);
      if (!target) return sendError(res, 404, 'PolicyNotFound', `policy '${name}' does not exist`);
      const lacking = beyond(caller, [...target.rights, ...(rights ?? [])]);
      if (lacking.length > 0)
        return forbidden(
          `policy '${caller.name}' cannot change policy '${name}': it lacks ${[...new Set(lacking)].join(', ')}`,
        );
      if (rights && !keepsAManager(ctx.registry, name, rights))
        return sendError(
          res,
          409,
          'ArgumentInvalid',
          `policy '${name}' is the last one holding PolicyWrite; grant it to another policy first`,
        );
      const changed = await ctx.registry.updatePolicy(name, { rights, regenerateKey });
      if (!changed) return sendError(res, 404, 'PolicyNotFound', `policy '${name}' does not exist`);
      ctx.logger.info('policy changed', {
        name,
        rights: changed.rights.join(','),
        newKey: regenerateKey,
        by: caller.name,
      });
      return sendJson(res, 200, policyJson(ctx, changed, true));
    }
    case 'DELETE': {
      if (name === caller.name)
        return sendError(
          res,
          409,
          'ArgumentInvalid',
          `policy '${name}' cannot remove itself; use another policy`,
        );
      const target = ctx.registry.getPolicy(name);
      if (!target) return sendError(res, 404, 'PolicyNotFound', `policy '${name}' does not exist`);
      const lacking = beyond(caller, target.rights);
      if (lacking.length > 0)
        return forbidden(
          `policy '${caller.name}' cannot remove policy '${name}': it lacks ${lacking.join(', ')}`,
        );
      if (!keepsAManager(ctx.registry, name, null))
        return sendError(
          res,
          409,
          'ArgumentInvalid',
          `policy '${name}' is the last one holding PolicyWrite`,
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
