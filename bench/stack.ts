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
  /** More flags for the agent and the proxy (e.g. --no-resume). */
  readonly endFlags?: readonly string[] | undefined;
}

export async function startStack(targets: Targets, options: StackOptions): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'dstream-bench-'));
  const children: Child[] = [];
  const stop = async (): Promise<void> => {
    for (const c of children.reverse()) await c.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  const nodeArgs = options.profileDir ? ['--cpu-prof', '--cpu-prof-dir', options.profileDir] : [];
  try {
    const tlsFlag = options.tls ? [] : ['--insecure-no-tls'];
    const hub = spawnChild(process.execPath, [
      ...nodeArgs,
      cliPath,
      'hub',
      '--data-dir',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      ...tlsFlag,
      ...hubTuning,
    ]);
    children.push(hub);
    // Every process logs at its default level, as users run it: that cost is part of the product.
    const hubPort = Number(
      (await hub.waitFor(/hub listening on https?:\/\/127\.0\.0\.1:(\d+)/))[1],
    );
    const serviceString = (
      await runCliOnce([
        'hub',
        'init',
        '--data-dir',
        dataDir,
        '--listen',
        `127.0.0.1:${hubPort}`,
        ...tlsFlag,
      ])
    ).trim();
    const env = { DSTREAM_SERVICE_CONNECTION_STRING: serviceString };
    const deviceString = (
      await runCliOnce(['device', 'add', benchDevice, '--connection-string', serviceString])
    ).trim();
    const agent = spawnChild(process.execPath, [
      ...nodeArgs,
      cliPath,
      'agent',
      ...(options.endFlags ?? []),
      '--connection-string',
      deviceString,
      ...Object.entries(targets).flatMap(([name, t]) => [
        '--target',
        `${name}=127.0.0.1:${(t as TargetServer).port}`,
      ]),
    ]);
    children.push(agent);
    await agent.waitFor(/connected to the hub/);
    const names = Object.keys(targets) as (keyof Targets)[];
    const proxy = spawnChild(
      process.execPath,
      [
        ...nodeArgs,
        cliPath,
        'proxy',
        ...(options.endFlags ?? []),
        '--json',
        ...names.flatMap((n) => ['-L', `0:${benchDevice}:${n}`]),
      ],
      env,
    );
    children.push(proxy);
    await proxy.waitFor(new RegExp(`"stream":"${names[names.length - 1]}"`));
    const ports = {} as Record<keyof Targets, number>;
    for (const m of proxy.output().matchAll(/"port":(\d+),"device":"[^"]+","stream":"(\w+)"/g))
      ports[m[2] as keyof Targets] = Number(m[1]);
    return { dataDir, hub, agent, proxy, hubPort, serviceString, ports, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
