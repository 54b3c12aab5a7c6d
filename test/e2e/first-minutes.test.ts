import { once } from 'node:events';
import { createServer } from 'node:net';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConnectionString } from '../../src/auth/connection-string.js';
import { hubRequest } from '../../src/net/hub-client.js';
import { hubTarget } from '../../src/service/credentials.js';
import {
  runCli,
  spawnCli,
  startCliHub,
  type CliProcess,
  type SpawnOptions,
  withoutInstallLines,
} from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';
import { tcpSocketsOf } from '../helpers/proc.js';
import { freePort, waitFor } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';

// Issue 23: what a new user meets in the first fifteen minutes, run as the README says.

let dir: string;
const running: CliProcess[] = [];

beforeAll(() => {
  dir = makeTempDir('dstream-first-');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')));
});

function spawn(
  args: readonly string[],
  env: Record<string, string> = {},
  options: SpawnOptions = {},
): CliProcess {
  const p = spawnCli(args, env, options);
  running.push(p);
  return p;
}

describe('quick start step 1: `dstream hub &` and `dstream hub init` at once', () => {
  it('twenty fresh data dirs: one certificate each time, and the printed string works', async () => {
    for (let i = 0; i < 20; i++) {
      const dataDir = join(dir, `race-${i}`);
      const listen = `127.0.0.1:${await freePort()}`;
      const hub = spawn(['hub', '--data-dir', dataDir, '--listen', listen, '--no-mqtt']);
      const init = await runCli(['hub', 'init', '--data-dir', dataDir, '--listen', listen]);
      expect(init.stderr).toBe('');
      expect(init.code).toBe(0);
      const serviceString = init.stdout.trim();
      const m = await hub.waitForLine(/TLS certificate SHA-256 fingerprint ([0-9A-F:]+)/);
      expect(parseConnectionString(serviceString).hub.fingerprint).toBe(
        (m[1] ?? '').replaceAll(':', ''),
      );
      const added = await runCli([
        'device',
        'add',
        `pi-${i}`,
        '--connection-string',
        serviceString,
      ]);
      expect(withoutInstallLines(added.stderr)).toBe('');
      expect(added.code).toBe(0);
      expect(hub.output()).not.toMatch(/TLS changed/);
      expect(await hub.stop()).toBe(0);
    }
  }, 240_000);
});

describe('the MQTT listener follows --listen', () => {
  it('a hub on 127.0.0.1 listens on nothing else; with 8883 taken a second hub starts and says why; an explicit --mqtt-listen that cannot bind is an error', async () => {
    // Another hub (or anything) on 127.0.0.1:8883.
    const other = createServer();
    await new Promise<void>((resolve, reject) => {
      other.once('error', reject);
      other.listen(8883, '127.0.0.1', resolve);
    });
    try {
      const second = spawn(
        ['hub', '--data-dir', join(dir, 'mqtt-second'), '--listen', '127.0.0.1:0'],
        {},
        { defaultPorts: true },
      );
      await second.waitForLine(/hub listening on https:\/\/127\.0\.0\.1:\d+/);
      expect(second.output()).toContain(
        "mqtt over TLS not started: 127.0.0.1:8883 is in use; devices on Azure's SDKs can still use MQTT over WebSockets (/$iothub/websocket). Pick a port with --mqtt-listen, or --no-mqtt",
      );
      expect(second.output()).not.toMatch(/mqtt \(Azure's device protocol\) listening/);
      expect(await second.stop()).toBe(0);
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }

    const hub = spawn(
      ['hub', '--data-dir', join(dir, 'mqtt-first'), '--listen', '127.0.0.1:0'],
      {},
      { defaultPorts: true },
    );
    await hub.waitForLine(
      /mqtt \(Azure's device protocol\) listening on mqtts:\/\/127\.0\.0\.1:8883/,
    );
    const listening = tcpSocketsOf(hub.child.pid ?? 0).filter((t) => t.state === '0A');
    expect(listening.length).toBe(3); // the main port, MQTT's and the console's
    for (const t of listening) expect(t.address).toBe('0100007F'); // 127.0.0.1

    const explicit = await runCli([
      'hub',
      '--data-dir',
      join(dir, 'mqtt-explicit'),
      '--listen',
      '127.0.0.1:0',
      '--mqtt-listen',
      '127.0.0.1:8883',
    ]);
    expect(explicit.code).toBe(1);
    expect(explicit.stderr).toContain(
      'error: cannot listen on 127.0.0.1:8883: listen EADDRINUSE: address already in use 127.0.0.1:8883',
    );
  }, 60_000);
});

/** Audit lines of a data dir's hub, parsed. */
function auditLines(dataDir: string): { outcome: string; reason: string; stream: string }[] {
  let text = '';
  try {
    text = readFileSync(join(dataDir, 'audit.log'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { outcome: string; reason: string; stream: string })
    .filter((r) => !r.outcome.startsWith('device-')); // streams only, not `device add`'s line
}

describe('dstream connect stopped by a signal', () => {
  let echo: TestServer;
  beforeAll(async () => {
    echo = await startEchoServer();
  });
  afterAll(async () => {
    await echo.close();
  });

  for (const resume of [false, true])
    it(`${resume ? 'resumable' : 'plain'} streams: SIGINT, SIGTERM and SIGHUP each end the open stream at once, normally, exit 0`, async () => {
      const dataDir = join(dir, `signals-${resume}`);
      const hub = await startCliHub(dataDir);
      running.push(hub.hub);
      const env = { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString };
      const added = await runCli(['device', 'add', 'sig-01'], env);
      expect(added.code).toBe(0);
      // Resumable is the default; plain needs --no-resume.
      const resumeFlag = resume ? [] : ['--no-resume'];
      const agent = spawn(['agent', ...resumeFlag, '--target', `echo=127.0.0.1:${echo.port}`], {
        DSTREAM_DEVICE_CONNECTION_STRING: added.stdout.trim(),
      });
      await agent.waitForLine(/connected to the hub/);
      // Resumable: four rounds, as ssh's ProxyCommand (SIGHUP) would run them one after another;
      // none may leave a stream suspended.
      const signals = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).flatMap((sig) =>
        resume ? [sig, sig, sig, sig] : [sig],
      );
      for (const [i, signal] of signals.entries()) {
        const connect = spawn(['connect', 'sig-01', '--stream', 'echo', ...resumeFlag], env, {
          stdin: true,
        });
        // The stream is open once bytes come back through it; stdin stays open.
        const echoed = new Promise<void>((resolve) => {
          let got = '';
          connect.child.stdout?.on('data', (d: Buffer) => {
            got += d.toString();
            if (got === `hello ${signal} ${i}`) resolve();
          });
        });
        connect.child.stdin?.write(`hello ${signal} ${i}`);
        await echoed;
        expect(await connect.stop(signal)).toBe(0);
        expect(connect.output()).toBe('');
        // The hub records a normal end, not a lost peer (1006) or a suspension.
        await waitFor(() => auditLines(dataDir).length === i + 1, 20_000, 'the audit line');
        expect(auditLines(dataDir)[i]).toMatchObject({
          outcome: 'completed',
          reason: 'closed by service (1000)',
          stream: 'echo',
        });
      }
      const res = await hubRequest(hubTarget(parseConnectionString(hub.serviceString)), {
        method: 'GET',
        path: '/metrics',
      });
      expect(res.body).toMatch(/^dstream_active_streams 0$/m);
    }, 90_000);
});

describe('messages a new user meets', () => {
  it('--help shows every default one way, and no empty list', async () => {
    for (const command of ['hub', 'agent', 'proxy', 'connect']) {
      const help = await runCli([command, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).not.toMatch(/\(default: ["[]/);
      expect(help.stdout).not.toMatch(/\(default [^:]/);
    }
    const agent = await runCli(['agent', '--help']);
    expect(agent.stdout.replace(/\s+/g, ' ')).toContain(
      '--heartbeat-interval <seconds> ping interval; two missed pings drop a connection (default: 20)',
    );
    expect(agent.stdout.replace(/\s+/g, ' ')).toContain(
      '--port <port> allow streams named PORT to 127.0.0.1:PORT (repeatable)',
    );
  });

  it('hub init run first with other --listen flags: the hub warns that those strings name another address; the data dir is printed absolute', async () => {
    const [first, second] = [await freePort(), await freePort()];
    const init = await runCli([
      'hub',
      'init',
      '--data-dir',
      join(dir, 'stale'),
      '--listen',
      `127.0.0.1:${first}`,
    ]);
    expect(init.code).toBe(0);
    const hub = spawn(
      ['hub', '--data-dir', 'stale', '--listen', `127.0.0.1:${second}`],
      {},
      { cwd: dir },
    );
    await hub.waitForLine(/hub listening on/);
    expect(hub.output()).toContain(
      `WARN  connection strings printed before name https://127.0.0.1:${first}, but this hub is reached at https://127.0.0.1:${second}; print new ones with \`dstream hub init --data-dir ${join(dir, 'stale')}\` and \`dstream device show ID\``,
    );
    expect(hub.output()).toContain(`dataDir=${join(dir, 'stale')}`);
  });

  it('a device ID with a space names the space, not the characters that are allowed', async () => {
    const r = await runCli(['device', 'add', 'bad id!'], {
      DSTREAM_SERVICE_CONNECTION_STRING: `HostName=h;SharedAccessKeyName=s;SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')}`,
    });
    expect(r).toMatchObject({
      code: 2,
      stdout: '',
      stderr:
        "error: device ID 'bad id!' may not contain a space: use letters, digits and - . : + % _ # * ? ! ( ) , = @ $ '\n",
    });
  });

  it('a proxy for a device that is not registered stops at start, saying so', async () => {
    const hub = await startCliHub(join(dir, 'ghost-hub'));
    running.push(hub.hub);
    const r = await runCli(['proxy', '--device', 'ghost', '--local-port', '0'], {
      DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString,
    });
    expect(r).toMatchObject({
      code: 1,
      stderr:
        "error: device 'ghost' is not registered\nhint: List the registered devices with `dstream device list`; register it with `dstream device add ghost`.\n",
    });
  });

  it('a cut stream with --no-resume says resumption would have carried it; a disabled agent says when it retries and is back soon after enable', async () => {
    const echo = await startEchoServer();
    try {
      const hub = await startCliHub(join(dir, 'cut-hub'));
      running.push(hub.hub);
      const env = { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString };
      const added = await runCli(['device', 'add', 'cut-01'], env);
      const deviceEnv = { DSTREAM_DEVICE_CONNECTION_STRING: added.stdout.trim() };
      const agent = spawn(['agent', '--target', `echo=127.0.0.1:${echo.port}`], deviceEnv);
      await agent.waitForLine(/connected to the hub/);
      const connect = spawn(['connect', 'cut-01', '--stream', 'echo', '--no-resume'], env, {
        stdin: true,
      });
      const echoed = new Promise<void>((resolve) =>
        connect.child.stdout?.once('data', () => resolve()),
      );
      connect.child.stdin?.write('hello');
      await echoed;
      await agent.stop('SIGKILL');
      const code = connect.child.exitCode ?? ((await once(connect.child, 'exit')) as [number])[0];
      expect(code).toBe(1);
      expect(connect.output()).toMatch(
        /^error: the stream to 'cut-01' was cut \(peer-error, code 4000\)\nhint: The link to the hub or the device was lost\. Without --no-resume \(on the agent too\), a stream survives a lost link or a hub restart\.\n$/,
      );

      const again = spawn(['agent', '--target', `echo=127.0.0.1:${echo.port}`], deviceEnv);
      await again.waitForLine(/connected to the hub/);
      expect((await runCli(['device', 'disable', 'cut-01'], env)).code).toBe(0);
      await again.waitForLine(/the hub refused this device; retrying in 10 s/, 30_000);
      expect((await runCli(['device', 'enable', 'cut-01'], env)).code).toBe(0);
      const before = again.output().length;
      await waitFor(
        () => /connected to the hub/.test(again.output().slice(before)),
        30_000,
        'the agent back',
      );
    } finally {
      await echo.close();
    }
  }, 90_000);
});
