import { dial, readExactly } from '../client.js';
import type { BenchConfig } from '../config.js';
import { msSince, percentile } from '../proc-stats.js';
import { figure, type Figure } from '../result.js';
import type { Stack, Targets } from '../stack.js';

/** Round-trip times (ms) of `count` sequential 64-byte pings to an echo at `port`. */
export async function pingPong(port: number, count: number): Promise<number[]> {
  const socket = await dial(port);
  const ping = Buffer.alloc(64, 1);
  const times: number[] = [];
  const warmup = Math.min(100, count);
  for (let i = 0; i < warmup + count; i++) {
    const start = process.hrtime.bigint();
    const back = readExactly(socket, ping.length);
    socket.write(ping);
    await back;
    if (i >= warmup) times.push(msSince(start));
  }
  socket.destroy();
  return times;
}

/** Scenario 2: 64-byte ping-pong through the tunnel minus the same direct. */
export async function runRoundTrip(
  cfg: BenchConfig,
  stack: Stack,
  targets: Targets,
): Promise<Figure[]> {
  const direct = await pingPong(targets.echo.port, cfg.roundTrips);
  const tunnel = await pingPong(stack.ports.echo, cfg.roundTrips);
  const out: Figure[] = [];
  for (const p of [50, 99]) {
    const t = percentile(tunnel, p);
    const d = percentile(direct, p);
    out.push(
      figure({
        scenario: 2,
        name: `round trip added, p${p} (tunnel ${t.toFixed(3)} ms)`,
        value: t - d,
        unit: 'ms',
        baseline: d,
        ...(p === 50 ? { target: { op: '<' as const, value: 0.3 } } : {}),
        note: 'baseline: direct round trip',
      }),
    );
  }
  return out;
}
