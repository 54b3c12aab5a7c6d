/**
 * `npm run bench`: a real hub, agent and proxy (separate processes, TLS on) measured side by
 * side with direct loopback in the same run. Prints a table with every target marked met or
 * missed, writes JSON. Exits non-zero only when the suite itself breaks, never on a slow figure.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { fullConfig, quickConfig, type BenchConfig } from './config.js';
import { formatTable } from './report.js';
import type { Figure } from './result.js';
import { runClusterSetupRate } from './scenarios/cluster.js';
import { runCompare } from './scenarios/compare.js';
import { runBusy, runConcurrency } from './scenarios/concurrency.js';
import { runIdleDevices } from './scenarios/idle-devices.js';
import { runRoundTrip } from './scenarios/round-trip.js';
import { runSetupLatency, runSetupRate } from './scenarios/setup.js';
import { runThroughput } from './scenarios/throughput.js';
import { runResumption } from './scenarios/resume.js';
import { runCarriers } from './scenarios/carriers.js';
import { startStack, startTargets, stopTargets, type Stack, type Targets } from './stack.js';

const usage = `usage: npm run bench -- [--quick] [--scenario 1,2,...] [--out FILE]
                       [--compare 'CMD with {listen} and {target}'] [--compare-name NAME]
                       [--profile DIR]

Scenarios: 1 throughput, 2 round trip, 3 setup latency, 4 setup rate, 5 concurrency,
6 idle devices, 7 hub CPU per GB (TLS and --insecure-no-tls), 8 setup rate against a
cluster of 1 and of 3 nodes (needs redis-server and haproxy), 9 resumption (throughput and
setup with resumption on beside --no-resume; a hub killed mid-transfer).`;

function parse(): {
  cfg: BenchConfig;
  scenarios: Set<number>;
  out: string;
  compare?: { name: string; command: string };
  profileDir: string | undefined;
} {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      scenario: { type: 'string' },
      out: { type: 'string' },
      compare: { type: 'string' },
      'compare-name': { type: 'string', default: 'compare' },
      profile: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const scenarios = new Set(
    (values.scenario ?? '1,2,3,4,5,6,7,8,9,10').split(',').map((s) => Number(s.trim())),
  );
  for (const s of scenarios)
    if (!(Number.isInteger(s) && s >= 1 && s <= 10)) {
      console.error(`--scenario: expected numbers from 1 to 10\n${usage}`);
      process.exit(2);
    }
  const cfg = values.quick ? quickConfig : fullConfig;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return {
    cfg,
    scenarios,
    out: values.out ?? join('.bench-results', `bench-${values.quick ? 'quick-' : ''}${stamp}.json`),
    ...(values.compare
      ? { compare: { name: values['compare-name'], command: values.compare } }
      : {}),
    profileDir: values.profile,
  };
}

async function main(): Promise<void> {
  const { cfg, scenarios, out, compare, profileDir } = parse();
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    kernel: release(),
    node: process.version,
  };
  console.log(
    `dstream bench${cfg.quick ? ' (--quick)' : ''}: ${machine.cores} x ${machine.cpu}, node ${machine.node}`,
  );
  const figures: Figure[] = [];
  const step = async (label: string, run: () => Promise<Figure[]>): Promise<void> => {
    const start = Date.now();
    process.stdout.write(`  ${label} ... `);
    const got = await run();
    figures.push(...got);
    console.log(`${((Date.now() - start) / 1000).toFixed(1)} s`);
  };
  const targets: Targets = await startTargets();
  let failure: unknown;
  try {
    const needsTls = [1, 2, 3, 4, 5, 6, 7].some((s) => scenarios.has(s));
    if (needsTls) {
      // Each scenario gets a fresh stack, so memory and CPU readings are its own.
      const withStack = async (
        label: string,
        run: (stack: Stack) => Promise<Figure[]>,
      ): Promise<void> => {
        const stack = await startStack(targets, { tls: true, profileDir });
        if (profileDir)
          console.log(
            `  (CPU profiles in ${profileDir}: hub ${stack.hub.pid}, agent ${stack.agent.pid}, proxy ${stack.proxy.pid})`,
          );
        try {
          await step(label, () => run(stack));
        } finally {
          await stack.stop();
        }
      };
      if (scenarios.has(1) || scenarios.has(7))
        await withStack('1/7 bulk throughput, hub CPU (TLS)', (s) =>
          runThroughput(cfg, s, targets, 'TLS'),
        );
      if (scenarios.has(2)) await withStack('2 round trip', (s) => runRoundTrip(cfg, s, targets));
      if (scenarios.has(3))
        await withStack('3 setup latency', (s) => runSetupLatency(cfg, s, targets));
      if (scenarios.has(4)) await withStack('4 setup rate', (s) => runSetupRate(cfg, s, targets));
      if (scenarios.has(5)) {
        await withStack('5 concurrent streams', (s) => runConcurrency(cfg, s));
        await withStack('5 busy streams', (s) => runBusy(cfg, s, targets));
      }
      if (scenarios.has(6)) await withStack('6 idle devices', (s) => runIdleDevices(cfg, s));
    }
    if (scenarios.has(7)) {
      const plain = await startStack(targets, { tls: false, profileDir });
      try {
        await step('7 hub CPU (--insecure-no-tls)', () =>
          runThroughput(cfg, plain, targets, 'no TLS'),
        );
      } finally {
        await plain.stop();
      }
    }
    if (scenarios.has(8))
      await step('8 setup rate, cluster of 1 and 3 nodes', () => runClusterSetupRate(cfg, targets));
    if (scenarios.has(9))
      await step('9 resumption: cost, and a hub killed mid-transfer', () =>
        runResumption(cfg, targets),
      );
    if (scenarios.has(10))
      await step('10 carriers: mux beside ws, each end', () => runCarriers(cfg, targets));
    if (compare)
      await step(`compare: ${compare.name}`, () =>
        runCompare(cfg, targets, compare.name, compare.command),
      );
  } catch (error) {
    // Keep what was measured: print the table so far, then fail.
    failure = error;
  } finally {
    await stopTargets(targets);
  }
  console.log('');
  console.log(formatTable(figures));
  mkdirSync(dirname(out), { recursive: true });
  const json = JSON.stringify(
    { time: new Date().toISOString(), quick: cfg.quick, machine, config: cfg, figures },
    null,
    2,
  );
  writeFileSync(out, json + '\n');
  console.log(`\nwrote ${out}`);
  if (failure instanceof Error) throw failure;
  if (failure !== undefined) throw new Error('a scenario failed');
}

main().catch((error: unknown) => {
  console.error(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  process.exit(1);
});
