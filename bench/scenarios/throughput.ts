import type { Socket } from 'node:net';
import { dial, drain, sendBytes } from '../client.js';
import type { BenchConfig } from '../config.js';
import { cpuSeconds, msSince } from '../proc-stats.js';
import { figure, type Figure } from '../result.js';
import type { Stack, Targets } from '../stack.js';

/** MB/s of `bytes` sent to the sink through `port` (timed until the sink sees the end). */
export async function upload(targets: Targets, port: number, bytes: number): Promise<number> {
  const ended = targets.sink.nextEnd();
  const start = process.hrtime.bigint();
  const socket = await dial(port);
  socket.resume();
  await sendBytes(socket, bytes);
  const result = await ended;
  socket.destroy();
  if (result.bytes !== bytes) throw new Error(`upload: sink got ${result.bytes} of ${bytes} bytes`);
  return bytes / 1e6 / (Number(result.endedAt - start) / 1e9);
}

/** MB/s of `bytes` read from the source through `port`. */
export async function download(port: number, bytes: number): Promise<number> {
  const start = process.hrtime.bigint();
  const socket: Socket = await dial(port);
  const header = Buffer.alloc(8);
  header.writeBigUInt64BE(BigInt(bytes));
  const got = drain(socket);
  socket.end(header);
  const n = await got;
  const ms = msSince(start);
  socket.destroy();
  if (n !== bytes) throw new Error(`download: got ${n} of ${bytes} bytes`);
  return bytes / 1e6 / (ms / 1000);
}

/** Scenario 1 (bulk throughput each way, vs direct) and 7 (hub CPU seconds per GB relayed). */
export async function runThroughput(
  cfg: BenchConfig,
  stack: Stack,
  targets: Targets,
  label: 'TLS' | 'no TLS',
): Promise<Figure[]> {
  const n = cfg.bulkBytes;
  const directUp = await upload(targets, targets.sink.port, n);
  const cpu0 = cpuSeconds(stack.hub.pid);
  const tunnelUp = await upload(targets, stack.ports.sink, n);
  const directDown = await download(targets.source.port, n);
  const tunnelDown = await download(stack.ports.source, n);
  const cpuPerGb = (cpuSeconds(stack.hub.pid) - cpu0) / ((2 * n) / 1e9);
  const size = `${Math.round(n / 1024 ** 2)} MiB`;
  if (label === 'no TLS')
    return [
      figure({
        scenario: 1,
        name: `upload, ${size}, no TLS`,
        value: tunnelUp,
        unit: 'MB/s',
        baseline: directUp,
      }),
      figure({
        scenario: 7,
        name: 'hub CPU per GB relayed, no TLS',
        value: cpuPerGb,
        unit: 's/GB',
      }),
    ];
  return [
    figure({
      scenario: 1,
      name: `upload (proxy -> device), ${size}`,
      value: tunnelUp,
      unit: 'MB/s',
      baseline: directUp,
      target: { op: '>=', value: 300 },
      ratioTarget: 0.2,
    }),
    figure({
      scenario: 1,
      name: `download (device -> proxy), ${size}`,
      value: tunnelDown,
      unit: 'MB/s',
      baseline: directDown,
      target: { op: '>=', value: 300 },
      ratioTarget: 0.2,
    }),
    figure({
      scenario: 7,
      name: 'hub CPU per GB relayed, TLS both legs',
      value: cpuPerGb,
      unit: 's/GB',
    }),
  ];
}
