/**
 * Soak test (not in `npm test`): `npm run soak`. Runs hub, agent and proxy as separate
 * processes and hammers them with concurrent streams of random sizes, some aborted at random,
 * for SOAK_SECONDS (default 180) with SOAK_CONCURRENCY workers (default 64). Afterwards every
 * completed transfer must have echoed byte-exact, and the hub's open file descriptors and
 * memory must be back near their values after warm-up. Prints a JSON summary line.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { runCli, spawnCli, startCliHub, type CliProcess, type CliTunnel } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';
import { dial, waitFor } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';

const seconds = Number(process.env.SOAK_SECONDS ?? 180);
const concurrency = Number(process.env.SOAK_CONCURRENCY ?? 64);

function hubFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function hubRssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

/** One stream: send a random payload, half-close, expect it echoed; or abort midway. */
async function oneStream(
  port: number,
  abort: boolean,
): Promise<'ok' | 'aborted' | 'mismatch' | 'error'> {
  const size =
    Math.random() < 0.8
      ? Math.floor(Math.random() * 64 * 1024)
      : Math.floor(Math.random() * 2 * 1024 * 1024);
  const payload = randomBytes(size);
  const client = await dial(port);
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    let got = 0;
    let settled = false;
    const settle = (r: 'ok' | 'aborted' | 'mismatch' | 'error'): void => {
      if (settled) return;
      settled = true;
      resolve(r);
    };
    const abortAt = abort ? Math.floor(Math.random() * (size + 1)) : -1;
    client.on('data', (d: Buffer) => {
      got += d.length;
      hash.update(d);
      if (abort && got >= abortAt) {
        client.resetAndDestroy();
        settle('aborted');
      }
    });
    client.on('end', () => {
      const same =
        got === size && hash.digest('hex') === createHash('sha256').update(payload).digest('hex');
      settle(abort ? 'aborted' : same ? 'ok' : 'mismatch');
      client.end();
    });
    client.on('error', () => settle(abort ? 'aborted' : 'error'));
    client.on('close', () => settle(abort ? 'aborted' : 'error'));
    client.end(payload);
  });
}

let dir: string;
let hub: CliTunnel | undefined;
let agent: CliProcess | undefined;
let proxy: CliProcess | undefined;
let echo: TestServer | undefined;

afterAll(async () => {
  await proxy?.stop();
  await agent?.stop();
  await hub?.stop();
  await echo?.close();
  rmSync(dir, { recursive: true, force: true });
});

it(
  `soak: ${concurrency} concurrent streams for ${seconds} s`,
  async () => {
    dir = makeTempDir('dstream-soak-');
    echo = await startEchoServer();
    hub = await startCliHub(join(dir, 'hub'));
    const env = { DSTREAM_SERVICE_CONNECTION_STRING: hub.serviceString };
    const added = await runCli(['device', 'add', 'soak'], env);
    agent = spawnCli(['agent', '--port', String(echo.port)], {
      DSTREAM_DEVICE_CONNECTION_STRING: added.stdout.trim(),
    });
    await agent.waitForLine(/connected to the hub/);
    proxy = spawnCli(
      ['proxy', '--device', 'soak', '--local-port', '0', '--remote-port', String(echo.port)],
      env,
    );
    const port = Number((await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/))[1]);
    const pid = hub.hub.child.pid ?? 0;

    const counts = { ok: 0, aborted: 0, mismatch: 0, error: 0 };
    const run = async (until: number): Promise<void> => {
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (Date.now() < until) counts[await oneStream(port, Math.random() < 0.1)]++;
        }),
      );
    };
    // Warm up (JIT, TLS session state, allocator pools), then take the baseline.
    await run(Date.now() + Math.min(5000, seconds * 100));
    await waitFor(() => hubFds(pid) <= 30, 15_000, 'hub fds to settle after warm-up').catch(
      () => undefined,
    );
    const base = { fds: hubFds(pid), rssMiB: hubRssMiB(pid) };
    await run(Date.now() + seconds * 1000);
    // Every stream is closed by now on our side; the hub must let go of its sockets.
    await waitFor(() => hubFds(pid) <= base.fds + 2, 15_000, `hub fds back near ${base.fds}`);
    const after = { fds: hubFds(pid), rssMiB: hubRssMiB(pid) };
    const summary = { seconds, concurrency, ...counts, base, after };
    console.log(`soak summary ${JSON.stringify(summary)}`);
    expect(counts.mismatch).toBe(0);
    expect(counts.error).toBe(0);
    expect(counts.ok).toBeGreaterThan(0);
    expect(after.fds).toBeLessThanOrEqual(base.fds + 2);
    // V8 keeps some heap it grew into; a leak would grow with the run length instead.
    expect(after.rssMiB).toBeLessThan(base.rssMiB * 1.5 + 64);
  },
  (seconds + 120) * 1000,
);
