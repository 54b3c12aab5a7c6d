import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { cliPath } from '../child.js';
import { dial, firstData } from '../client.js';
import type { BenchConfig } from '../config.js';
import { msSince, percentile } from '../proc-stats.js';
import { figure, type Figure } from '../result.js';
import { benchDevice, type Stack, type Targets } from '../stack.js';

/** Close our side and wait for the peer to finish: a clean end, as ssh's exit would be. */
export function closeGracefully(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    // Cleared at the close: a timer left to run out held each socket for its 10 s, 20,000 of
    // them at 2,000 new streams a second, in the load generator that shares the two cores
    // with the processes measured.
    const timer = setTimeout(() => socket.destroy(), 10_000).unref();
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.resume();
    socket.end();
  });
}

/** One connection: ms from connect() to the first byte from the device-side greeter. */
export async function openOnce(port: number): Promise<number> {
  const start = process.hrtime.bigint();
  const socket = await dial(port);
  await firstData(socket);
  const ms = msSince(start);
  await closeGracefully(socket);
  return ms;
}

/**
 * ms from spawning `args` (a Node process) until the first byte on its stdout, as ssh waits on
 * a ProxyCommand's; its stdin is then closed, and it must exit 0.
 */
export function execToFirstByte(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    let ms: number | undefined;
    child.on('error', reject);
    child.stdin.on('error', () => undefined);
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.once('data', () => {
      ms = msSince(start);
      child.stdin.end();
    });
    child.stdout.resume();
    child.on('close', (code) => {
      if (ms !== undefined && code === 0) resolve(ms);
      else
        reject(
          new Error(
            `${args.slice(1, 2).join(' ') || 'node'} exited with ${code}${ms === undefined ? ' before its first byte' : ''}: ${stderr.slice(0, 300)}`,
          ),
        );
    });
  });
}

/** A bare Node process that connects to `port` and copies its first bytes to stdout. */
const bareNodeClient = (port: number): string[] => [
  '-e',
  `const s = require('node:net').connect(${port}, '127.0.0.1');
s.once('data', (d) => process.stdout.write(d)).resume();
process.stdin.on('end', () => s.end()).resume();
s.on('close', () => process.exit(0));`,
];

/** Scenario 3: setup latency over sequential connections, through the tunnel and direct. */
export async function runSetupLatency(
  cfg: BenchConfig,
  stack: Stack,
  targets: Targets,
): Promise<Figure[]> {
  const direct: number[] = [];
  const tunnel: number[] = [];
  for (let i = 0; i < cfg.setups; i++) direct.push(await openOnce(targets.greet.port));
  for (let i = 0; i < cfg.setups; i++) tunnel.push(await openOnce(stack.ports.greet));
  const note = `${cfg.setups} sequential connections; from connect() to the target's first byte`;
  // `dstream connect` as ssh runs it, a process per connection, against a bare Node process
  // that connects straight to the target: what start-up costs before the stream's own setup.
  const runs = cfg.quick ? 5 : 20;
  const bare: number[] = [];
  const connect: number[] = [];
  for (let i = 0; i < runs; i++) {
    bare.push(await execToFirstByte(bareNodeClient(targets.greet.port)));
    connect.push(
      await execToFirstByte([cliPath, 'connect', benchDevice, '--stream', 'greet'], {
        DSTREAM_SERVICE_CONNECTION_STRING: stack.serviceString,
      }),
    );
  }
  return [
    figure({
      scenario: 3,
      name: 'stream setup latency, p50',
      value: percentile(tunnel, 50),
      unit: 'ms',
      baseline: percentile(direct, 50),
      target: { op: '<', value: 5 },
      note,
    }),
    figure({
      scenario: 3,
      name: 'stream setup latency, p99',
      value: percentile(tunnel, 99),
      unit: 'ms',
      baseline: percentile(direct, 99),
      target: { op: '<', value: 25 },
      note,
    }),
    figure({
      scenario: 3,
      name: '`dstream connect` (an ssh ProxyCommand): from exec to the first byte, p50',
      value: percentile(connect, 50),
      unit: 'ms',
      baseline: percentile(bare, 50),
      note: `${runs} runs in turns with the baseline, a bare Node process connecting straight to the target`,
    }),
  ];
}

/** New connections per second from `openers` concurrent loops for `seconds`, and failures. */
export async function openRate(
  port: number,
  openers: number,
  seconds: number,
): Promise<{ rate: number; ok: number; failed: number; firstError?: string }> {
  const deadline = Date.now() + seconds * 1000;
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: openers }, async () => {
      while (Date.now() < deadline) {
        try {
          await openOnce(port);
          ok++;
        } catch (error) {
          failed++;
          firstError ??= error instanceof Error ? error.message : String(error);
        }
      }
    }),
  );
  const rate = ok / (msSince(start) / 1000);
  return { rate, ok, failed, ...(firstError ? { firstError } : {}) };
}

/** Scenario 4: stream setup rate with concurrent openers; zero failures expected. */
export async function runSetupRate(
  cfg: BenchConfig,
  stack: Stack,
  targets: Targets,
): Promise<Figure[]> {
  const direct = await openRate(targets.greet.port, cfg.rateOpeners, cfg.rateSeconds);
  const tunnel = await openRate(stack.ports.greet, cfg.rateOpeners, cfg.rateSeconds);
  return [
    figure({
      scenario: 4,
      name: `new streams per second (${cfg.rateOpeners} openers, ${cfg.rateSeconds} s)`,
      value: tunnel.rate,
      unit: '/s',
      baseline: direct.rate,
      target: { op: '>=', value: 500 },
      note: `${tunnel.ok} opened`,
    }),
    figure({
      scenario: 4,
      name: 'failed stream setups',
      value: tunnel.failed,
      unit: '',
      target: { op: '<', value: 1 },
      ...(tunnel.firstError ? { note: `first: ${tunnel.firstError}` } : {}),
    }),
  ];
}
