import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quickConfig } from '../../bench/config.js';
import { formatTable } from '../../bench/report.js';
import { runClusterSetupRate } from '../../bench/scenarios/cluster.js';
import { startTargets, stopTargets, type Targets } from '../../bench/stack.js';

/**
 * Issue #7, test 6: the benchmark's setup-rate scenario against a cluster of 1 and of 3
 * nodes (redis-server, haproxy, real processes). Speed is reported, not asserted (npm run
 * bench has the figures, docs/cluster.md the analysis); every stream must open.
 */
describe('cluster: setup-rate scenario with 1 and 3 nodes', () => {
  let targets: Targets;
  beforeAll(async () => {
    targets = await startTargets();
  });
  afterAll(async () => {
    await stopTargets(targets);
  });

  it('opens streams through both clusters without a failure', async () => {
    const figures = await runClusterSetupRate({ ...quickConfig, rateOpeners: 20 }, targets);
    process.stdout.write(`\n${formatTable(figures)}\n`);
    const [one, three, failed] = figures;
    expect(one?.name).toMatch(/cluster of 1 node/);
    expect(three?.name).toMatch(/cluster of 3 nodes/);
    expect(one?.value).toBeGreaterThan(0);
    expect(three?.value).toBeGreaterThan(0);
    expect([failed?.name, failed?.value, failed?.note]).toEqual([
      'failed stream setups (cluster)',
      0,
      undefined,
    ]);
  }, 120_000);
});
