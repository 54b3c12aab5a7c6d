import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, runCliOnce, spawnChild, type Child } from './child.js';
import {
  startEcho,
  startGreeter,
  startSink,
  startSource,
  type SinkServer,
  type TargetServer,
} from './target-servers.js';

/** The device-side services, by stream name. */
export interface Targets {
  readonly sink: SinkServer;
  readonly source: TargetServer;
  readonly echo: TargetServer;
  readonly greet: TargetServer;
}

export async function startTargets(): Promise<Targets> {
  return {
    sink: await startSink(),
    source: await startSource(),
    echo: await startEcho(),
    greet: await startGreeter(),
  };
}

export async function stopTargets(t: Targets): Promise<void> {
  await Promise.all([t.sink.close(), t.source.close(), t.echo.close(), t.greet.close()]);
}

/** A real hub, agent and proxy, each its own process, as users run them. */
export interface Stack {
  readonly dataDir: string;
  readonly hub: Child;
  readonly agent: Child;
  readonly proxy: Child;
  readonly hubPort: number;
  readonly serviceString: string;
  /** Proxy listening port for each target's stream. */
  readonly ports: Readonly<Record<keyof Targets, number>>;
  stop(): Promise<void>;
}

export const benchDevice = 'bench-dev';

/** Limits raised so the hub's guards are not what the concurrency and rate scenarios measure. */
export const hubTuning = [
  '--max-streams',
  '100000',
  '--max-streams-per-device',
  '100000',
  '--max-pending-per-device',
  '1000',
  '--max-unauthenticated-per-ip',
  '100000',
  // The bench measures dstream's own control channel; several hubs may run at once, and
  // MQTT's default port (8883) is one port, as is the console's (8444).
  '--no-mqtt',
  '--no-console',
];

export interface StackOptions {
  readonly tls: boolean;
  /** Write a V8 CPU profile of each process here (--profile DIR). */
  readonly profileDir?: string | undefined;
  /** More flags for node itself in the hub, agent and proxy (e.g. --import a recorder). */
  readonly nodeArgs?: readonly string[] | undefined;
  /** More flags for the agent and the proxy (e.g. --no-resume). */
  readonly endFlags?: readonly string[] | undefined;
}

/** What starting a hub gave: the children to stop (in reverse), and how to reach it. */
interface Started {
  readonly dataDir: string;
  readonly children: Child[];
  readonly nodeArgs: readonly string[];
  readonly tlsFlag: readonly string[];
  readonly stop: () => Promise<void>;
}

function begin(options: StackOptions): Started {
  const dataDir = mkdtempSync(join(tmpdir(), 'dstream-bench-'));
  const children: Child[] = [];
  return {
    dataDir,
    children,
    nodeArgs: [
      ...(options.profileDir ? ['--cpu-prof', '--cpu-prof-dir', options.profileDir] : []),
      ...(options.nodeArgs ?? []),
    ],
    tlsFlag: options.tls ? [] : ['--insecure-no-tls'],
    stop: async () => {
      for (const c of children.reverse()) await c.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function startHub(
  s: Started,
): Promise<{ hub: Child; hubPort: number; serviceString: string }> {
  const hub = spawnChild(process.execPath, [
    ...s.nodeArgs,
    cliPath,
    'hub',
    '--data-dir',
    s.dataDir,
    '--listen',
    '127.0.0.1:0',
    ...s.tlsFlag,
    ...hubTuning,
  ]);
  s.children.push(hub);
  // Every process logs at its default level, as users run it: that cost is part of the product.
  const hubPort = Number((await hub.waitFor(/hub listening on https?:\/\/127\.0\.0\.1:(\d+)/))[1]);
  const serviceString = (
    await runCliOnce([
      'hub',
      'init',
      '--data-dir',
      s.dataDir,
      '--listen',
      `127.0.0.1:${hubPort}`,
      ...s.tlsFlag,
    ])
  ).trim();
  return { hub, hubPort, serviceString };
}

/** A device with its agent (reaching each target by name) and a proxy with a port per target. */
async function startEnds(
  s: Started,
  serviceString: string,
  device: string,
  targets: Readonly<Record<string, number>>,
  endFlags: readonly string[],
): Promise<{ agent: Child; proxy: Child; ports: Record<string, number> }> {
  const deviceString = (
    await runCliOnce(['device', 'add', device, '--connection-string', serviceString])
  ).trim();
  const agent = spawnChild(process.execPath, [
    ...s.nodeArgs,
    cliPath,
    'agent',
    ...endFlags,
    '--connection-string',
    deviceString,
    ...Object.entries(targets).flatMap(([name, port]) => ['--target', `${name}=127.0.0.1:${port}`]),
  ]);
  s.children.push(agent);
  await agent.waitFor(/connected to the hub/);
  const names = Object.keys(targets);
  const proxy = spawnChild(
    process.execPath,
    [
      ...s.nodeArgs,
      cliPath,
      'proxy',
      ...endFlags,
      '--json',
      ...names.flatMap((n) => ['-L', `0:${device}:${n}`]),
    ],
    { DSTREAM_SERVICE_CONNECTION_STRING: serviceString },
  );
  s.children.push(proxy);
  await proxy.waitFor(new RegExp(`"stream":"${names[names.length - 1]}"`));
  const ports: Record<string, number> = {};
  for (const m of proxy.output().matchAll(/"port":(\d+),"device":"[^"]+","stream":"(\w+)"/g))
    ports[m[2] as string] = Number(m[1]);
  return { agent, proxy, ports };
}

export async function startStack(targets: Targets, options: StackOptions): Promise<Stack> {
  const s = begin(options);
  try {
    const { hub, hubPort, serviceString } = await startHub(s);
    const { agent, proxy, ports } = await startEnds(
      s,
      serviceString,
      benchDevice,
      Object.fromEntries(Object.entries(targets).map(([n, t]) => [n, (t as TargetServer).port])),
      options.endFlags ?? [],
    );
    return {
      dataDir: s.dataDir,
      hub,
      agent,
      proxy,
      hubPort,
      serviceString,
      ports: ports as Record<keyof Targets, number>,
      stop: s.stop,
    };
  } catch (error) {
    await s.stop();
    throw error;
  }
}

/** One device's ends in a wide stack: its agent, its proxy, and the proxy's port to its echo. */
export interface EchoEnds {
  readonly agent: Child;
  readonly proxy: Child;
  readonly port: number;
}

/** A hub with a device per echo target, each with its own agent and proxy. */
export interface WideStack {
  readonly hub: Child;
  readonly ends: readonly EchoEnds[];
  stop(): Promise<void>;
}

/**
 * A hub and one device, agent and proxy per echo port: for holding more streams than one agent
 * or proxy may hold descriptors.
 */
export async function startWideStack(
  echoPorts: readonly number[],
  options: StackOptions,
): Promise<WideStack> {
  const s = begin(options);
  try {
    const { hub, serviceString } = await startHub(s);
    const ends: EchoEnds[] = [];
    for (const [i, echo] of echoPorts.entries()) {
      const { agent, proxy, ports } = await startEnds(
        s,
        serviceString,
        `${benchDevice}-${i + 1}`,
        { echo },
        options.endFlags ?? [],
      );
      ends.push({ agent, proxy, port: ports.echo ?? NaN });
    }
    return { hub, ends, stop: s.stop };
  } catch (error) {
    await s.stop();
    throw error;
  }
}
