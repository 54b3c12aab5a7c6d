import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir } from './hub.js';
import { startEchoServer, type TestServer } from './servers.js';

/** The built CLI (npm test builds first). */
export const cliPath = fileURLToPath(new URL('../../bin/dstream.js', import.meta.url));

// Profiles saved on the developer's machine must not leak into tests: an empty config dir.
const isolatedConfigHome = mkdtempSync(join(tmpdir(), 'dstream-xdg-'));

const baseEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NO_COLOR: '1',
    XDG_CONFIG_HOME: isolatedConfigHome,
  };
  delete env.DSTREAM_SERVICE_CONNECTION_STRING;
  delete env.DSTREAM_DEVICE_CONNECTION_STRING;
  delete env.DSTREAM_PROFILE;
  return env;
};

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Tests start many hubs at once: a hub's MQTT and console listeners get free ports (as
 * --listen does, port 0) unless the test chose one, or none.
 */
function withTestPorts(args: readonly string[]): readonly string[] {
  if (args[0] !== 'hub' || args[1] === 'init') return args;
  const extra: string[] = [];
  if (!args.includes('--mqtt-listen') && !args.includes('--no-mqtt'))
    extra.push('--mqtt-listen', '127.0.0.1:0');
  if (!args.includes('--console-listen') && !args.includes('--no-console'))
    extra.push('--console-listen', '127.0.0.1:0');
  return [...args, ...extra];
}

/** Run `dstream args...` to completion. */
export function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<CliResult> {
  return runCliWithInput(args, undefined, env, timeoutMs);
}

/** Run `dstream args...` with `input` on its stdin (then EOF), to completion. */
export function runCliWithInput(
  args: readonly string[],
  input: string | undefined,
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...withTestPorts(args)], {
      env: { ...baseEnv(), ...env },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (input !== undefined) child.stdin?.end(input);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`dstream ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Run the `dstream hub init ...` command a hub's start-up line names, as printed. */
export async function runPrintedInit(hub: CliProcess): Promise<CliResult> {
  const m = await hub.waitForLine(/service connection string: run `dstream (hub init [^`]+)`/);
  return runCli((m[1] ?? '').split(' '));
}

/** A long-running `dstream` child process whose stderr lines can be waited on. */
export interface CliProcess {
  readonly child: ChildProcess;
  /** stderr so far. */
  output(): string;
  /** Wait for a stderr line matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Send a signal and wait for exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface SpawnOptions {
  /** A pipe on stdin (child.stdin), instead of none. */
  readonly stdin?: boolean;
  /** The hub's own MQTT default, not the test's free port (tests of that default). */
  readonly defaultPorts?: boolean;
  /** Working directory (default: the test process's). */
  readonly cwd?: string;
}

export function spawnCli(
  args: readonly string[],
  env: Record<string, string> = {},
  options: SpawnOptions = {},
): CliProcess {
  const child = spawn(
    process.execPath,
    [cliPath, ...(options.defaultPorts ? args : withTestPorts(args))],
    {
      env: { ...baseEnv(), ...env },
      stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      ...(options.cwd !== undefined && { cwd: options.cwd }),
    },
  );
  let text = '';
  const waiters = new Set<() => void>();
  child.stderr?.on('data', (d: Buffer) => {
    text += d.toString();
    for (const w of waiters) w();
  });
  child.stdout?.resume();
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  return {
    child,
    output: () => text,
    waitForLine: (pattern, timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const m = text.match(pattern);
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stderr:\n${text}`));
        }, timeoutMs);
        const onExit = (): void => {
          cleanup();
          reject(new Error(`process exited before printing ${pattern}; stderr:\n${text}`));
        };
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
        };
        waiters.add(check);
        child.once('exit', onExit);
        check();
      }),
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface CliTunnel {
  readonly dataDir: string;
  readonly hub: CliProcess;
  readonly hubPort: number;
  readonly serviceString: string;
  stop(): Promise<void>;
}

/**
 * Start `dstream hub` on 127.0.0.1:0 as a child process and fetch its service string by
 * running, word for word, the `hub init` command the hub's start-up line tells the user to run.
 */
export async function startCliHub(
  dataDir: string,
  extra: readonly string[] = [],
): Promise<CliTunnel> {
  const hub = spawnCli(['hub', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...extra]);
  const m = await hub.waitForLine(/hub listening on https?:\/\/127\.0\.0\.1:(\d+)/);
  const hubPort = Number(m[1]);
  const init = await runPrintedInit(hub);
  if (init.code !== 0) throw new Error(`hub init failed: ${init.stderr}`);
  return {
    dataDir,
    hub,
    hubPort,
    serviceString: init.stdout.trim(),
    stop: async () => {
      await hub.stop();
    },
  };
}

/** A CLI hub, one registered device whose CLI agent allows the stream `echo` to an echo server. */
export interface CliEchoDevice {
  readonly dir: string;
  readonly hub: CliTunnel;
  readonly echo: TestServer;
  readonly agent: CliProcess;
  readonly deviceString: string;
  /** DSTREAM_SERVICE_CONNECTION_STRING for CLI commands against this hub. */
  readonly env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startCliEchoDevice(
  prefix: string,
  deviceId: string,
  hubArgs: readonly string[] = [],
): Promise<CliEchoDevice> {
  const dir = makeTempDir(prefix);
  const echo = await startEchoServer();
  const hub = await startCliHub(join(dir, 'hub'), hubArgs);
  const env = { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString };
  const added = await runCli(['device', 'add', deviceId], env);
  if (added.code !== 0) throw new Error(`device add failed: ${added.stderr}`);
  const deviceString = added.stdout.trim();
  const agent = spawnCli(['agent', '--target', `echo=127.0.0.1:${echo.port}`], {
    DSTREAM_DEVICE_CONNECTION_STRING: deviceString,
  });
  await agent.waitForLine(/connected to the hub/);
  return {
    dir,
    hub,
    echo,
    agent,
    deviceString,
    env,
    stop: async () => {
      await agent.stop();
      await hub.stop();
      await echo.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * `device add`'s stderr without the lines it prints for the device (how to fetch and start the
 * single-file agent): what is left should be empty (no warning, no error).
 */
export function withoutInstallLines(stderr: string): string {
  return stderr.replace(/^On the device [^\n]*\n(?: {2}[^\n]*\n){2}/, '');
}
