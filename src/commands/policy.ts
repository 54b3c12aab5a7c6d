import type { Command } from 'commander';
import { DstreamError } from '../errors.js';
import { allRights, type Right } from '../protocol/rights.js';
import { PolicyClient } from '../service/policy-client.js';
import {
  serviceAccess,
  withCredentialOptions,
  type CommandContext,
  type CredentialFlags,
} from './common.js';

interface PolicyFlags extends CredentialFlags {
  readonly json?: boolean;
  readonly rights?: string;
  readonly rotateKey?: boolean;
}

function client(flags: PolicyFlags, ctx: CommandContext): PolicyClient {
  const { credential, target } = serviceAccess(flags, ctx);
  return new PolicyClient(credential, target);
}

function parseRights(text: string | undefined): Right[] {
  const rights = (text ?? '')
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  const bad = rights.filter((r) => !(allRights as readonly string[]).includes(r));
  if (rights.length === 0 || bad.length > 0)
    throw new DstreamError(
      'ERR_USAGE',
      `--rights: expected a comma-separated list of ${allRights.join(', ')}${bad.length ? `; not ${bad.join(', ')}` : ''}`,
    );
  return rights as Right[];
}

export function registerPolicyCommands(program: Command, ctx: CommandContext): void {
  const policy = program
    .command('policy')
    .description('manage shared access policies: service credentials with limited rights')
    .addHelpText(
      'after',
      '\nExample:\n  dstream policy add support --rights ServiceConnect > support.cs',
    );
  const common = (cmd: Command): Command => withCredentialOptions(cmd, 'service');

  common(policy.command('add <name>'))
    .description('create a policy and print its connection string on stdout')
    .requiredOption('--rights <list>', `comma-separated: ${allRights.join(', ')}`)
    .addHelpText('after', '\nExample:\n  dstream policy add viewer --rights RegistryRead')
    .action(async (name: string, flags: PolicyFlags) => {
      const rights = parseRights(flags.rights);
      const info = await client(flags, ctx).add(name, rights);
      ctx.stdout(`${info.connectionString ?? ''}\n`);
    });

  common(policy.command('update <name>'))
    .description(
      "change a policy's rights or key and print its connection string on stdout (old strings stop working with --rotate-key)",
    )
    .option('--rights <list>', `the new rights, comma-separated: ${allRights.join(', ')}`)
    .option('--rotate-key', 'give the policy a new key')
    .addHelpText(
      'after',
      '\nExample:\n  dstream policy update support --rights ServiceConnect,RegistryRead',
    )
    .action(async (name: string, flags: PolicyFlags) => {
      if (flags.rights === undefined && !flags.rotateKey)
        throw new DstreamError('ERR_USAGE', 'policy update needs --rights, --rotate-key or both');
      const info = await client(flags, ctx).update(name, {
        ...(flags.rights !== undefined && { rights: parseRights(flags.rights) }),
        ...(flags.rotateKey && { regenerateKey: true }),
      });
      ctx.stdout(`${info.connectionString ?? ''}\n`);
    });

  common(policy.command('list'))
    .description('list policies and their rights')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  dstream policy list')
    .action(async (flags: PolicyFlags) => {
      const policies = await client(flags, ctx).list();
      if (flags.json) return ctx.stdout(JSON.stringify(policies, null, 2) + '\n');
      const width = Math.max(6, ...policies.map((p) => p.name.length));
      ctx.stdout(
        [
          `${'POLICY'.padEnd(width)}  RIGHTS`,
          ...policies.map((p) => `${p.name.padEnd(width)}  ${p.rights.join(',')}`),
        ].join('\n') + '\n',
      );
    });

  common(policy.command('remove <name>'))
    .description('delete a policy; its connection strings stop working at once')
    .addHelpText('after', '\nExample:\n  dstream policy remove viewer')
    .action(async (name: string, flags: PolicyFlags) => {
      await client(flags, ctx).remove(name);
      ctx.stdout(`removed ${name}\n`);
    });
}
