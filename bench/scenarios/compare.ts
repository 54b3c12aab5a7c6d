import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { spawnChild, type Child } from '../child.js';
import type { BenchConfig } from '../config.js';
import { percentile } from '../proc-stats.js';
import { figure, type Figure } from '../result.js';
import type { Targets } from '../stack.js';
import { pingPong } from './round-trip.js';
import { upload } from './throughput.js';

/** The first port of the kernel's ephemeral range (what outgoing connections are given). */
function ephemeralStart(): number {
  try {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    );
    return Number.isInteger(low) && low > 2048 ? low : 32768;
  } catch {
    return 32768;
  }
}

/**
 * A loopback port free right now, below the kernel's ephemeral range, for another process to
 * bind (a tunnel, a relay, sshd, ssh's forwarding). A port the kernel picks (listening on 0) is
 * in that range, and an outgoing connection may be given it before the other process binds it:
 * scenario 10 starts the bastion and the relays right after thousands of connections came and
 * went, and CI saw "remote port forwarding failed for listen port 38053".
 */
export async function freePort(): Promise<number> {
  const high = ephemeralStart();
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (high - 10_000));
    const free = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free port below ${high} on 127.0.0.1 after 100 tries`);
}

/** Start `command` with {listen} and {target} filled in; resolves once its port accepts. */
async function startTunnel(
  command: string,
  target: number,
): Promise<{ child: Child; port: number }> {
  const port = await freePort();
  const child = spawnChild('sh', [
    '-c',
    command.replaceAll('{listen}', String(port)).replaceAll('{target}', String(target)),
  ]);
  const deadline = Date.now() + 20_000;
  // Watch for the listener instead of connecting: a probe connection would reach the target.
  while (!isListening(port)) {
    if (Date.now() > deadline || child.process.exitCode !== null) {
      await child.stop();
      throw new Error(`--compare command did not listen on ${port}:\n${child.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, port };
}

/**
 * Wait until `child` (a tunnel, a relay, sshd) listens on `port`, watching the listener rather
 * than connecting; throws with `what` and the child's last output if it exits or 20 s pass.
 */
export async function waitListening(port: number, child: Child, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!isListening(port)) {
    if (Date.now() > deadline || child.process.exitCode !== null)
      throw new Error(`${what} did not listen on ${port}:\n${child.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** True if some socket on this machine listens on TCP `port` (Linux /proc/net/tcp{,6}). */
export function isListening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return ['/proc/net/tcp', '/proc/net/tcp6'].some((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .some((line) => {
        const f = line.trim().split(/\s+/);
        return f[3] === '0A' && (f[1]?.endsWith(`:${hex}`) ?? false);
      }),
  );
}

/**
 * Another tunnel in the same table: `command` must listen on {listen} and forward each
 * connection to 127.0.0.1:{target}. Measured: bulk upload and 64-byte round trips.
 */
export async function runCompare(
  cfg: BenchConfig,
  targets: Targets,
  name: string,
  command: string,
): Promise<Figure[]> {
  const sink = await startTunnel(command, targets.sink.port);
  let up: number;
  try {
    up = await upload(targets, sink.port, cfg.bulkBytes);
  } finally {
    await sink.child.stop();
  }
  const echo = await startTunnel(command, targets.echo.port);
  let rtt: number[];
  try {
    rtt = await pingPong(echo.port, cfg.roundTrips);
  } finally {
    await echo.child.stop();
  }
  const direct = await upload(targets, targets.sink.port, cfg.bulkBytes);
  const directRtt = await pingPong(targets.echo.port, cfg.roundTrips);
  return [
    figure({ scenario: 1, name: `${name}: upload`, value: up, unit: 'MB/s', baseline: direct }),
    figure({
      scenario: 2,
      name: `${name}: round trip added, p50`,
      value: percentile(rtt, 50) - percentile(directRtt, 50),
      unit: 'ms',
      baseline: percentile(directRtt, 50),
    }),
  ];
}
