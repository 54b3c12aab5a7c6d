import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';

/**
 * The outside programs a cluster runs with: redis-server and haproxy, started as an operator
 * would, on loopback, without guessing a free port. Used by the benchmark and the tests.
 */

/** True if `command` is on the PATH. */
export function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

/** A redis-server on a unix socket (Redis cannot bind port 0 and say which port it got). */
export interface RedisServer {
  /** For --redis: unix:/path/to/redis.sock */
  readonly url: string;
  readonly socket: string;
  /** Start again on the same socket and data (after stop or kill). */
  restart(): Promise<void>;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Start redis-server in `dir`. AOF with fsync on every write: a restart, even after kill -9,
 * keeps what was written (as a production Redis holding a registry should be configured).
 */
export async function startRedisServer(dir: string): Promise<RedisServer> {
  if (!onPath('redis-server'))
    throw new Error('redis-server is not installed (apt-get install redis-server)');
  const socket = join(dir, 'redis.sock');
  let child: ChildProcess | undefined;
  const ping = (): Promise<boolean> =>
    new Promise((resolve) => {
      const probe = spawn('redis-cli', ['-s', socket, 'ping'], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let answer = '';
      probe.stdout.on('data', (d: Buffer) => (answer += d.toString()));
      probe.on('exit', () => resolve(answer.trim() === 'PONG'));
      probe.on('error', () => resolve(false));
    });
  const launch = async (): Promise<void> => {
    const proc = spawn(
      'redis-server',
      [
        ...['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700'],
        ...['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''],
        ...['--loglevel', 'warning'],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 10_000;
    while (!(await ping())) {
      if (proc.exitCode !== null)
        throw new Error(`redis-server exited with ${proc.exitCode}:\n${out}`);
      if (Date.now() > deadline) throw new Error(`redis-server did not answer in 10 s:\n${out}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const exited = async (): Promise<void> => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  };
  await launch();
  return {
    url: `unix:${socket}`,
    socket,
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

/** A listening socket haproxy will take over: its port is known before anything starts. */
export interface BalancerSocket {
  readonly port: number;
  readonly server: Server;
  readonly fd: number;
}

/** Listen on 127.0.0.1, port 0; haproxy inherits the descriptor as fd 3 (`bind fd@3`). */
export async function listenForBalancer(): Promise<BalancerSocket> {
  const server = createServer();
  // Connections are haproxy's to take; this process never keeps any.
  server.on('connection', (socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  return { server, port, fd };
}

/** Hub flags for nodes behind startHaproxy's balancer: trust its PROXY headers. */
export const behindBalancerFlags: readonly string[] = ['--proxy-protocol-from', '127.0.0.1'];

export interface HaproxyOptions {
  /** How long a node has to answer a /readyz check (default 300 ms: a stopped node is out in
   * well under a second; a saturated one may be taken out too, so a benchmark gives more). */
  readonly checkTimeoutMs?: number;
}

function haproxyConfig(backends: readonly number[], options: HaproxyOptions): string {
  return [
    'global',
    '  maxconn 4000',
    'defaults',
    '  mode tcp',
    '  timeout connect 1s',
    '  timeout client 1h',
    '  timeout server 1h',
    `  timeout check ${options.checkTimeoutMs ?? 300}ms`,
    '  retries 2',
    '  option redispatch',
    'listen hub',
    '  bind fd@3',
    '  balance roundrobin',
    // A stopped process still completes TCP handshakes (the kernel does), so the check is
    // an HTTPS request: a node that cannot answer /readyz in time gets no new connections.
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    // The nodes learn each client's address from a PROXY v2 header (health checks too), so
    // per-address limits and the audit log do not see haproxy as every client.
    '  default-server send-proxy-v2 check check-ssl check-send-proxy verify none inter 200ms fall 2 rise 1',
    ...backends.map((port, i) => `  server n${i + 1} 127.0.0.1:${port}`),
    '',
  ].join('\n');
}

/**
 * haproxy in TCP mode, round robin over `backends` (hub node ports on 127.0.0.1), taking
 * nodes out while their /readyz fails. Resolves once it runs; the caller's copy of the
 * listening socket is closed.
 */
export async function startHaproxy(
  dir: string,
  listening: BalancerSocket,
  backends: readonly number[],
  options: HaproxyOptions = {},
): Promise<ChildProcess> {
  if (!onPath('haproxy')) throw new Error('haproxy is not installed (apt-get install haproxy)');
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(config, haproxyConfig(backends, options));
  const stdio = ['ignore', 'pipe', 'pipe', listening.fd] as const;
  const check = spawn('haproxy', ['-c', '-f', config], { stdio: [...stdio] });
  let checkOut = '';
  check.stdout?.on('data', (d: Buffer) => (checkOut += d.toString()));
  check.stderr?.on('data', (d: Buffer) => (checkOut += d.toString()));
  const valid = await new Promise<number | null>((resolve) => check.on('exit', resolve));
  if (valid !== 0) throw new Error(`haproxy rejects its configuration:\n${checkOut}`);
  const child = spawn('haproxy', ['-db', '-f', config], { stdio: [...stdio] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  child.once('exit', (code, signal) => {
    if (signal !== 'SIGTERM' && signal !== 'SIGKILL')
      process.stderr.write(`haproxy exited (${code ?? signal}):\n${out}\n`);
  });
  // haproxy has its own copy of the socket now.
  listening.server.close();
  return child;
}
