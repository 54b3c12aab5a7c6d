import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { makeTempDir } from './hub.js';
import { startServer, type TestServer } from './servers.js';

const sshdCandidates = ['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/usr/bin/sshd'];

/** Where OpenSSH's sshd is, if installed. ssh, scp and ssh-keygen must be on PATH too. */
export function findOpenSsh(): { sshd: string } | undefined {
  const sshd = sshdCandidates.find((p) => existsSync(p));
  const tools = ['ssh', 'scp', 'ssh-keygen'].every(
    (t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0,
  );
  return sshd && tools ? { sshd } : undefined;
}

/** True when `nc` is OpenBSD netcat, which speaks SOCKS5 as a client (`nc -X 5 -x proxy`). */
export function hasSocksNetcat(): boolean {
  const r = spawnSync('nc', ['-h'], { encoding: 'utf8' });
  return r.error === undefined && /-X proxy_protocol/.test(`${r.stdout}${r.stderr}`);
}

export interface TestSshd extends TestServer {
  readonly user: string;
  readonly clientKey: string;
  /** Common ssh/scp options for this server. */
  readonly sshOptions: readonly string[];
}

/**
 * A real OpenSSH server on 127.0.0.1, port 0: a Node listener that hands every accepted
 * connection to `sshd -i` (inetd mode) on its stdin/stdout. This way the port is bound by
 * the OS and read back, never guessed. Host and client keys are made fresh in `dir`.
 */
export async function startSshd(sshd: string, dir: string): Promise<TestSshd> {
  const user = userInfo().username;
  const keygen = (file: string): void => {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]);
    if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
  };
  keygen(join(dir, 'host_key'));
  keygen(join(dir, 'client_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
  chmodSync(join(dir, 'authorized_keys'), 0o600);
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `HostKey ${join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      // bash sources ~/.bashrc for a command run over ssh only at shell level 1: from 2 on
      // it does not. The tests check ssh's and dstream's own stderr, which the user's start-up
      // files (this machine's runs `pyenv init`, whose rehash races between two sessions and
      // complains) must not add to.
      'SetEnv SHLVL=1',
      '',
    ].join('\n'),
  );
  // sshd refuses to start without its privilege separation directory.
  if (process.getuid?.() === 0 && !existsSync('/run/sshd'))
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const server = await startServer((socket) => {
    const child = spawn(sshd, ['-i', '-f', config, '-e'], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stderr.resume();
    child.on('error', () => socket.destroy());
    socket.pipe(child.stdin);
    child.stdout.pipe(socket);
    child.stdin.on('error', () => undefined);
    socket.on('close', () => child.kill());
    child.on('exit', () => socket.end());
  });
  return {
    ...server,
    user,
    clientKey: join(dir, 'client_key'),
    sshOptions: [
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
      'ConnectTimeout=20',
    ],
  };
}

/** startSshd in a fresh temporary directory; `dispose` stops it and removes the directory. */
export async function startTempSshd(
  sshd: string,
  prefix: string,
): Promise<{ sshd: TestSshd; dir: string; dispose: () => Promise<void> }> {
  const dir = makeTempDir(prefix);
  mkdirSync(join(dir, 'ssh'));
  const server = await startSshd(sshd, join(dir, 'ssh')).catch((error: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  return {
    sshd: server,
    dir,
    dispose: async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A remote command whose output streams for two seconds and more (40 batches of 10,000
 * numbers, 50 ms apart: about 2.7 MB), and exactly what it prints.
 */
export function numberedOutput(): { command: string; expected: string } {
  let expected = '';
  for (let i = 0; i < 400_000; i++) expected += `${i}\n`;
  return {
    command: 'for i in $(seq 0 39); do seq $((i*10000)) $((i*10000+9999)); sleep 0.05; done',
    expected,
  };
}
