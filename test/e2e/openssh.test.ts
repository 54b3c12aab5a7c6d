import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/hub.js';
import {
  cliPath,
  runCli,
  spawnCli,
  startCliHub,
  type CliProcess,
  type CliTunnel,
} from '../helpers/cli.js';
import { findOpenSsh, hasSocksNetcat, startSshd, type TestSshd } from '../helpers/openssh.js';
import { sha256File } from '../helpers/net.js';

const openssh = findOpenSsh();
const socksNetcat = hasSocksNetcat();
// CI sets DSTREAM_REQUIRE_OPENSSH=1: there a missing OpenSSH is a failure, not a skip.
const required = process.env.DSTREAM_REQUIRE_OPENSSH === '1';
const ncRequired = required || process.env.DSTREAM_REQUIRE_SYSTEM_TOOLS === '1';

function run(
  cmd: string,
  args: readonly string[],
  timeoutMs = 120_000,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('OpenSSH through the dstream CLI (hub, agent and proxy as processes)', () => {
  it('OpenSSH is installed where it is required', () => {
    if (required)
      expect(
        openssh,
        'DSTREAM_REQUIRE_OPENSSH=1 but sshd/ssh/scp/ssh-keygen were not found',
      ).toBeDefined();
  });

  it('OpenBSD netcat (nc -X 5) is installed where it is required', () => {
    if (ncRequired)
      expect(
        socksNetcat,
        'DSTREAM_REQUIRE_OPENSSH=1 but nc with -X (netcat-openbsd) was not found',
      ).toBe(true);
  });

  describe.skipIf(!openssh)('with sshd', () => {
    let dir: string;
    let sshd: TestSshd;
    let hub: CliTunnel;
    let agent: CliProcess;
    let proxy: CliProcess;
    let proxyPort: number;
    let socks: CliProcess;
    let socksPort: number;

    beforeAll(async () => {
      dir = makeTempDir('dstream-e2e-');
      mkdirSync(join(dir, 'ssh'));
      sshd = await startSshd(openssh?.sshd ?? '', join(dir, 'ssh'));
      hub = await startCliHub(join(dir, 'hub'));
      const env = { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString };
      const added = await runCli(['device', 'add', 'pi-01'], env);
      expect(added.code).toBe(0);
      agent = spawnCli(['agent', '--port', String(sshd.port)], {
        DSTREAM_DEVICE_CONNECTION_STRING: added.stdout.trim(),
      });
      await agent.waitForLine(/connected to the hub/);
      proxy = spawnCli(
        ['proxy', '--device', 'pi-01', '--local-port', '0', '--remote-port', String(sshd.port)],
        env,
      );
      proxyPort = Number((await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/))[1]);
      socks = spawnCli(['proxy', '--socks', '0'], env);
      socksPort = Number(
        (await socks.waitForLine(/SOCKS5 proxy listening on 127\.0\.0\.1:(\d+)/))[1],
      );
    }, 60_000);

    afterAll(async () => {
      await proxy?.stop();
      await socks?.stop();
      await agent?.stop();
      await hub?.stop();
      await sshd?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('ssh runs a command on the device', async () => {
      const r = await run('ssh', [
        '-p',
        String(proxyPort),
        ...sshd.sshOptions,
        `${sshd.user}@127.0.0.1`,
        'echo hello from $(whoami)',
      ]);
      expect(r.stderr).toBe('');
      expect(r).toMatchObject({ code: 0, stdout: `hello from ${sshd.user}\n` });
    });

    it('scp of a 64 MB file arrives with the same SHA-256', async () => {
      const src = join(dir, 'big.bin');
      const dst = join(dir, 'big.copy');
      writeFileSync(src, randomBytes(64 * 1024 * 1024));
      const r = await run('scp', [
        '-P',
        String(proxyPort),
        ...sshd.sshOptions,
        src,
        `${sshd.user}@127.0.0.1:${dst}`,
      ]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(await sha256File(dst)).toBe(await sha256File(src));
    }, 120_000);

    it('ssh -o ProxyCommand="dstream connect %h" reaches the device without a local port', async () => {
      const proxyCommand = `${process.execPath} ${cliPath} connect %h --remote-port ${sshd.port}`;
      const r = await run(
        'ssh',
        [
          '-o',
          `ProxyCommand=${proxyCommand}`,
          ...sshd.sshOptions,
          `${sshd.user}@pi-01`,
          'echo via ProxyCommand',
        ],
        60_000,
        { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString },
      );
      expect(r.stderr).toBe('');
      expect(r).toMatchObject({ code: 0, stdout: 'via ProxyCommand\n' });
    });

    it('the ~/.ssh/config Host block from docs/operations.md works as written', async () => {
      const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
      const block = /```sshconfig\n# ~\/\.ssh\/config\n([\s\S]*?)```/.exec(doc)?.[1];
      expect(block).toBeDefined();
      // The documented block, with `dstream` spelled as this checkout's CLI and the test
      // server's user and port (docs say `User pi` and the default 22).
      const config = (block ?? '')
        .replace('ProxyCommand dstream ', `ProxyCommand ${process.execPath} ${cliPath} `)
        .replace(/User \S+/, `User ${sshd.user}`)
        .concat(`  Port ${sshd.port}\n`);
      const file = join(dir, 'ssh_config');
      writeFileSync(file, config);
      const r = await run(
        'ssh',
        ['-F', file, ...sshd.sshOptions, 'pi-01', 'echo via ssh_config'],
        60_000,
        { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString },
      );
      expect(r.stderr).toBe('');
      expect(r).toMatchObject({ code: 0, stdout: 'via ssh_config\n' });
    });

    it.skipIf(!socksNetcat)(
      'ssh through the SOCKS5 proxy with ProxyCommand="nc -X 5 -x proxy %h %p": host = device ID',
      async () => {
        const r = await run('ssh', [
          '-o',
          `ProxyCommand=nc -X 5 -x 127.0.0.1:${socksPort} %h %p`,
          '-p',
          String(sshd.port),
          ...sshd.sshOptions,
          `${sshd.user}@pi-01`,
          'echo via SOCKS',
        ]);
        expect(r.stderr).toBe('');
        expect(r).toMatchObject({ code: 0, stdout: 'via SOCKS\n' });
        // An unknown device is refused by the SOCKS server, and ssh says the proxy failed.
        const unknown = await run('ssh', [
          '-o',
          `ProxyCommand=nc -X 5 -x 127.0.0.1:${socksPort} %h %p`,
          '-p',
          String(sshd.port),
          ...sshd.sshOptions,
          `${sshd.user}@no-such-device`,
          'true',
        ]);
        expect(unknown.code).toBe(255);
        expect(unknown.stderr).toMatch(/Host unreachable/i);
      },
    );

    it('the processes exit 0 on SIGTERM', async () => {
      expect(await proxy.stop('SIGTERM')).toBe(0);
      expect(await socks.stop('SIGTERM')).toBe(0);
      expect(await agent.stop('SIGTERM')).toBe(0);
      expect(await hub.hub.stop('SIGTERM')).toBe(0);
    });
  });
});
