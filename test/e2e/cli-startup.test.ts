import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';

const recorder = fileURLToPath(new URL('../fixtures/import-recorder.mjs', import.meta.url));

/** What the hub alone needs: `dstream connect` (once per ssh run) must not load any of it. */
const hubOnly = [
  '/dist/hub/server.js',
  '/dist/hub/store/data-dir.js',
  '/node_modules/better-sqlite3/',
  '/node_modules/mqtt-packet/',
  '/node_modules/prom-client/',
];
/** Loaded when a profile is saved, or a spinner shows; not to read a profile. */
const whenNeeded = ['/node_modules/conf/', '/node_modules/ora/'];

interface NodeRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run `node args...` to its end: exit code and output. */
function runNode(args: readonly string[], env: Record<string, string>): Promise<NodeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Run `dstream args...` under the import recorder: what it printed and every module's URL. */
async function runRecorded(
  args: readonly string[],
  env: Record<string, string>,
  importsFile: string,
): Promise<NodeRun & { readonly imports: string[] }> {
  const run = await runNode(['--import', recorder, cliPath, ...args], {
    ...env,
    DSTREAM_TEST_IMPORTS: importsFile,
  });
  return { ...run, imports: readFileSync(importsFile, 'utf8').split('\n').filter(Boolean) };
}

const loaded = (imports: readonly string[], parts: readonly string[]): string[] =>
  parts.filter((part) => imports.some((url) => url.includes(part)));

describe('what a command loads at start', () => {
  let dir: string;
  let serviceString: string;

  beforeAll(async () => {
    dir = makeTempDir('dstream-startup-');
    // A port nothing listens on: the command fails fast after it has read its credential.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const key = Buffer.alloc(32, 9).toString('base64');
    serviceString = `HostName=127.0.0.1:${port};SharedAccessKeyName=service;SharedAccessKey=${key}`;
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('login saves a profile through conf; connect reads it without conf, the hub modules or ora', async () => {
    const env = { XDG_CONFIG_HOME: join(dir, 'xdg') };
    mkdirSync(env.XDG_CONFIG_HOME, { recursive: true });

    const login = await runRecorded(
      ['login', '--no-verify', serviceString],
      env,
      join(dir, 'login-imports'),
    );
    expect(login.code, login.stderr).toBe(0);
    // The recorder sees what is loaded: saving the profile loaded conf.
    expect(loaded(login.imports, whenNeeded)).toEqual(['/node_modules/conf/']);

    const connect = await runRecorded(['connect', 'pi-01'], env, join(dir, 'connect-imports'));
    expect(connect.code).toBe(1);
    // It read the saved profile (the hub it names) and tried to reach that hub.
    expect(connect.stderr).toContain(`cannot reach the hub at ${serviceString.split(/[=;]/)[1]}`);
    // One bundled file (scripts/bundle-connect.mjs), not the full CLI's modules.
    expect(connect.imports.filter((url) => url.includes('/dist/'))).toEqual([
      expect.stringMatching(/\/dist\/connect\.mjs$/),
    ]);
    expect(loaded(connect.imports, [...hubOnly, ...whenNeeded])).toEqual([]);
  });

  it('connect from its bundle says and does what the full CLI says for it', async () => {
    const fullCli = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
    // No credential anywhere: the bad-input cases stop before any network.
    const env = {
      XDG_CONFIG_HOME: join(dir, 'empty-xdg'),
      DSTREAM_SERVICE_CONNECTION_STRING: '',
      DSTREAM_PROFILE: '',
    };
    const run = (argv: readonly string[], viaFullCli: boolean): Promise<NodeRun> =>
      runNode(
        viaFullCli
          ? [
              '--input-type=module',
              '-e',
              `const { main } = await import(${JSON.stringify(fullCli)}); process.exitCode = await main(${JSON.stringify(['node', 'dstream', ...argv])});`,
            ]
          : [cliPath, ...argv],
        env,
      );
    for (const argv of [
      ['connect', '--help'],
      ['connect'],
      ['connect', 'pi-01', '--bogus'],
      ['connect', 'pi-01'],
      ['connect', 'pi-01', '--connection-string', serviceString, '--remote-port', '0'],
    ]) {
      const bundled = await run(argv, false);
      expect(bundled, argv.join(' ')).toEqual(await run(argv, true));
      expect(bundled.code, argv.join(' ')).toBe(argv[1] === '--help' ? 0 : 2);
    }
  });

  it('the hub modules load only when a hub runs: not for help, a device or a proxy command', async () => {
    for (const args of [
      ['hub', '--help'],
      ['proxy', '--help'],
      ['device', '--help'],
    ]) {
      const run = await runRecorded(args, {}, join(dir, `${args[0] ?? ''}-imports`));
      expect(run.code, run.stderr).toBe(0);
      expect(loaded(run.imports, [...hubOnly, ...whenNeeded]), args.join(' ')).toEqual([]);
    }
  });
});
