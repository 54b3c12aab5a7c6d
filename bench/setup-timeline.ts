/**
 * Where one stream's setup time goes, hop by hop: `npm run bench:timeline [-- --setups N
 * --warmup N --gap MS --pings N]`. A fresh hub, agent and proxy (TLS, the multiplexed carrier,
 * as scenario 3 runs them) with timeline-recorder.ts loaded; --warmup setups not counted (2,000
 * by default: V8 compiles the per-stream paths only after a few thousand streams), then N
 * sequential setups as scenario 3 makes them (connect to the proxy's port, wait for the
 * device-side greeter's first byte, close); then, with --pings, scenario 2's round trip
 * (64-byte pings, one at a time, on one stream to the echo target). For each setup and each
 * ping, the recorded marks of the three processes on the shared clock, cut into the steps of
 * the path, and the quartiles of each step.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { dial, firstData, readExactly } from './client.js';
import { percentile, schedStats } from './proc-stats.js';
import { closeGracefully } from './scenarios/setup.js';
import { startStack, startTargets, stopTargets } from './stack.js';
import type { TimelineMarks } from './timeline-recorder.js';

interface Mark {
  readonly at: bigint;
  readonly label: string;
}

interface Message {
  readonly at: bigint;
  readonly direction: 'in' | 'out';
  readonly frames: readonly number[];
  readonly session: string;
}

const open = 1;
const data = 4;

const { values } = parseArgs({
  options: {
    setups: { type: 'string', default: '500' },
    warmup: { type: 'string', default: '2000' },
    gap: { type: 'string', default: '0' },
    pings: { type: 'string', default: '0' },
  },
});
const setups = Number(values.setups);
const warmup = Number(values.warmup);
const gapMs = Number(values.gap);
const pings = Number(values.pings);
if (
  !(Number.isInteger(setups) && setups > 0) ||
  !(Number.isInteger(warmup) && warmup >= 0) ||
  !(gapMs >= 0) ||
  !(Number.isInteger(pings) && pings >= 0)
) {
  console.error(
    'usage: setup-timeline [--setups N (> 0)] [--warmup N (>= 0)] [--gap MS between setups (>= 0)] [--pings N (>= 0)]',
  );
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'dstream-timeline-'));
process.env.DSTREAM_TIMELINE_DIR = dir;
const recorder = fileURLToPath(new URL('./timeline-recorder.js', import.meta.url));
const targets = await startTargets();
const stack = await startStack(targets, {
  tls: true,
  endFlags: ['--transport', 'mux'],
  nodeArgs: ['--import', recorder],
});
const pids = { hub: stack.hub.pid, agent: stack.agent.pid, proxy: stack.proxy.pid };
const scheduled = { ...pids, 'load generator and target': process.pid };
const windows: Array<readonly [bigint, bigint]> = [];
const pingWindows: Array<readonly [bigint, bigint]> = [];
type Sched = ReturnType<typeof schedStats>;
/** Each main thread's counters when the counted setups began. */
const schedBefore: Record<string, Sched> = {};
/** And their growth per counted setup. */
const schedPerSetup: Record<string, Sched> = {};
try {
  for (let i = 0; i < setups + warmup; i++) {
    if (i === warmup)
      for (const [role, pid] of Object.entries(scheduled)) schedBefore[role] = schedStats(pid);
    if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    const start = process.hrtime.bigint();
    const socket = await dial(stack.ports.greet);
    await firstData(socket);
    const end = process.hrtime.bigint();
    // The first `warmup` warm the processes up (code compiled, pools filled) and are not counted.
    if (i >= warmup) windows.push([start, end]);
    await closeGracefully(socket);
  }
  // Per counted setup (its teardown included), each process's main thread on a core and
  // waiting for one: whether the time goes in work or in the two cores' queue.
  for (const [role, pid] of Object.entries(scheduled)) {
    const before = schedBefore[role];
    const after = schedStats(pid);
    if (before)
      schedPerSetup[role] = {
        runNs: (after.runNs - before.runNs) / setups,
        waitNs: (after.waitNs - before.waitNs) / setups,
        slices: (after.slices - before.slices) / setups,
      };
  }
  if (pings > 0) {
    // As scenario 2: one stream, one ping at a time; the first 100 not counted.
    const socket = await dial(stack.ports.echo);
    const ping = Buffer.alloc(64, 1);
    for (let i = 0; i < pings + 100; i++) {
      const start = process.hrtime.bigint();
      const back = readExactly(socket, ping.length);
      socket.write(ping);
      await back;
      if (i >= 100) pingWindows.push([start, process.hrtime.bigint()]);
    }
    await closeGracefully(socket);
  }
} finally {
  // Each process writes its marks as it exits.
  await stack.stop();
  await stopTargets(targets);
}

function read(pid: number): Mark[] {
  const raw = JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as TimelineMarks;
  const marks: Mark[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2)
    marks.push({ at: BigInt(raw[i] as string), label: raw[i + 1] as string });
  return marks.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
}

function messages(marks: readonly Mark[]): Message[] {
  const out: Message[] = [];
  for (const { at, label } of marks) {
    const m = /^(in|out) ([\d,]+) @(\d+)$/.exec(label);
    if (m)
      out.push({
        at,
        direction: m[1] as 'in' | 'out',
        frames: (m[2] as string).split(',').map(Number),
        session: m[3] as string,
      });
  }
  return out;
}

const hub = read(pids.hub);
const agent = read(pids.agent);
const proxy = read(pids.proxy);
rmSync(dir, { recursive: true, force: true });
const hubMessages = messages(hub);
// The hub's carrier connection from the proxy is the one streams are opened on; the agent's,
// the one the hub opens them on (its offers).
const fromService = hubMessages.find((m) => m.direction === 'in' && m.frames.includes(open));
const toDevice = hubMessages.find((m) => m.direction === 'out' && m.frames.includes(open));
if (!fromService || !toDevice) throw new Error('no stream was opened through the hub');
const agentMessages = messages(agent);
const proxyMessages = messages(proxy);
const proxyAccepts = proxy.filter((m) => m.label === 'accept').map((m) => m.at);

/** The first time in `list` at or after `after` for which `pick` holds. */
function firstAfter<T extends { readonly at: bigint }>(
  list: readonly T[],
  after: bigint,
  pick: (t: T) => boolean,
): T | undefined {
  return list.find((t) => t.at >= after && pick(t));
}

const with_ =
  (direction: 'in' | 'out', frame: number, session?: string) =>
  (m: Message): boolean =>
    m.direction === direction &&
    m.frames.includes(frame) &&
    (session === undefined || m.session === session);

type Where = 'proxy' | 'hub' | 'agent' | 'between';
type Steps = ReadonlyArray<readonly [string, Where]>;
type Link = readonly [readonly Message[], (m: Message) => boolean];

/**
 * Cut each window into steps: from its start through the first mark of `first` (if any), then
 * the first message of each link after the one before, to its end. A window whose marks are not
 * all there, in order, inside it is counted as not traced whole.
 */
function cut(
  list: ReadonlyArray<readonly [bigint, bigint]>,
  first: readonly bigint[] | undefined,
  chain: readonly Link[],
): { times: number[][]; totals: number[]; incomplete: number } {
  const times: number[][] = Array.from({ length: chain.length + (first ? 2 : 1) }, () => []);
  const totals: number[] = [];
  let incomplete = 0;
  for (const [start, end] of list) {
    const points: Array<bigint | undefined> = [start];
    if (first) points.push(first.find((t) => t >= start));
    for (const [messages, pick] of chain) {
      const after = points[points.length - 1];
      points.push(after === undefined ? undefined : firstAfter(messages, after, pick)?.at);
    }
    points.push(end);
    if (points.some((p, i) => p === undefined || p > end || (i > 0 && p < (points[i - 1] ?? 0n)))) {
      incomplete++;
      continue;
    }
    for (let i = 0; i + 1 < points.length; i++)
      times[i]?.push(Number((points[i + 1] as bigint) - (points[i] as bigint)) / 1e6);
    totals.push(Number(end - start) / 1e6);
  }
  return { times, totals, incomplete };
}

const setupSteps: Steps = [
  ['client connects -> proxy accepts', 'between'],
  ['proxy: accepted -> sends the open', 'proxy'],
  ['proxy -> hub (the open arrives)', 'between'],
  ['hub: the open -> sends the offer', 'hub'],
  ['hub -> agent (the offer arrives)', 'between'],
  ['agent: the offer -> sends the first byte (dial, target)', 'agent'],
  ['agent -> hub (the byte arrives)', 'between'],
  ['hub: the byte -> sends it on', 'hub'],
  ['hub -> proxy (the byte arrives)', 'between'],
  ['proxy: the byte -> client has it', 'between'],
];
/**
 * The carrier messages on the way from the proxy to the agent (the first frame of the kind
 * `outward`: a setup's `open`, a ping's `data`) and back (the first `data`), in order.
 */
const path = (outward: number): Link[] => [
  [proxyMessages, with_('out', outward)],
  [hubMessages, with_('in', outward, fromService.session)],
  [hubMessages, with_('out', outward, toDevice.session)],
  [agentMessages, with_('in', outward)],
  [agentMessages, with_('out', data)],
  [hubMessages, with_('in', data, toDevice.session)],
  [hubMessages, with_('out', data, fromService.session)],
  [proxyMessages, with_('in', data)],
];
const setupCut = cut(windows, proxyAccepts, path(open));
const pingSteps: Steps = [
  ["client writes -> proxy sends it (the client's hop too)", 'proxy'],
  ['proxy -> hub (the ping arrives)', 'between'],
  ['hub: the ping -> sends it on', 'hub'],
  ['hub -> agent (the ping arrives)', 'between'],
  ['agent: the ping -> sends the echo (the target too)', 'agent'],
  ['agent -> hub (the echo arrives)', 'between'],
  ['hub: the echo -> sends it on', 'hub'],
  ['hub -> proxy (the echo arrives)', 'between'],
  ['proxy: the echo -> client has it', 'between'],
];
const pingCut = cut(pingWindows, undefined, path(data));

const ms = (v: number): string => v.toFixed(3).padStart(7);
const row = (name: string, where: string, v: readonly number[]): string =>
  `${name.padEnd(58)} ${where.padEnd(8)} ${ms(percentile(v, 25))} ${ms(percentile(v, 50))} ${ms(percentile(v, 75))}`;
const print = (title: string, steps: Steps, c: ReturnType<typeof cut>, total: string): void => {
  console.log(
    `${c.totals.length} ${title} (${c.incomplete} not traced whole); ms, quartiles p25 / p50 / p75:`,
  );
  console.log(
    `${'step'.padEnd(58)} ${'where'.padEnd(8)} ${'p25'.padStart(7)} ${'p50'.padStart(7)} ${'p75'.padStart(7)}`,
  );
  steps.forEach(([name, where], i) => console.log(row(name, where, c.times[i] ?? [])));
  console.log(row(total, 'total', c.totals));
  const medianSum = (where: Where): number =>
    steps.reduce(
      (sum, [, w], i) => (w === where ? sum + percentile(c.times[i] ?? [], 50) : sum),
      0,
    );
  console.log(
    `medians by where: proxy ${ms(medianSum('proxy'))}, hub ${ms(medianSum('hub'))}, agent ${ms(medianSum('agent'))}, between processes ${ms(medianSum('between'))}`,
  );
};
print(
  `sequential setups${gapMs ? `, ${gapMs} ms apart` : ''}`,
  setupSteps,
  setupCut,
  'setup (connect -> first byte)',
);
console.log(
  'per setup (teardown included), main threads: on a core / waiting for one / switched in',
);
for (const [role, s] of Object.entries(schedPerSetup))
  console.log(
    `  ${role.padEnd(26)} ${ms(s.runNs / 1e6)} ms / ${ms(s.waitNs / 1e6)} ms / ${s.slices.toFixed(1).padStart(5)}`,
  );
if (pings > 0) print('pings (64 bytes, one at a time)', pingSteps, pingCut, 'round trip');
if (setupCut.totals.length < setups / 2 || pingCut.totals.length < pings / 2) {
  console.error(
    `only ${setupCut.totals.length} of ${setups} setups and ${pingCut.totals.length} of ${pings} pings were traced whole`,
  );
  process.exit(1);
}
