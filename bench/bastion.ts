import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { spawnChild, type Child } from './child.js';
import { freePort, waitListening } from './scenarios/compare.js';
import type { Targets } from './stack.js';

/**
 * An OpenSSH bastion as people build one today: a real sshd on loopback, the "device" holding
 * `ssh -N -R` to it for each target, the "laptop" holding `ssh -N -L` through it. Every new
 * TCP connection to a local port becomes a channel in the laptop's SSH connection, then in the
 * device's: OpenSSH's multiplexing, beside dstream's.
 */
export interface Bastion {
  /** Local (laptop) port for each target. */
  readonly ports: Readonly<Record<keyof Targets, number>>;
  stop(): Promise<void>;
}

const sshdPaths = ['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/usr/bin/sshd'];

export async function startBastion(targets: Targets): Promise<Bastion> {
  const sshd = sshdPaths.find((p) => existsSync(p));
  if (!sshd)
    throw new Error(
      `OpenSSH's sshd is not installed (looked in ${sshdPaths.join(', ')}): apt-get install openssh-server`,
    );
  const dir = mkdtempSync(join(tmpdir(), 'dstream-bastion-'));
  const children: Child[] = [];
  const stop = async (): Promise<void> => {
    for (const c of children.reverse()) await c.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const name of ['host_key', 'client_key']) {
      const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, name)]);
      if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
    }
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
    chmodSync(join(dir, 'authorized_keys'), 0o600);
    const sshPort = await freePort();
    const config = join(dir, 'sshd_config');
    writeFileSync(
      config,
      [
        `HostKey ${join(dir, 'host_key')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'ListenAddress 127.0.0.1',
        `Port ${sshPort}`,
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'PermitRootLogin prohibit-password',
        'AllowTcpForwarding yes',
        'GatewayPorts no',
        'LogLevel ERROR',
        `PidFile ${join(dir, 'sshd.pid')}`,
        '',
      ].join('\n'),
    );
    // sshd refuses to start without its privilege separation directory.
    if (process.getuid?.() === 0 && !existsSync('/run/sshd'))
      mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const daemon = spawnChild(sshd, ['-D', '-e', '-f', config]);
    children.push(daemon);
    await waitListening(sshPort, daemon, 'sshd');
    const ssh = [
      '-N',
      '-p',
      String(sshPort),
      '-i',
      join(dir, 'client_key'),
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'LogLevel=ERROR',
      '-o',
      'ExitOnForwardFailure=yes',
    ];
    const login = `${userInfo().username}@127.0.0.1`;
    const names = Object.keys(targets) as (keyof Targets)[];
    const remote = {} as Record<keyof Targets, number>;
    const local = {} as Record<keyof Targets, number>;
    for (const n of names) {
      remote[n] = await freePort();
      local[n] = await freePort();
    }
    const device = spawnChild('ssh', [
      ...ssh,
      ...names.flatMap((n) => ['-R', `127.0.0.1:${remote[n]}:127.0.0.1:${targets[n].port}`]),
      login,
    ]);
    children.push(device);
    for (const n of names) await waitListening(remote[n], device, `ssh -R (${n})`);
    const laptop = spawnChild('ssh', [
      ...ssh,
      ...names.flatMap((n) => ['-L', `127.0.0.1:${local[n]}:127.0.0.1:${remote[n]}`]),
      login,
    ]);
    children.push(laptop);
    for (const n of names) await waitListening(local[n], laptop, `ssh -L (${n})`);
    return { ports: local, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
