import type { Socket } from 'node:net';
import { dial, firstData } from '../client.js';
import type { BenchConfig } from '../config.js';
import { msSince, percentile } from '../proc-stats.js';
import { figure, type Figure } from '../result.js';
import type { Stack, Targets } from '../stack.js';

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
