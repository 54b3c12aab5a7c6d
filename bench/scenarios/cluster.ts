import type { BenchConfig } from '../config.js';
import { startClusterStack } from '../cluster-stack.js';
import { figure, type Figure } from '../result.js';
import type { Targets } from '../stack.js';
import { openRate } from './setup.js';

/**
 * Scenario 8: the setup-rate scenario (4) against a cluster, with one node and with three,
 * each behind haproxy with Redis. Stream requests land on any node and are routed to the
 * one holding the device, so this measures the cluster's overhead; on a machine with few
 * cores three nodes share the same CPUs and cannot show a speed-up.
 */
export async function runClusterSetupRate(cfg: BenchConfig, targets: Targets): Promise<Figure[]> {
  const rates: { nodes: number; rate: number; ok: number; failed: number; firstError?: string }[] =
    [];
  for (const nodes of [1, 3]) {
    const stack = await startClusterStack(targets, nodes);
    try {
      const result = await openRate(stack.greetPort, cfg.rateOpeners, cfg.rateSeconds);
      rates.push({ nodes, ...result });
      if (result.failed > 0)
        process.stderr.write(
          `\n  ${nodes}-node cluster: ${result.failed} failed; what its processes logged:\n    ` +
            stack.problems().slice(-20).join('\n    ') +
            '\n',
        );
    } finally {
      await stack.stop();
    }
  }
  const [one, three] = rates as [(typeof rates)[0], (typeof rates)[0]];
  const failed = one.failed + three.failed;
  const firstError = one.firstError ?? three.firstError;
  return [
    figure({
      scenario: 8,
      name: `new streams per second, cluster of 1 node (${cfg.rateOpeners} openers)`,
      value: one.rate,
      unit: '/s',
      note: `${one.ok} opened; redis + haproxy in the path`,
    }),
    figure({
      scenario: 8,
      name: `new streams per second, cluster of 3 nodes (${cfg.rateOpeners} openers)`,
      value: three.rate,
      unit: '/s',
      // "direct" column: the 1-node cluster, so the ratio is what two more nodes bring here.
      baseline: one.rate,
      note: `${three.ok} opened; baseline = 1 node; 2/3 of requests are routed to another node`,
    }),
    figure({
      scenario: 8,
      name: 'failed stream setups (cluster)',
      value: failed,
      unit: '',
      target: { op: '<', value: 1 },
      ...(firstError ? { note: `first: ${firstError}` } : {}),
    }),
  ];
}
