import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The CLI as users run it. bench/ is compiled to .bench-build/bench/, two levels down; the
 * tests import bench/ from source, one level down.
 */
export const cliPath = [
  fileURLToPath(new URL('../../bin/dstream.js', import.meta.url)),
  fileURLToPath(new URL('../bin/dstream.js', import.meta.url)),
].find((path) => existsSync(path)) as string;

/** A long-running child process whose stderr can be waited on. */
export interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(): Promise<void>;
}

export function spawnChild(
  command: string,
  args: readonly string[],
  env: Record<string, string> = {},
  /** Written to stdin, which is then closed; null keeps stdin open for the caller to write. */
  input?: string | null,
): Child {
  const child = spawn(command, args, {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    // Its own process group, so a shell command (--compare) is stopped with its children.
    detached: true,
  });
  if (typeof input === 'string') child.stdin?.end(input);
  child.stdin?.on('error', () => undefined);
  let text = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer): void => {
    // Keep the head (ports, fingerprints) and the tail (errors); a busy log must not grow memory.
    text = text.length > 1_000_000 ? text.slice(0, 200_000) + text.slice(-200_000) : text;
    text += d.toString();
    for (const w of waiters) w();
  };
  child.stderr?.on('data', onData);
  child.stdout?.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.pid === undefined) throw new Error(`cannot start ${command}`);
  return {
    process: child,
    pid: child.pid,
    output: () => text,
    waitFor: (pattern, timeoutMs = 20_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const m = text.match(pattern);
          if (m) {
            done();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new Error(
              `${command}: no output matching ${pattern} in ${timeoutMs} ms:\n${text.slice(-2000)}`,
            ),
          );
        }, timeoutMs);
        const onExit = (): void => {
          done();
          reject(new Error(`${command} exited before printing ${pattern}:\n${text.slice(-2000)}`));
        };
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
        };
        waiters.add(check);
        child.once('exit', onExit);
        check();
      }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const kill = (signal: NodeJS.Signals): void => {
          try {
            process.kill(-(child.pid ?? 0), signal);
          } catch {
            child.kill(signal);
          }
        };
        kill('SIGTERM');
        const timer = setTimeout(() => kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

/** Run the CLI to completion; returns stdout (throws with stderr on failure). */
export function runCliOnce(args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (input !== undefined) child.stdin?.end(input);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`dstream ${args.join(' ')}: ${stderr}`)),
    );
  });
}
