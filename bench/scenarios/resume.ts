import { dial, sendBytes, waitUntil } from '../client.js';
import { spawnChild, cliPath, type Child } from '../child.js';
import type { BenchConfig } from '../config.js';
import { figure, type Figure } from '../result.js';
import { hubTuning, startStack, type Stack, type Targets } from '../stack.js';
import { download, upload } from './throughput.js';
import { openOnce } from './setup.js';
import { msSince, percentile } from '../proc-stats.js';

/**
 * Scenario 9: what resumable streams (the default between dstream's ends) cost and what they
 * buy. Throughput and setup latency with resumption on, beside the same with `--no-resume`
 * in the same run (the acknowledgements may cost at most 5% of throughput); then one bulk
 * upload with the hub killed (SIGKILL) half-way and started again on its port and data dir:
 * the time from the new hub listening to bytes reaching the device again (target under 1 s),
 * and the bytes the proxy sent again.
 */
export async function runResumption(cfg: BenchConfig, targets: Targets): Promise<Figure[]> {
  const n = cfg.bulkBytes;
  const size = `${Math.round(n / 1024 ** 2)} MiB`;
  const measure = async (stack: Stack): Promise<{ up: number; down: number; setupP50: number }> => {
    const up = await upload(targets, stack.ports.sink, n);
    const down = await download(stack.ports.source, n);
    const setups: number[] = [];
    for (let i = 0; i < cfg.setups; i++) setups.push(await openOnce(stack.ports.greet));
    return { up, down, setupP50: percentile(setups, 50) };
  };
  const plainStack = await startStack(targets, { tls: true, endFlags: ['--no-resume'] });
  let plain: Awaited<ReturnType<typeof measure>>;
  try {
    plain = await measure(plainStack);
  } finally {
    await plainStack.stop();
  }
  const stack = await startStack(targets, { tls: true });
  let extraHub: Child | undefined;
  try {
    const on = await measure(stack);
    // The same upload again, with the hub killed half-way.
    const ended = targets.sink.nextEnd();
    const socket = await dial(stack.ports.sink);
    socket.resume();
    const sent = sendBytes(socket, n);
    const arrived = (): number => Math.max(0, ...targets.sink.liveCounts());
    await waitUntil(() => arrived() >= n / 2, 120_000, 'half the upload');
    // kill -9 (its own process group), then wait for it to be gone.
    process.kill(-stack.hub.pid, 'SIGKILL');
    await stack.hub.stop();
    const atKill = arrived();
    extraHub = spawnChild(process.execPath, [
      cliPath,
      'hub',
      '--data-dir',
      stack.dataDir,
      '--listen',
      `127.0.0.1:${stack.hubPort}`,
      ...hubTuning,
    ]);
    await extraHub.waitFor(/hub listening/);
    const listening = process.hrtime.bigint();
    const atListen = arrived();
    await waitUntil(() => arrived() > Math.max(atKill, atListen), 120_000, 'bytes flowing again');
    const backAfterMs = msSince(listening);
    await sent;
    const result = await ended;
    socket.destroy();
    if (result.bytes !== n) throw new Error(`resume: sink got ${result.bytes} of ${n} bytes`);
    const resumed = stack.proxy
      .output()
      .split('\n')
      .map((line) => /"msg":"stream resumed".*"replayedBytes":(\d+)/.exec(line)?.[1])
      .find((v) => v !== undefined);
    const note = 'resumption on (the default) beside --no-resume, same run';
    return [
      figure({
        scenario: 9,
        name: `upload ${size}, resumable (baseline: --no-resume)`,
        value: on.up,
        unit: 'MB/s',
        baseline: plain.up,
        ratioTarget: 0.95,
        note,
      }),
      figure({
        scenario: 9,
        name: `download ${size}, resumable (baseline: --no-resume)`,
        value: on.down,
        unit: 'MB/s',
        baseline: plain.down,
        ratioTarget: 0.95,
        note,
      }),
      figure({
        scenario: 9,
        name: 'setup latency p50, resumable (baseline: --no-resume)',
        value: on.setupP50,
        unit: 'ms',
        baseline: plain.setupP50,
        note: `${cfg.setups} sequential connections`,
      }),
      figure({
        scenario: 9,
        name: `hub killed mid-upload (${size}): bytes flowing again after the new hub listens`,
        value: backAfterMs,
        unit: 'ms',
        target: { op: '<', value: 1000 },
        note: 'SIGKILL half-way, restarted on its port and data dir; the upload completes whole',
      }),
      figure({
        scenario: 9,
        name: 'hub killed mid-upload: bytes the proxy sent again',
        value: Number(resumed ?? NaN) / 1024 ** 2,
        unit: 'MiB',
      }),
    ];
  } finally {
    await extraHub?.stop();
    await stack.stop();
  }
}
