import {
  spawn,
  spawnSync,
  type ChildProcess,
  type ChildProcessWithoutNullStreams,
} from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, runCli, spawnCli, type CliProcess } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';
import { dial, freePort, randomBytes, readAll, sha256, waitFor } from '../helpers/net.js';
import { findOpenSsh, numberedOutput, startTempSshd, type TestSshd } from '../helpers/openssh.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';

// Issue 29: the device gets its agent from the hub as one file, with the lines `device add`
// prints, and runs it with nothing else beside it (no node_modules, no compiler).

const openssh = findOpenSsh();
const sshRequired = process.env.DSTREAM_REQUIRE_OPENSSH === '1';

let dir: string;
let deviceDir: string;
let echo: TestServer;
let hubPort: number;
let hubArgs: string[];
let hub: CliProcess;
let env: Record<string, string>;
let printed: string[];
const running: CliProcess[] = [];

function startHub(): CliProcess {
  const p = spawnCli(hubArgs);
  running.push(p);
  return p;
}

/**
 * Start the printed run line in the device's directory (only PATH and HOME in its environment:
 * nothing points it at this checkout), with this test's Node.js; resolves once it connected.
 */
async function startPrinted(
  line: string,
): Promise<{ agent: ChildProcessWithoutNullStreams | ChildProcess; log: () => string }> {
  const agent = spawn('bash', ['-c', `exec ${line.replace(/^node /, `${process.execPath} `)}`], {
    cwd: deviceDir,
    env: { PATH: process.env.PATH ?? '', HOME: deviceDir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let text = '';
  agent.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  const deadline = Date.now() + 20_000;
  while (!text.includes('connected to the hub')) {
    if (Date.now() > deadline || agent.exitCode !== null) {
      agent.kill('SIGKILL');
      throw new Error(`the agent did not connect:\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { agent, log: () => text };
}

/** Run one printed line in the device's directory with bash, as a user pastes it. */
function runLine(line: string, cwd: string): { code: number | null; out: string } {
  const r = spawnSync('bash', ['-c', line], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(async () => {
  dir = makeTempDir('dstream-agentfile-');
  deviceDir = makeTempDir('dstream-device-');
  echo = await startEchoServer();
  hubPort = await freePort();
  hubArgs = ['hub', '--data-dir', join(dir, 'hub'), '--listen', `127.0.0.1:${hubPort}`];
  hub = startHub();
  await hub.waitForLine(/hub listening on/);
  const init = await runCli(['hub', 'init', '--data-dir', join(dir, 'hub')]);
  expect(init.code).toBe(0);
  env = { DSTREAM_SERVICE_CONNECTION_STRING: init.stdout.trim() };
  const added = await runCli(['device', 'add', 'pi-1'], env);
  expect(added.code).toBe(0);
  // stdout is the string alone; stderr has the lines for the device.
  expect(added.stdout).toMatch(/^HostName=[^\n]*;DeviceId=pi-1;SharedAccessKey=[^\n]*\n$/);
  writeFileSync(join(deviceDir, 'pi-1.cs'), added.stdout);
  printed = added.stderr
    .split('\n')
    .filter((l) => l.startsWith('  '))
    .map((l) => l.trim());
  expect(printed).toHaveLength(2);
}, 60_000);

afterAll(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')));
  await echo?.close();
  rmSync(dir, { recursive: true, force: true });
  rmSync(deviceDir, { recursive: true, force: true });
});

describe('the single-file agent, fetched from the hub', () => {
  it('device add prints a curl line that fetches the file over pinned TLS and checks its SHA-256', () => {
    const [fetch] = printed;
    expect(fetch).toMatch(
      /^curl -fsS -k --pinnedpubkey 'sha256\/\/[A-Za-z0-9+/]{43}=' -o dstream-agent\.mjs 'https:\/\/127\.0\.0\.1:\d+\/agent\/dstream-agent\.mjs' && echo '[0-9a-f]{64} {2}dstream-agent\.mjs' \| sha256sum -c -$/,
    );
    const r = runLine(fetch ?? '', deviceDir);
    expect(r.out).toContain('dstream-agent.mjs: OK');
    expect(r.code).toBe(0);
    // Nothing but the file and the string: no node_modules, no package.json.
    expect(readdirSync(deviceDir).sort()).toEqual(['dstream-agent.mjs', 'pi-1.cs']);
  });

  it('hub init, at a terminal, says where the file is (and a script reading stdout gets only the string)', () => {
    // `script` gives the command a terminal, as a person running it has.
    const command = `${process.execPath} ${cliPath} hub init --data-dir ${join(dir, 'hub')}`;
    const r = spawnSync('script', ['-qc', command, '/dev/null'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(
      `devices get the agent from https://127.0.0.1:${hubPort}/agent/dstream-agent.mjs (`,
    );
  });

  it('a wrong pin or a wrong hash stops the line: curl (or sha256sum) fails', () => {
    const other = makeTempDir('dstream-device-bad-');
    try {
      const wrongPin = (printed[0] ?? '').replace(
        /sha256\/\/[^']+/,
        `sha256//${Buffer.alloc(32, 1).toString('base64')}`,
      );
      const r = runLine(wrongPin, other);
      expect(r.code).not.toBe(0);
      expect(readdirSync(other)).toEqual([]);
      const wrongHash = (printed[0] ?? '').replace(/echo '[0-9a-f]{64}/, `echo '${'0'.repeat(64)}`);
      const h = runLine(wrongHash, other);
      expect(h.code).not.toBe(0);
      expect(h.out).toContain('FAILED');
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('runs from that directory alone and carries streams byte-exact, through a hub restart', async () => {
    const run = printed[1] ?? '';
    expect(run).toBe('node dstream-agent.mjs agent --connection-string "$(cat pi-1.cs)" --port 22');
    // The printed line, with the targets of this test instead of port 22.
    const { agent, log } = await startPrinted(
      run.replace('--port 22', `--target echo=127.0.0.1:${echo.port}`),
    );
    try {
      const proxy = spawnCli(
        ['proxy', '--device', 'pi-1', '--stream', 'echo', '--local-port', '0'],
        env,
      );
      running.push(proxy);
      const pm = await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/);
      const payload = randomBytes(1024 * 1024);
      const client = await dial(Number(pm[1]));
      let echoed = 0;
      client.on('data', (d: Buffer) => (echoed += d.length));
      const received = readAll(client, 60_000);
      client.write(payload.subarray(0, 512 * 1024));
      // Once bytes flow, the hub is killed and started again mid-stream: the stream resumes
      // (the agent's default).
      await waitFor(() => echoed > 0, 30_000, 'the first echoed bytes');
      await hub.stop('SIGKILL');
      hub = startHub();
      await hub.waitForLine(/hub listening on/);
      client.end(payload.subarray(512 * 1024));
      const back = await received;
      expect(back.length).toBe(payload.length);
      expect(sha256(back)).toBe(sha256(payload));
      expect(log()).toMatch(/stream resumed|resumed/);
    } finally {
      agent.kill('SIGTERM');
      await once(agent, 'exit');
    }
  }, 120_000);

  it.skipIf(!openssh && !sshRequired)(
    'OpenSSH through the single-file agent: output byte-exact, ssh exits 0',
    async () => {
      if (!openssh) throw new Error('DSTREAM_REQUIRE_OPENSSH=1 but sshd/ssh were not found');
      const { sshd, dispose } = await startTempSshd(openssh.sshd, 'dstream-agentfile-ssh-');
      const server: TestSshd = sshd;
      const { agent } = await startPrinted(
        (printed[1] ?? '').replace('--port 22', `--target ssh=127.0.0.1:${server.port}`),
      );
      try {
        const { command, expected } = numberedOutput();
        const ssh = spawn(
          'ssh',
          [
            '-o',
            `ProxyCommand=${process.execPath} ${cliPath} connect %h --stream ssh`,
            ...server.sshOptions,
            `${server.user}@pi-1`,
            command,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
        );
        let out = '';
        ssh.stdout.on('data', (d: Buffer) => (out += d.toString()));
        const [code] = (await once(ssh, 'close')) as [number];
        expect(code).toBe(0);
        expect(out === expected).toBe(true);
      } finally {
        agent.kill('SIGTERM');
        await once(agent, 'exit');
        await dispose();
      }
    },
    120_000,
  );
});
