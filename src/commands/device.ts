import type { Command } from 'commander';
import { formatDeviceConnectionString, parseConnectionString } from '../auth/connection-string.js';
import { DstreamError } from '../errors.js';
import { withSpinner } from '../log/spinner.js';
import { deviceIdProblem } from '../protocol/identifiers.js';
import { RegistryClient, type DeviceInfo } from '../service/registry-client.js';
import {
  serviceAccess,
  withCredentialOptions,
  type CommandContext,
  type CredentialFlags,
} from './common.js';
import { agentInstallLines } from './agent-install.js';
import { formatTable } from './table.js';

interface DeviceFlags extends CredentialFlags {
  readonly json?: boolean;
  readonly quiet?: boolean;
  /** Strings for devices on Azure's SDKs: without dstream's CertificateFingerprint. */
  readonly azure?: boolean;
}

/**
 * A device string as Azure's device SDKs take it: they do not know CertificateFingerprint
 * (the C SDK logs "Unknown token" for it at every start) and verify the hub by CA instead.
 */
function forAzure(cs: string | undefined, ctx: CommandContext): string {
  const parsed = parseConnectionString(cs ?? '');
  if (parsed.kind !== 'device')
    throw new DstreamError(
      'ERR_HUB_RESPONSE',
      'the hub answered without a device connection string',
    );
  if (parsed.hub.fingerprint !== undefined)
    ctx.stderr(
      "warning: this hub's certificate is self-signed: a device on Azure's SDKs verifies the hub by CA, so give it the hub's tls/cert.pem as a trusted certificate (C SDK: OPTION_TRUSTED_CERT), or serve a CA-issued --tls-cert (docs/azure.md)\n",
    );
  return formatDeviceConnectionString(
    { ...parsed.hub, fingerprint: undefined },
    parsed.deviceId,
    parsed.sharedAccessKey,
  );
}

const azureOption = '--azure';
const azureHelp =
  "for a device on Azure's SDKs: the string without dstream's CertificateFingerprint";

function client(flags: DeviceFlags, ctx: CommandContext): RegistryClient {
  const { credential, target } = serviceAccess(flags, ctx);
  return new RegistryClient(credential, target);
}

function checkId(id: string): string {
  const problem = deviceIdProblem(id);
  if (problem) throw new DstreamError('ERR_USAGE', problem);
  return id;
}

function spin<T>(
  flags: DeviceFlags,
  ctx: CommandContext,
  text: string,
  task: () => Promise<T>,
): Promise<T> {
  return withSpinner(text, ctx.stderrIsTty && !flags.quiet && !flags.json, task);
}

function table(devices: readonly DeviceInfo[]): string {
  const rows = [
    ['DEVICE', 'STATUS', 'CONNECTION', 'LAST SEEN'],
    ...devices.map((d) => [
      d.deviceId,
      d.status,
      d.connectionState === 'Connected' ? 'online' : 'offline',
      d.lastActivityTime ?? 'never',
    ]),
  ];
  return formatTable(rows);
}

function details(d: DeviceInfo): string {
  return (
    [
      `deviceId:          ${d.deviceId}`,
      `status:            ${d.status}`,
      `connection:        ${d.connectionState === 'Connected' ? 'online' : 'offline'}`,
      `created:           ${d.createdTime}`,
      `last seen:         ${d.lastActivityTime ?? 'never'}`,
      `connection string: ${d.connectionString ?? ''}`,
      `secondary string:  ${d.secondaryConnectionString ?? ''}`,
    ].join('\n') + '\n'
  );
}

export function registerDeviceCommands(program: Command, ctx: CommandContext): void {
  const device = program
    .command('device')
    .description("manage the hub's device registry (needs the service connection string)")
    .addHelpText('after', '\nExample:\n  dstream device add pi-01 > pi-01.connection-string');
  const common = (cmd: Command): Command =>
    withCredentialOptions(cmd, 'service').option(
      '-q, --quiet',
      'no spinner (and for add, no install lines)',
    );

  common(device.command('add <id>'))
    .description('register a device and print its connection string on stdout')
    .option(azureOption, azureHelp)
    .addHelpText('after', '\nExample:\n  dstream device add pi-01')
    .action(async (id: string, flags: DeviceFlags) => {
      const info = await spin(flags, ctx, `adding ${id}`, () =>
        client(flags, ctx).add(checkId(id)),
      );
      ctx.stdout(
        `${flags.azure ? forAzure(info.connectionString, ctx) : (info.connectionString ?? '')}\n`,
      );
      if (flags.quiet || flags.azure) return;
      // How the device gets its agent: from this hub, over the TLS it will use (stderr, so
      // stdout stays the string alone). The device is added either way.
      const { target, caFile } = serviceAccess(flags, ctx);
      const lines = await agentInstallLines(target, id, caFile).catch(() => undefined);
      if (lines) ctx.stderr(lines);
    });

  common(device.command('list'))
    .description('list registered devices, online or offline, and when each was last seen')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  dstream device list --json')
    .action(async (flags: DeviceFlags) => {
      const devices = await spin(flags, ctx, 'listing devices', () => client(flags, ctx).list());
      ctx.stdout(flags.json ? JSON.stringify(devices, null, 2) + '\n' : table(devices));
    });

  common(device.command('show <id>'))
    .description('show one device, with its connection string')
    .option('--json', 'print JSON')
    .option(azureOption, `${azureHelp} (printed alone)`)
    .addHelpText('after', '\nExample:\n  dstream device show pi-01')
    .action(async (id: string, flags: DeviceFlags) => {
      const info = await spin(flags, ctx, `reading ${id}`, () =>
        client(flags, ctx).show(checkId(id)),
      );
      if (flags.azure) ctx.stdout(`${forAzure(info.connectionString, ctx)}\n`);
      else ctx.stdout(flags.json ? JSON.stringify(info, null, 2) + '\n' : details(info));
    });

  common(device.command('remove <id>'))
    .description('delete a device; it is disconnected at once')
    .addHelpText('after', '\nExample:\n  dstream device remove pi-01')
    .action(async (id: string, flags: DeviceFlags) => {
      await spin(flags, ctx, `removing ${id}`, () => client(flags, ctx).remove(checkId(id)));
      ctx.stdout(`removed ${id}\n`);
    });

  common(device.command('rotate-key <id>'))
    .description(
      'replace the primary (or --secondary) key and print the connection string with the new key',
    )
    .option('--secondary', 'replace the secondary key instead of the primary')
    .addHelpText(
      'after',
      '\nRotation without downtime: move the device to its secondary string (`device show`),\n' +
        'then `rotate-key` the primary and move the device to the new string.\n\nExample:\n  dstream device rotate-key pi-01 > pi-01.cs',
    )
    .action(async (id: string, flags: DeviceFlags & { secondary?: boolean }) => {
      const which = flags.secondary ? 'secondary' : 'primary';
      const info = await spin(flags, ctx, `rotating the ${which} key of ${id}`, () =>
        client(flags, ctx).regenerateKey(checkId(id), which),
      );
      ctx.stdout(
        `${(which === 'primary' ? info.connectionString : info.secondaryConnectionString) ?? ''}\n`,
      );
    });

  for (const status of ['enable', 'disable'] as const) {
    common(device.command(`${status} <id>`))
      .description(
        status === 'enable'
          ? 'allow a device to connect again'
          : 'refuse a device (disconnects it and its streams)',
      )
      .addHelpText('after', `\nExample:\n  dstream device ${status} pi-01`)
      .action(async (id: string, flags: DeviceFlags) => {
        await spin(flags, ctx, `${status.slice(0, -1)}ing ${id}`, () =>
          client(flags, ctx).setStatus(checkId(id), status === 'enable' ? 'enabled' : 'disabled'),
        );
        ctx.stdout(`${status}d ${id}\n`);
      });
  }
}
