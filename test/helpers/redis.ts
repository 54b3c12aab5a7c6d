import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { hasCommand } from './system.js';

/**
 * A real redis-server for the cluster tests, private to one test file: it listens on a unix
 * socket in the test's temporary directory (Redis cannot bind port 0 and report the port,
 * and a socket path needs no guessing). AOF with fsync on every write, so a restart,
 * even after kill -9, keeps what was written.
 *
 * Cluster mode needs Redis, so there is no skipping: a machine without redis-server fails
 * these tests with a message saying so (.ci/run installs it).
 */
export interface TestRedis {
  /** For --redis: unix:/path/to/redis.sock */
  readonly url: string;
  readonly pid: number;
  /** Start again on the same socket and data (after stop or kill). */
  restart(): Promise<void>;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export function requireRedisServer(): void {
  if (!hasCommand('redis-server'))
    throw new Error(
      'redis-server is not installed; the cluster tests need it (apt-get install redis-server)',
    );
}

export async function startRedis(dir: string): Promise<TestRedis> {
  requireRedisServer();
  const socket = join(dir, 'redis.sock');
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    const proc = spawn(
      'redis-server',
      [
        '--port',
        '0',
        '--unixsocket',
        socket,
        '--unixsocketperm',
        '700',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        '--loglevel',
        'warning',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(
        () => reject(new Error(`redis-server did not start in 10 s:\n${out}`)),
        10_000,
      );
      const onData = (chunk: Buffer): void => {
        out += chunk.toString();
        // With --loglevel warning Redis still prints this line (it is logged at "notice"
        // in older versions): fall back to polling the socket below if it does not.
        if (/Ready to accept connections/.test(out)) finish();
      };
      const finish = (): void => {
        clearTimeout(timer);
        clearInterval(poll);
        resolve();
      };
      proc.stdout?.on('data', onData);
      proc.stderr?.on('data', onData);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        clearInterval(poll);
        reject(new Error(`redis-server exited with ${code}:\n${out}`));
      });
      const poll = setInterval(() => {
        const probe = spawn('redis-cli', ['-s', socket, 'ping'], { stdio: 'pipe' });
        let answer = '';
        probe.stdout.on('data', (d: Buffer) => (answer += d.toString()));
        probe.on('exit', () => {
          if (answer.trim() === 'PONG') finish();
        });
      }, 100);
    });
  };
  const exited = async (): Promise<void> => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  };
  await launch();
  return {
    url: `unix:${socket}`,
    get pid() {
      return child?.pid ?? -1;
    },
    restart: launch,
    kill: async () => {
      child?.kill('SIGKILL');
      await exited();
    },
    stop: async () => {
      child?.kill('SIGTERM');
      await exited();
    },
  };
}
