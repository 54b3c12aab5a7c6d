import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli.js';
import type { CommandContext } from '../../src/commands/common.js';
import { once } from 'node:events';
import { WebSocket } from 'ws';
import {
  parseConnectionString,
  type DeviceConnectionString,
  type ServiceConnectionString,
} from '../../src/auth/connection-string.js';
import { expiryIn, signSas } from '../../src/auth/sas.js';
import { hubRequest } from '../../src/net/hub-client.js';
import { hubTarget, serviceToken } from '../../src/service/credentials.js';
import {
  cliPath,
  runCli,
  runCliWithInput,
  spawnCli,
  startCliEchoDevice,
  startCliHub,
  type CliEchoDevice,
  type CliTunnel,
} from '../helpers/cli.js';
import { startServer } from '../helpers/servers.js';
import { dial, readAll, readUntil, waitFor } from '../helpers/net.js';
import { randomBytes } from 'node:crypto';
import { certificateFingerprint, createSelfSignedCertificate } from '../../src/tls/self-signed.js';
import { makeTempDir } from '../helpers/hub.js';

const key = Buffer.alloc(32, 1).toString('base64');

function expectNoStack(stderr: string): void {
  expect(stderr).not.toMatch(/^\s+at /m);
}

describe('CLI: bad input is one clear line and a non-zero exit', () => {
  it.each([
    [
      ['agent', '--port', '22'],
      {},
      2,
      'error: no device connection string\nhint: Pass --connection-string, set DSTREAM_DEVICE_CONNECTION_STRING, or save one with `dstream login`.\n',
    ],
    [
      ['proxy', '--device', 'pi', '--local-port', '2222'],
      {},
      2,
      'error: no service connection string\nhint: Pass --connection-string, set DSTREAM_SERVICE_CONNECTION_STRING, or save one with `dstream login`.\n',
    ],
    [
      ['device', 'list'],
      { DSTREAM_SERVICE_CONNECTION_STRING: 'HostName=h;Nope=1' },
      2,
      "error: invalid connection string: unknown field 'Nope'\nhint: Use the string printed by `dstream hub init` (service) or `dstream device add` (device).\n",
    ],
    [
      [
        'agent',
        '--port',
        '22',
        '--connection-string',
        `HostName=h;SharedAccessKeyName=service;SharedAccessKey=${key}`,
      ],
      {},
      2,
      'error: --connection-string holds a service connection string; the agent needs a device one\nhint: Create one with `dstream device add <id>`.\n',
    ],
    [
      [
        'agent',
        '--port',
        'ssh',
        '--connection-string',
        `HostName=h;DeviceId=d;SharedAccessKey=${key}`,
      ],
      {},
      2,
      'error: --port ssh: not a port number (1-65535)\n',
    ],
    [
      ['agent', '--connection-string', `HostName=h;DeviceId=d;SharedAccessKey=${key}`],
      {},
      2,
      'error: the agent allows no streams\nhint: Add --port 22 or --target ssh=127.0.0.1:22.\n',
    ],
    [
      [
        'proxy',
        '--device',
        'pi',
        '--local-port',
        '99999',
        '--connection-string',
        `HostName=h;SharedAccessKeyName=s;SharedAccessKey=${key}`,
      ],
      {},
      2,
      'error: --local-port 99999: not a port number (0-65535)\n',
    ],
    [
      [
        'proxy',
        '--device',
        'a/b',
        '--local-port',
        '1',
        '--connection-string',
        `HostName=h;SharedAccessKeyName=s;SharedAccessKey=${key}`,
      ],
      {},
      2,
      "error: --device: device ID 'a/b' may not contain '/': use letters, digits and - . : + % _ # * ? ! ( ) , = @ $ '\n",
    ],
    [
      ['hub', '--listen', 'nonsense'],
      {},
      2,
      'error: --listen nonsense: expected HOST:PORT, e.g. 0.0.0.0:8443\n',
    ],
    [
      ['hub', '--public-url', 'ftp://x', '--data-dir', '/nonexistent-unused'],
      {},
      2,
      'error: --public-url must start with https:// or http://, not ftp://\n',
    ],
  ] as const)('dstream %j', async (args, env, code, stderr) => {
    const r = await runCli(args, env);
    expect(r.stderr).toBe(stderr);
    expect(r.stdout).toBe('');
    expect(r.code).toBe(code);
  });

  it('usage errors exit 2 without a stack', async () => {
    const missing = await runCli(['proxy', '--local-port', '1'], {
      DSTREAM_SERVICE_CONNECTION_STRING: `HostName=h;SharedAccessKeyName=s;SharedAccessKey=${key}`,
    });
    expect(missing).toMatchObject({
      code: 2,
      stderr:
        'error: --device and --local-port go together\nhint: Give both: `dstream proxy --device pi-01 --local-port 2222` (or -L 2222:pi-01:22).\n',
    });
    const unknown = await runCli(['teleport']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("error: unknown command 'teleport'");
    const badOption = await runCli(['hub', '--no-such-option']);
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain("error: unknown option '--no-such-option'");
    expectNoStack(missing.stderr + unknown.stderr + badOption.stderr);
    const noMemory = await runCli(['agent', '--port', '22', '--replay-memory', '0'], {
      DSTREAM_DEVICE_CONNECTION_STRING: `HostName=h;DeviceId=d;SharedAccessKey=${key}`,
    });
    expect(noMemory.code).toBe(2);
    expect(noMemory.stderr.split('\n')[0]).toBe(
      'error: --replay-memory 0: expected a whole number from 1',
    );
  });

  it('a reader that stops early (| head) ends the CLI quietly, exit 0', async () => {
    const child = spawn(process.execPath, [cliPath, 'hub', '--help'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // Close our end of the pipe before the help text has been written: its writes then fail
    // with EPIPE, as with `dstream hub --help | head -1`.
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect([code, stderr]).toEqual([0, '']);
  });

  it('an unreachable hub is a one-line error with exit 1', async () => {
    const r = await runCli([
      'device',
      'list',
      '--connection-string',
      `HostName=127.0.0.1:1;SharedAccessKeyName=s;SharedAccessKey=${key}`,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: cannot reach the hub at 127\.0\.0\.1:1: connect ECONNREFUSED 127\.0\.0\.1:1\nhint: /,
    );
    expectNoStack(r.stderr);
  });

  it('--help shows a working example for each command', async () => {
    // Every command and subcommand the program defines, so a new one cannot be forgotten.
    const program = buildProgram({} as CommandContext);
    const paths: string[][] = [[]];
    const walk = (cmd: Command, prefix: string[]): void => {
      for (const sub of cmd.commands) {
        const path = [...prefix, sub.name()];
        paths.push(path);
        walk(sub, path);
      }
    };
    walk(program, []);
    expect(paths.map((p) => p.join(' '))).toEqual(
      expect.arrayContaining(['login', 'logout', 'profiles', 'connect', 'policy add']),
    );
    const results = await Promise.all(paths.map((path) => runCli([...path, '--help'])));
    results.forEach((r, i) => {
      expect(r.code, paths[i]?.join(' ')).toBe(0);
      expect(r.stdout, paths[i]?.join(' ')).toMatch(/Examples?:\n {2}\S|Quick start:/);
    });
  });
});

describe('CLI against a running hub', () => {
  let dir: string;
  let hub: CliTunnel;
  let other: CliTunnel;
  let env: Record<string, string>;
  const secretsSeen: string[] = [];

  beforeAll(async () => {
    dir = makeTempDir('dstream-cli-');
    [hub, other] = await Promise.all([
      startCliHub(join(dir, 'hub')),
      startCliHub(join(dir, 'other')),
    ]);
    env = { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString };
  }, 60_000);

  afterAll(async () => {
    await hub?.stop();
    await other?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('hub init prints the same service string every time, alone on stdout', async () => {
    const again = await runCli([
      'hub',
      'init',
      '--data-dir',
      join(dir, 'hub'),
      '--listen',
      `127.0.0.1:${hub.hubPort}`,
    ]);
    expect(again).toMatchObject({ code: 0, stderr: '' });
    expect(again.stdout).toBe(hub.serviceString + '\n');
    expect(parseConnectionString(hub.serviceString)).toMatchObject({
      kind: 'service',
      sharedAccessKeyName: 'service',
      hub: { host: '127.0.0.1', port: hub.hubPort, tls: true },
    });
    expect(hub.hub.output()).toMatch(
      /TLS certificate SHA-256 fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}/,
    );
  });

  it('proxy: a wrong pin stops it before it listens; a hub that is down is only a warning', async () => {
    // The other hub's fingerprint with this hub's address: another certificate answers.
    const otherPin = /CertificateFingerprint=([0-9A-F:]+)/i.exec(other.serviceString)?.[1] ?? '';
    const wrongPin = hub.serviceString.replace(
      /CertificateFingerprint=[0-9A-F:]+/i,
      `CertificateFingerprint=${otherPin}`,
    );
    expect(wrongPin).not.toBe(hub.serviceString);
    const pinned = await runCli(['proxy', '--device', 'pi', '--local-port', '0'], {
      DSTREAM_SERVICE_CONNECTION_STRING: wrongPin,
    });
    expect(pinned.code).toBe(1);
    expect(pinned.stderr).toMatch(
      /^error: the hub at 127\.0\.0\.1:\d+ presented a certificate with fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}, not the pinned one \(([0-9A-F]{2}:){31}[0-9A-F]{2}\)\nhint: If the hub was set up again or its certificate replaced \(the hub logs its fingerprint at start\), get a fresh connection string from `dstream hub init` or `dstream device show ID`; otherwise someone may be intercepting the connection\.\n$/,
    );
    expect(pinned.stderr).not.toMatch(/proxy listening/);
    expectNoStack(pinned.stderr);

    const down = spawnCli(['proxy', '--device', 'pi', '--local-port', '0'], {
      DSTREAM_SERVICE_CONNECTION_STRING: `HostName=127.0.0.1:1;SharedAccessKeyName=s;SharedAccessKey=${key}`,
    });
    try {
      await down.waitForLine(
        /WARN {2}the hub is not reachable now; each connection will try again/,
      );
      await down.waitForLine(/proxy listening on 127\.0\.0\.1:\d+/);
    } finally {
      expect(await down.stop()).toBe(0);
    }
  });

  it('device add/list/show/disable/enable/remove', async () => {
    const add = await runCli(['device', 'add', 'pi-01'], env);
    expect(add.code).toBe(0);
    expect(add.stdout.split('\n')).toHaveLength(2);
    expect(parseConnectionString(add.stdout.trim())).toMatchObject({
      kind: 'device',
      deviceId: 'pi-01',
      hub: { port: hub.hubPort },
    });

    const dup = await runCli(['device', 'add', 'pi-01'], env);
    expect(dup).toMatchObject({
      code: 1,
      stdout: '',
      stderr:
        "error: device 'pi-01' already exists\nhint: `dstream device show pi-01` prints its connection string.\n",
    });

    const list = await runCli(['device', 'list'], env);
    expect(list.stdout).toMatch(
      /^DEVICE\s+STATUS\s+CONNECTION\s+LAST SEEN\npi-01\s+enabled\s+offline\s+never\n$/,
    );
    const json = JSON.parse((await runCli(['device', 'list', '--json'], env)).stdout) as unknown[];
    expect(json).toEqual([
      expect.objectContaining({
        deviceId: 'pi-01',
        status: 'enabled',
        connectionState: 'Disconnected',
      }),
    ]);

    const show = await runCli(['device', 'show', 'pi-01'], env);
    expect(show.stdout).toContain(`connection string: ${add.stdout.trim()}`);

    expect(await runCli(['device', 'disable', 'pi-01'], env)).toMatchObject({
      code: 0,
      stdout: 'disabled pi-01\n',
    });
    expect((await runCli(['device', 'list', '--json'], env)).stdout).toContain(
      '"status": "disabled"',
    );
    expect(await runCli(['device', 'enable', 'pi-01'], env)).toMatchObject({
      code: 0,
      stdout: 'enabled pi-01\n',
    });
    expect(await runCli(['device', 'remove', 'pi-01'], env)).toMatchObject({
      code: 0,
      stdout: 'removed pi-01\n',
    });
    const gone = await runCli(['device', 'show', 'pi-01'], env);
    expect(gone).toMatchObject({ code: 1, stdout: '' });
    expect(gone.stderr).toBe(
      "error: device 'pi-01' is not registered\nhint: List the registered devices with `dstream device list`; register it with `dstream device add pi-01`.\n",
    );
  });

  it("a pinned fingerprint rejects another hub's certificate", async () => {
    // The other hub's key and fingerprint, pointed at this hub's port: same name, wrong certificate.
    const otherCs = parseConnectionString(other.serviceString);
    const crossed = other.serviceString.replace(
      `127.0.0.1:${other.hubPort}`,
      `127.0.0.1:${hub.hubPort}`,
    );
    expect(otherCs.hub.fingerprint).not.toBe(
      parseConnectionString(hub.serviceString).hub.fingerprint,
    );
    const r = await runCli(['device', 'list', '--connection-string', crossed]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: the hub at 127\.0\.0\.1:\d+ presented a certificate with fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}, not the pinned one \(([0-9A-F]{2}:){31}[0-9A-F]{2}\)\nhint: If the hub was set up again or its certificate replaced \(the hub logs its fingerprint at start\), get a fresh connection string from `dstream hub init` or `dstream device show ID`; otherwise someone may be intercepting the connection\.\n$/,
    );
  });

  it('device rotate-key: prints a string with a new key; the old key is refused, the other still works', async () => {
    const add = await runCli(['device', 'add', 'rot'], env);
    const before = parseConnectionString(add.stdout.trim());
    const show = await runCli(['device', 'show', 'rot'], env);
    const secondary = /secondary string:\s+(\S+)/.exec(show.stdout)?.[1] ?? '';
    const rotated = await runCli(['device', 'rotate-key', 'rot'], env);
    expect(rotated.code).toBe(0);
    const after = parseConnectionString(rotated.stdout.trim());
    expect(after.kind === 'device' && after.deviceId).toBe('rot');
    expect(after.sharedAccessKey).not.toBe(before.sharedAccessKey);
    const rotatedSecondary = await runCli(['device', 'rotate-key', 'rot', '--secondary'], env);
    expect(parseConnectionString(rotatedSecondary.stdout.trim()).sharedAccessKey).not.toBe(
      parseConnectionString(secondary).sharedAccessKey,
    );
    secretsSeen.push(
      before.sharedAccessKey,
      after.sharedAccessKey,
      parseConnectionString(secondary).sharedAccessKey,
    );
  });

  it('policy add/list/remove, and a limited policy cannot exceed its rights', async () => {
    const add = await runCli(['policy', 'add', 'viewer', '--rights', 'RegistryRead'], env);
    expect(add.code).toBe(0);
    const viewer = parseConnectionString(add.stdout.trim());
    expect(viewer).toMatchObject({ kind: 'service', sharedAccessKeyName: 'viewer' });
    secretsSeen.push(viewer.sharedAccessKey);
    const list = await runCli(['policy', 'list'], env);
    expect(list.stdout).toMatch(
      /^POLICY\s+RIGHTS\nservice\s+ServiceConnect,RegistryRead,RegistryWrite,PolicyWrite\nviewer\s+RegistryRead\n$/,
    );
    const viewerEnv = { DSTREAM_SERVICE_CONNECTION_STRING: add.stdout.trim() };
    expect((await runCli(['device', 'list'], viewerEnv)).code).toBe(0);
    const denied = await runCli(['device', 'add', 'nope'], viewerEnv);
    expect(denied).toMatchObject({
      code: 1,
      stderr: "error: policy 'viewer' lacks the RegistryWrite right\n",
    });
    const bad = await runCli(['policy', 'add', 'x', '--rights', 'Everything'], env);
    expect(bad).toMatchObject({
      code: 2,
      stderr:
        'error: --rights: expected a comma-separated list of ServiceConnect, RegistryRead, RegistryWrite, PolicyWrite; not Everything\n',
    });
    expect(await runCli(['policy', 'remove', 'viewer'], env)).toMatchObject({
      code: 0,
      stdout: 'removed viewer\n',
    });
    expect((await runCli(['device', 'list'], viewerEnv)).code).toBe(1);
  });

  it('the hub never logged a key or a token', () => {
    secretsSeen.push(parseConnectionString(hub.serviceString).sharedAccessKey);
    const log = hub.hub.output();
    expect(log).toContain('device added');
    for (const secret of secretsSeen) expect(log).not.toContain(secret);
    expect(log).not.toMatch(/sig=|SharedAccessKey=|Bearer /);
  });

  it('a hub on a port already in use fails clearly', async () => {
    const r = await runCli([
      'hub',
      '--data-dir',
      join(dir, 'third'),
      '--listen',
      `127.0.0.1:${hub.hubPort}`,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `error: cannot listen on 127.0.0.1:${hub.hubPort}: listen EADDRINUSE`,
    );
    expectNoStack(r.stderr);
  });
});

describe('CLI hub settings', () => {
  let dir: string;
  beforeAll(() => {
    dir = makeTempDir('dstream-cli-settings-');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('--public-url goes into the strings and is kept in the data dir', async () => {
    const dataDir = join(dir, 'pub');
    const first = await runCli([
      'hub',
      'init',
      '--data-dir',
      dataDir,
      '--public-url',
      'https://hub.example.com:9443',
    ]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^HostName=hub\.example\.com:9443;SharedAccessKeyName=service;/);
    const again = await runCli(['hub', 'init', '--data-dir', dataDir]);
    expect(again.stdout).toBe(first.stdout);
  });

  it('--public-url on port 443, given or implied, prints a bare HostName', async () => {
    for (const [name, url] of [
      ['p443a', 'https://hub.example.com'],
      ['p443b', 'https://hub.example.com:443'],
    ] as const) {
      const r = await runCli(['hub', 'init', '--data-dir', join(dir, name), '--public-url', url]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^HostName=hub\.example\.com;SharedAccessKeyName=service;/);
    }
  });

  it('--insecure-no-tls says so loudly and hands out UseTls=false strings', async () => {
    const dataDir = join(dir, 'plain');
    const init = await runCli([
      'hub',
      'init',
      '--data-dir',
      dataDir,
      '--insecure-no-tls',
      '--listen',
      '127.0.0.1:8080',
    ]);
    expect(init.stdout).toMatch(
      /^HostName=127\.0\.0\.1:8080;SharedAccessKeyName=service;SharedAccessKey=[^;]+;UseTls=false\n$/,
    );
    const hub = spawnCli([
      'hub',
      '--data-dir',
      dataDir,
      '--insecure-no-tls',
      '--listen',
      '127.0.0.1:0',
    ]);
    await hub.waitForLine(/hub listening on http:\/\/127\.0\.0\.1:\d+/);
    expect(hub.output()).toContain('WARN  TLS IS OFF (--insecure-no-tls)');
    expect(await hub.stop()).toBe(0);
  });

  it('--tls-cert/--tls-key: the given certificate is served and pinned', async () => {
    const made = await createSelfSignedCertificate('my hub', ['127.0.0.1']);
    writeFileSync(join(dir, 'cert.pem'), made.cert);
    writeFileSync(join(dir, 'key.pem'), made.key);
    const dataDir = join(dir, 'own-cert');
    const args = [
      '--data-dir',
      dataDir,
      '--tls-cert',
      join(dir, 'cert.pem'),
      '--tls-key',
      join(dir, 'key.pem'),
    ];
    const hub = spawnCli(['hub', ...args, '--listen', '127.0.0.1:0']);
    const port = (await hub.waitForLine(/hub listening on https:\/\/127\.0\.0\.1:(\d+)/))[1] ?? '';
    const init = await runCli(['hub', 'init', ...args, '--listen', `127.0.0.1:${port}`]);
    expect(parseConnectionString(init.stdout.trim()).hub.fingerprint).toBe(
      certificateFingerprint(made.cert),
    );
    const list = await runCli(['device', 'list', '--json'], {
      DSTREAM_SERVICE_CONNECTION_STRING: init.stdout.trim(),
    });
    expect(list).toMatchObject({ code: 0, stdout: '[]\n' });
    expect(await hub.stop()).toBe(0);
  });
});

describe('dstream connect (stdio)', () => {
  let setup: CliEchoDevice;
  let env: Record<string, string>;

  beforeAll(async () => {
    setup = await startCliEchoDevice('dstream-connect-', 'pi');
    env = setup.env;
  }, 60_000);

  afterAll(async () => {
    await setup?.stop();
  });

  it('pipes stdin to the device and the answer to stdout, nothing else; exit 0', async () => {
    const payload = randomBytes(256 * 1024).toString('base64');
    const r = await runCliWithInput(['connect', 'pi', '--stream', 'echo'], payload, env);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(payload);
    expect(r.code).toBe(0);
  });

  it('proxy -L twice: one process forwards to two devices', async () => {
    const tagged = await startServer((sock) =>
      sock.on('data', (d: Buffer) => sock.end(`pi2 got ${d.toString()}`)),
    );
    const added = await runCli(['device', 'add', 'pi2'], env);
    const agent2 = spawnCli(['agent', '--target', `svc=127.0.0.1:${tagged.port}`], {
      DSTREAM_DEVICE_CONNECTION_STRING: added.stdout.trim(),
    });
    await agent2.waitForLine(/connected to the hub/);
    const proxy = spawnCli(['proxy', '-L', '0:pi:echo', '-L', '127.0.0.1:0:pi2:svc'], env);
    await proxy.waitForLine(
      /proxy listening on 127\.0\.0\.1:\d+[^\n]*\n[^\n]*proxy listening on 127\.0\.0\.1:\d+/,
    );
    const ports = [
      ...proxy.output().matchAll(/proxy listening on 127\.0\.0\.1:(\d+) [^\n]*device=(\S+)/g),
    ].map((m) => [m[2], Number(m[1])] as const);
    const portOf = new Map(ports);
    const a = await dial(portOf.get('pi') ?? 0);
    a.end('to pi');
    const b = await dial(portOf.get('pi2') ?? 0);
    b.write('to pi2');
    expect((await readAll(a)).toString()).toBe('to pi');
    expect((await readAll(b)).toString()).toBe('pi2 got to pi2');
    b.destroy();
    // Both forwards rode the process's one carrier connection: with the two agents' own, three
    // at the hub (a carrier per forward would make four).
    const service = parseConnectionString(env.DSTREAM_SERVICE_CONNECTION_STRING ?? '');
    const metric = async (pattern: RegExp): Promise<number> => {
      const res = await hubRequest(hubTarget(service), { method: 'GET', path: '/metrics' });
      return Number(pattern.exec(res.body)?.[1] ?? -1);
    };
    const carriers = (): Promise<number> => metric(/^dstream_carrier_connections (\d+)$/m);
    expect(await readUntil(carriers, 3)).toBe(3);
    // And each asked for its stream on it (no POST): these two, and the earlier tests' connects.
    expect(
      await metric(/^dstream_stream_requests_total\{via="carrier"\} (\d+)$/m),
    ).toBeGreaterThanOrEqual(2);
    expect(await metric(/^dstream_stream_requests_total\{via="post"\} (\d+)$/m)).toBe(0);
    expect(await proxy.stop()).toBe(0);
    await agent2.stop();
    await tagged.close();
  });

  it('stopped before the stream opened: one line, exit 130, and the hub drops the stream', async () => {
    // A device that takes the stream request and never answers it.
    const added = await runCli(['device', 'add', 'silent'], env);
    const device = parseConnectionString(added.stdout.trim()) as DeviceConnectionString;
    const control = new WebSocket(
      `wss://${device.hub.host}:${device.hub.port}/devices/silent/control`,
      'dstream.control.v1',
      {
        rejectUnauthorized: false,
        headers: {
          authorization: signSas({
            resource: `${device.hub.host}:${device.hub.port}/devices/silent`,
            key: device.sharedAccessKey,
            expiry: expiryIn(600),
          }),
        },
      },
    );
    control.on('error', () => undefined);
    const requests: string[] = [];
    control.on('message', (data: Buffer) => requests.push(data.toString()));
    try {
      await once(control, 'open');
      const connect = spawnCli(['connect', 'silent', '--remote-port', '22'], env);
      await waitFor(
        () => requests.some((r) => r.includes('"stream-request"')),
        30_000,
        'the request at the device',
      );
      // The process exits (its carrier connection let go of), with one line.
      expect(await connect.stop('SIGTERM')).toBe(130);
      expect(connect.output()).toBe(
        "error: stopped by SIGTERM before the stream to 'silent' opened\n",
      );
      const service = parseConnectionString(
        env.DSTREAM_SERVICE_CONNECTION_STRING ?? '',
      ) as ServiceConnectionString;
      const open = async (): Promise<number> => {
        const res = await hubRequest(hubTarget(service), {
          method: 'GET',
          path: '/streams?deviceId=silent',
          headers: { authorization: serviceToken(service) },
        });
        return (JSON.parse(res.body) as unknown[]).length;
      };
      expect(await readUntil(open, 0)).toBe(0);
    } finally {
      control.terminate();
    }
  });

  it('a rejected stream: one error line on stderr, nothing on stdout, exit 1', async () => {
    const r = await runCliWithInput(['connect', 'pi', '--remote-port', '22'], 'x', env);
    expect(r).toMatchObject({
      code: 1,
      stdout: '',
      stderr:
        "error: device 'pi' rejected stream '22': stream '22' is not allowed on this device (it allows: echo)\n" +
        'hint: The agent on the device allows only the streams it was started with: add `--port 22` to its command line, or ask for one it allows.\n',
    });
  });
});
