import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConnectionString } from '../../src/auth/connection-string.js';
import { createSelfSignedCertificate } from '../../src/tls/self-signed.js';
import { makeTestCa, type TestCa } from '../helpers/ca.js';
import {
  runCli,
  runCliWithInput,
  runPrintedInit,
  spawnCli,
  type CliProcess,
  withoutInstallLines,
} from '../helpers/cli.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { makeTempDir } from '../helpers/hub.js';
import { dial, randomBytes, readAll } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';

// Issue 15: every string the hub, `hub init` and `device add` print is used verbatim, and works,
// whatever flags the hub was started with.

let dir: string;
let echo: TestServer;
const running: CliProcess[] = [];

beforeAll(async () => {
  dir = makeTempDir('dstream-printed-');
  echo = await startEchoServer();
});
afterAll(async () => {
  await echo.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')));
});

function spawn(args: readonly string[], env: Record<string, string> = {}): CliProcess {
  const p = spawnCli(args, env);
  running.push(p);
  return p;
}

async function startHub(dataDir: string, flags: readonly string[]): Promise<CliProcess> {
  const hub = spawn(['hub', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...flags]);
  await hub.waitForLine(/hub listening on https?:\/\/127\.0\.0\.1:\d+/);
  return hub;
}

/**
 * With the service string as printed: `device add`, then the printed device string on a real
 * agent, then bytes through `dstream connect` and `dstream proxy`. `trust` is what a client
 * of a CA-issued hub adds (--ca), or nothing.
 */
async function useStrings(
  serviceString: string,
  deviceId: string,
  trust: readonly string[] = [],
  env: Record<string, string> = {},
  warning = '',
): Promise<void> {
  const service = ['--connection-string', serviceString, ...trust];
  const added = await runCli(['device', 'add', deviceId, ...service], env);
  expect(withoutInstallLines(added.stderr)).toBe('');
  expect(added.code).toBe(0);
  // The line that fetches the single-file agent works as printed, for every kind of hub whose
  // trust it can carry: a pinned key, --cacert, or plain HTTP behind --insecure-no-tls.
  const fetchLine = /^ {2}(curl [^\n]*)$/m.exec(added.stderr)?.[1] ?? '';
  expect(fetchLine).toMatch(/^curl -fsS /);
  if (/--pinnedpubkey|--cacert|'http:/.test(fetchLine)) {
    const deviceDir = makeTempDir('dstream-printed-device-');
    try {
      const r = spawnSync('bash', ['-c', fetchLine], { cwd: deviceDir, encoding: 'utf8' });
      expect(r.stdout).toBe('dstream-agent.mjs: OK\n');
      expect(r.status).toBe(0);
    } finally {
      rmSync(deviceDir, { recursive: true, force: true });
    }
  }
  const deviceString = added.stdout.trim();
  const agent = spawn(
    [
      'agent',
      '--connection-string',
      deviceString,
      ...trust,
      '--target',
      `echo=127.0.0.1:${echo.port}`,
    ],
    env,
  );
  await agent.waitForLine(/connected to the hub/);

  const payload = randomBytes(64 * 1024).toString('base64');
  const connected = await runCliWithInput(
    ['connect', deviceId, '--stream', 'echo', ...service],
    payload,
    env,
  );
  expect(connected).toMatchObject({ code: 0, stderr: warning });
  expect(connected.stdout === payload).toBe(true);

  const proxy = spawn(
    ['proxy', '--device', deviceId, '--local-port', '0', '--stream', 'echo', ...service],
    env,
  );
  const port = Number((await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/))[1]);
  const client = await dial(port);
  client.end('through the proxy');
  expect((await readAll(client)).toString()).toBe('through the proxy');
  expect(await proxy.stop()).toBe(0);
  expect(await agent.stop()).toBe(0);
}

describe('printed connection strings work as printed', () => {
  it('a hub on a non-default port: the start-up line names a hub init that needs no other flag', async () => {
    const dataDir = join(dir, 'port');
    const hub = await startHub(dataDir, []);
    const port = Number(/hub listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(hub.output())?.[1]);
    await hub.waitForLine(/service connection string: run `/);
    expect(hub.output()).toContain(
      `service connection string: run \`dstream hub init --data-dir ${dataDir}\``,
    );
    const init = await runPrintedInit(hub);
    expect(init).toMatchObject({ code: 0, stderr: '' });
    expect(init.stdout).toMatch(
      new RegExp(`^HostName=127\\.0\\.0\\.1:${port};SharedAccessKeyName=service;`),
    );
    expect(init.stdout).toContain(';CertificateFingerprint=');
    await useStrings(init.stdout.trim(), 'by-port');
  });

  it('a hub with a CA-issued --tls-cert: strings carry no fingerprint and verify with --ca or NODE_EXTRA_CA_CERTS', async () => {
    const caDir = makeTempDir('dstream-ca-');
    const ca = makeTestCa(caDir, ['localhost', '127.0.0.1']);
    const dataDir = join(dir, 'ca');
    const hub = await startHub(dataDir, ['--tls-cert', ca.certFile, '--tls-key', ca.keyFile]);
    // No self-signed certificate is made beside the operator's.
    expect(hub.output()).not.toContain('created a self-signed TLS certificate');
    const init = await runCli(['hub', 'init', '--data-dir', dataDir]);
    expect(init).toMatchObject({ code: 0, stderr: '' });
    const serviceString = init.stdout.trim();
    expect(serviceString).not.toContain('CertificateFingerprint');
    expect(parseConnectionString(serviceString).hub).toMatchObject({
      host: '127.0.0.1',
      tls: true,
      fingerprint: undefined,
    });
    // Unpinned, and not a CA the system trusts: refused until the client is given the CA.
    const untrusted = await runCli(['device', 'list', '--connection-string', serviceString]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(
      /^error: cannot verify the hub's certificate at 127\.0\.0\.1:\d+/,
    );
    await useStrings(serviceString, 'by-ca', ['--ca', ca.caFile]);
    await useStrings(serviceString, 'by-env-ca', [], { NODE_EXTRA_CA_CERTS: ca.caFile });
    // The same again with the flags given to init too: they agree with the record.
    const same = await runCli([
      'hub',
      'init',
      '--data-dir',
      dataDir,
      '--tls-cert',
      ca.certFile,
      '--tls-key',
      ca.keyFile,
    ]);
    expect(same).toMatchObject({ code: 0, stdout: init.stdout });
    rmSync(caDir, { recursive: true, force: true });
  });

  it('--insecure-no-tls: hub init without the flag prints UseTls=false for the bound port', async () => {
    const dataDir = join(dir, 'plain');
    const hub = await startHub(dataDir, ['--insecure-no-tls']);
    const port = Number(/hub listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(hub.output())?.[1]);
    const init = await runPrintedInit(hub);
    expect(init).toMatchObject({ code: 0, stderr: '' });
    expect(init.stdout).toMatch(
      new RegExp(
        `^HostName=127\\.0\\.0\\.1:${port};SharedAccessKeyName=service;SharedAccessKey=[^;]+;UseTls=false\\n$`,
      ),
    );
    await useStrings(
      init.stdout.trim(),
      'plain',
      [],
      {},
      'WARN  TLS IS OFF for this hub (UseTls=false): credentials and traffic travel in clear text.\n',
    );
  });

  it('hub init flags that contradict how the hub serves are refused, and nothing changes', async () => {
    const dataDir = join(dir, 'contradict');
    const hub = await startHub(dataDir, []);
    const port = Number(/hub listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(hub.output())?.[1]);
    const good = await runPrintedInit(hub);
    const hint = `hint: The data dir records how its hub serves (${join(dataDir, 'serving.json')}): run \`dstream hub init --data-dir ${dataDir}\` without that flag, or restart the hub with the flags you want.\n`;
    const plain = await runCli(['hub', 'init', '--data-dir', dataDir, '--insecure-no-tls']);
    expect(plain).toMatchObject({ code: 2, stdout: '' });
    expect(plain.stderr).toMatch(
      /^error: --insecure-no-tls contradicts the data dir: this hub serves its self-signed certificate [0-9A-F:]{23}\.\.\.\n/,
    );
    expect(plain.stderr.endsWith(hint)).toBe(true);
    const listen = await runCli([
      'hub',
      'init',
      '--data-dir',
      dataDir,
      '--listen',
      '127.0.0.1:8443',
    ]);
    expect(listen).toMatchObject({
      code: 2,
      stdout: '',
      stderr: `error: --listen 127.0.0.1:8443 contradicts the data dir: the hub listens on 127.0.0.1:${port}\n${hint}`,
    });
    const made = await createSelfSignedCertificate('another', ['127.0.0.1']);
    writeFileSync(join(dir, 'other-cert.pem'), made.cert);
    writeFileSync(join(dir, 'other-key.pem'), made.key);
    const cert = await runCli([
      'hub',
      'init',
      '--data-dir',
      dataDir,
      '--tls-cert',
      join(dir, 'other-cert.pem'),
      '--tls-key',
      join(dir, 'other-key.pem'),
    ]);
    expect(cert).toMatchObject({ code: 2, stdout: '' });
    expect(cert.stderr).toMatch(
      /^error: --tls-cert contradicts the data dir: this hub serves its self-signed certificate/,
    );
    // The record is what it was: the plain command still prints the working string.
    expect(await runCli(['hub', 'init', '--data-dir', dataDir])).toMatchObject({
      code: 0,
      stdout: good.stdout,
    });
    await useStrings(good.stdout.trim(), 'after-refusals');
  });

  it('a hub restarted with another certificate warns that earlier strings no longer verify', async () => {
    const dataDir = join(dir, 'changed');
    const first = await startHub(dataDir, []);
    const before = await runPrintedInit(first);
    expect(await first.stop()).toBe(0);
    const caDir = makeTempDir('dstream-ca-');
    const ca = makeTestCa(caDir, ['127.0.0.1']);
    const second = await startHub(dataDir, ['--tls-cert', ca.certFile, '--tls-key', ca.keyFile]);
    expect(second.output()).toMatch(
      new RegExp(
        `WARN  TLS changed since this data dir was last used: it served its self-signed certificate [0-9A-F:]{23}\\.\\.\\., now --tls-cert ${ca.certFile.replace(/[.]/g, '\\.')}\\. Connection strings printed before no longer verify`,
      ),
    );
    const after = await runPrintedInit(second);
    expect(after.code).toBe(0);
    expect(after.stdout).not.toBe(before.stdout);
    expect(after.stdout).not.toContain('CertificateFingerprint');
    await useStrings(after.stdout.trim(), 'after-change', ['--ca', ca.caFile]);
    rmSync(caDir, { recursive: true, force: true });
  });
});

describe('cluster nodes started with --tls-cert', () => {
  let cluster: TestCluster;
  let ca: TestCa;

  beforeAll(async () => {
    const caDir = makeTempDir('dstream-cluster-ca-');
    ca = makeTestCa(caDir, ['localhost', '127.0.0.1']);
    cluster = await startTestCluster({ tls: ca });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it("any node's data dir gives, without flags, a string naming the balancer that verifies by the CA", async () => {
    const node = cluster.nodes[1];
    if (!node) throw new Error('no node');
    const printed = await runPrintedInit(node.proc);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(cluster.serviceString + '\n');
    expect(printed.stdout).toMatch(
      new RegExp(`^HostName=127\\.0\\.0\\.1:${cluster.lbPort};SharedAccessKeyName=service;`),
    );
    expect(printed.stdout).not.toContain('CertificateFingerprint');
    // No node made a certificate of its own.
    expect(readFileSync(join(cluster.dir, 'n2', 'serving.json'), 'utf8')).toContain(
      '"mode": "files"',
    );
    await useStrings(printed.stdout.trim(), 'cluster-ca', ['--ca', ca.caFile]);
  });

  it('a stream asked for on a node that does not hold the device hops to the one that does, verified by the certificate the nodes serve, on both carriers', async () => {
    // Through the balancer a stream hops only when round robin lands it elsewhere; here the
    // service string names a node that does not hold the device, so every stream hops.
    const trust = ['--ca', ca.caFile];
    const added = await runCli([
      'device',
      'add',
      'cluster-hop',
      '--connection-string',
      cluster.serviceString,
      ...trust,
    ]);
    expect(added.code).toBe(0);
    const agent = spawn([
      'agent',
      '--connection-string',
      added.stdout.trim(),
      ...trust,
      '--target',
      `echo=127.0.0.1:${echo.port}`,
    ]);
    await agent.waitForLine(/connected to the hub/);
    const owner = await cluster.ownerOf();
    const other = cluster.nodes.find((n) => n !== owner);
    if (!other) throw new Error('no other node');
    const lbHost = `HostName=127.0.0.1:${cluster.lbPort};`;
    expect(cluster.serviceString).toContain(lbHost);
    const direct = cluster.serviceString.replace(lbHost, `HostName=127.0.0.1:${other.port};`);
    for (const transport of ['mux', 'ws']) {
      const payload = randomBytes(256 * 1024).toString('base64');
      const connected = await runCliWithInput(
        ['connect', 'cluster-hop', '--stream', 'echo', '--transport', transport, ...trust],
        payload,
        { DSTREAM_SERVICE_CONNECTION_STRING: direct },
      );
      expect([transport, connected.code, connected.stderr]).toEqual([transport, 0, '']);
      expect(connected.stdout === payload).toBe(true);
    }
    expect(await agent.stop()).toBe(0);
  });
});
