/**
 * Where a new stream's garbage comes from, in one process: `npm run bench:garbage [-- --role
 * hub|agent|proxy --setups N --warm S --top K]`. A fresh hub, agent and proxy (TLS, the
 * multiplexed carrier, as scenario 10 runs them) with their inspectors on loopback; after S
 * seconds of 50 openers and 300 sequential setups (compiled and warm), V8's sampling heap
 * profiler runs in the chosen process over N sequential setups with the objects the
 * collectors freed kept in the samples, and the bytes allocated per setup are printed by the
 * function that allocated them. Why: the setup p99 is the young generation's scavenges (1-3.5
 * ms pauses, about one setup in a hundred meets one: docs/benchmark.md), and how often they
 * come is how much each stream leaves behind.
 */
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { openOnce, openRate } from './scenarios/setup.js';
import { startStack, startTargets, stopTargets } from './stack.js';

const roles = ['hub', 'agent', 'proxy'] as const;
type Role = (typeof roles)[number];

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'hub' },
    setups: { type: 'string', default: '2000' },
    warm: { type: 'string', default: '6' },
    top: { type: 'string', default: '30' },
  },
});
const role = values.role as Role;
const setups = Number(values.setups);
const warmSeconds = Number(values.warm);
const top = Number(values.top);
const positive = (n: number): boolean => Number.isInteger(n) && n > 0;
if (!roles.includes(role) || !positive(setups) || !positive(warmSeconds) || !positive(top)) {
  console.error(
    'usage: setup-garbage [--role hub|agent|proxy] [--setups N] [--warm S] [--top K] (whole numbers > 0)',
  );
  process.exit(2);
}

/** A node of V8's sampling heap profile (the DevTools protocol's SamplingHeapProfileNode). */
interface ProfileNode {
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly selfSize: number;
  readonly children: readonly ProfileNode[];
}

/** A DevTools protocol session on one inspector: `call` sends a method and waits for its answer. */
async function inspect(url: string): Promise<{
  call: (method: string, params?: object) => Promise<Record<string, unknown>>;
  close: () => void;
}> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.on('error', (error) => console.error(`inspector: ${error.message}`));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let next = 0;
  const waiting = new Map<number, (answer: Record<string, unknown>) => void>();
  ws.on('message', (data: Buffer) => {
    const answer = JSON.parse(data.toString('utf8')) as { id?: number } & Record<string, unknown>;
    if (answer.id === undefined) return;
    waiting.get(answer.id)?.(answer);
    waiting.delete(answer.id);
  });
  // The process went away: what waits is answered with an error rather than left hanging.
  ws.on('close', () => {
    for (const answer of waiting.values()) answer({ error: 'the inspector connection closed' });
    waiting.clear();
  });
  return {
    call: (method, params = {}) =>
      new Promise((resolve) => {
        const id = ++next;
        waiting.set(id, resolve);
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

const where = (node: ProfileNode): string => {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url.replace(/^file:\/\/\/.*?\/(dist|node_modules)\//, '$1/');
  return `${functionName || '(anonymous)'} ${file}${file ? `:${lineNumber + 1}` : ''}`;
};

const targets = await startTargets();
try {
  const stack = await startStack(targets, {
    tls: true,
    endFlags: ['--transport', 'mux'],
    // Port 0: each process its own, printed on its stderr; loopback only.
    nodeArgs: ['--inspect=127.0.0.1:0'],
  });
  try {
    const url = (await stack[role].waitFor(/ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/))[0];
    await openRate(stack.ports.greet, 50, warmSeconds);
    for (let i = 0; i < 300; i++) await openOnce(stack.ports.greet);
    const session = await inspect(url);
    try {
      await session.call('HeapProfiler.enable');
      const started = await session.call('HeapProfiler.startSampling', {
        samplingInterval: 256,
        includeObjectsCollectedByMinorGC: true,
        includeObjectsCollectedByMajorGC: true,
      });
      if (started.error) throw new Error(`startSampling: ${JSON.stringify(started.error)}`);
      for (let i = 0; i < setups; i++) await openOnce(stack.ports.greet);
      const stopped = await session.call('HeapProfiler.stopSampling');
      const profile = (stopped.result as { profile?: { head: ProfileNode } } | undefined)?.profile;
      if (!profile) throw new Error(`stopSampling: ${JSON.stringify(stopped.error ?? stopped)}`);
      const bytes = new Map<string, number>();
      let total = 0;
      const walk = (node: ProfileNode): void => {
        if (node.selfSize > 0) {
          const site = where(node);
          bytes.set(site, (bytes.get(site) ?? 0) + node.selfSize);
          total += node.selfSize;
        }
        for (const child of node.children) walk(child);
      };
      walk(profile.head);
      console.log(
        `${role}: ${(total / setups / 1024).toFixed(1)} KiB allocated per setup over ${setups} sequential setups (sampled every 256 B, freed objects included); by the allocating function:`,
      );
      for (const [site, n] of [...bytes].sort((a, b) => b[1] - a[1]).slice(0, top))
        console.log(
          `${(n / setups).toFixed(0).padStart(7)} B  ${((100 * n) / total).toFixed(1).padStart(5)}%  ${site}`,
        );
    } finally {
      session.close();
    }
  } finally {
    await stack.stop();
  }
} finally {
  await stopTargets(targets);
}
