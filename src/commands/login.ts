import type { Command } from 'commander';
import { resolve } from 'node:path';
import {
  formatHostPort,
  parseConnectionString,
  type ConnectionString,
} from '../auth/connection-string.js';
import { DstreamError, describeError, isDstreamError } from '../errors.js';
import { defaultProfileName, profileNameProblem, type Profile } from '../config/profile-store.js';
import { withSpinner } from '../log/spinner.js';
import { checkHubHealth } from '../service/hub-api.js';
import { hubTarget } from '../service/credentials.js';
import { existingProfiles, openProfiles, readCa, type CommandContext } from './common.js';
import { formatTable } from './table.js';

interface LoginFlags {
  readonly profile?: string;
  readonly ca?: string;
  readonly verify: boolean;
  readonly quiet?: boolean;
}

const maxStdinBytes = 64 * 1024;

/** The whole of stdin as text (a connection string piped in stays out of shell history and ps). */
async function readStdin(ctx: CommandContext): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.stdio.input) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buf.length;
    if (size > maxStdinBytes)
      throw new DstreamError(
        'ERR_CONNECTION_STRING_INVALID',
        'stdin is too long for a connection string',
      );
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8').trim();
}

function profileName(flag: string | undefined): string {
  const name = flag ?? defaultProfileName;
  const problem = profileNameProblem(name);
  if (problem) throw new DstreamError('ERR_USAGE', `--profile: ${problem}`);
  return name;
}

/** "service 'ops' at hub:8443" / "device 'pi-01' at hub:8443". */
function describe(cs: ConnectionString): string {
  const who = cs.kind === 'device' ? cs.deviceId : cs.sharedAccessKeyName;
  return `${cs.kind} '${who}' at ${formatHostPort(cs.hub.host, cs.hub.port)}`;
}

/**
 * `dstream login`: check that the hub in a connection string answers with the certificate the
 * string pins (or one the system trusts), then save the string as a profile. The key itself is
 * checked on first use: proving it would mean connecting as the device, which would replace a
 * running agent, or needing a right the policy may lack.
 */
async function runLogin(
  text: string | undefined,
  flags: LoginFlags,
  ctx: CommandContext,
): Promise<void> {
  const name = profileName(flags.profile);
  const raw = text === undefined || text === '-' ? await readStdin(ctx) : text;
  if (raw === '')
    throw new DstreamError('ERR_CONNECTION_STRING_MISSING', 'no connection string given', {
      hint: 'Pass it as an argument, or pipe it in: dstream login - < pi-01.cs',
    });
  const cs = parseConnectionString(raw);
  const caFile = flags.ca === undefined ? undefined : resolve(flags.ca);
  const ca = readCa(caFile);
  if (flags.verify) {
    const target = hubTarget(cs, ca);
    const where = formatHostPort(cs.hub.host, cs.hub.port);
    try {
      await withSpinner(`checking the hub at ${where}`, ctx.stderrIsTty && !flags.quiet, () =>
        checkHubHealth(target),
      );
    } catch (error) {
      if (!isDstreamError(error)) throw error;
      const hint = `${error.hint ? error.hint + ' ' : ''}Nothing was saved (--no-verify saves anyway).`;
      throw new DstreamError(error.code, error.message, { hint, cause: error });
    }
  }
  const store = openProfiles(ctx);
  const profile: Profile = { connectionString: raw, ...(caFile ? { ca: caFile } : {}) };
  await store.set(name, profile);
  if (!flags.quiet) ctx.stderr(`saved profile '${name}': ${describe(cs)} (in ${store.path})\n`);
}

interface ProfileRow {
  readonly name: string;
  readonly kind: string;
  readonly hub: string;
  readonly identity: string;
  readonly ca: string | null;
}

function rowFor(name: string, profile: Profile): ProfileRow {
  try {
    const cs = parseConnectionString(profile.connectionString);
    return {
      name,
      kind: cs.kind,
      hub: formatHostPort(cs.hub.host, cs.hub.port),
      identity: cs.kind === 'device' ? cs.deviceId : cs.sharedAccessKeyName,
      ca: profile.ca ?? null,
    };
  } catch (error) {
    // A hand-edited file must not make the listing fail; say which entry is broken.
    return { name, kind: 'invalid', hub: '-', identity: describeError(error), ca: null };
  }
}

export function registerLoginCommands(program: Command, ctx: CommandContext): void {
  program
    .command('login [connection-string]')
    .description(
      "save a connection string as a profile (file mode 0600); '-' or none reads it from stdin",
    )
    .option('--profile <name>', 'profile to save it as', defaultProfileName)
    .option(
      '--ca <file>',
      'PEM CA certificate to verify the hub with (path saved with the profile)',
    )
    .option('--no-verify', 'save without checking that the hub answers')
    .option('-q, --quiet', 'no spinner, no confirmation')
    .addHelpText(
      'after',
      '\nExamples:\n  dstream hub init | dstream login\n  dstream login --profile pi-01 - < pi-01.cs\n  dstream proxy --profile prod --device pi-01 --local-port 2222',
    )
    .action((text: string | undefined, flags: LoginFlags) => runLogin(text, flags, ctx));

  program
    .command('logout')
    .description('forget a saved profile')
    .option('--profile <name>', 'profile to forget', defaultProfileName)
    .addHelpText('after', '\nExample:\n  dstream logout --profile prod')
    .action(async (flags: { profile?: string }) => {
      const name = profileName(flags.profile);
      if (!(await existingProfiles(ctx)?.remove(name)))
        throw new DstreamError('ERR_PROFILE_NOT_FOUND', `no saved profile '${name}'`, {
          hint: 'List them with `dstream profiles`.',
        });
      ctx.stderr(`removed profile '${name}'\n`);
    });

  program
    .command('profiles')
    .description('list saved profiles (never their keys)')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  dstream profiles')
    .action((flags: { json?: boolean }) => {
      const rows = Object.entries(existingProfiles(ctx)?.all() ?? {})
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, profile]) => rowFor(name, profile));
      if (flags.json) {
        ctx.stdout(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      if (rows.length === 0) {
        ctx.stderr('no saved profiles; save one with `dstream login <connection-string>`\n');
        return;
      }
      ctx.stdout(
        formatTable([
          ['PROFILE', 'KIND', 'HUB', 'IDENTITY', 'CA'],
          ...rows.map((r) => [r.name, r.kind, r.hub, r.identity, r.ca ?? '-']),
        ]),
      );
    });
}
