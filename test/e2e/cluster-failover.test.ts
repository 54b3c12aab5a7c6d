import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, spawnCli, type CliProcess } from '../helpers/cli.js';
import { startTestCluster, type ClusterNodeProcess, type TestCluster } from '../helpers/cluster.js';
import { hubError } from '../helpers/hub-error.js';
import type { WebSocket } from 'ws';
import { closeWebSocket } from '../../src/net/close.js';
import { openWebSocket, UpgradeRefusedError } from '../../src/net/hub-client.js';
import { resumableStreamProtocol } from '../../src/protocol/constants.js';
import { signResumeTicket, type ResumeClaims } from '../../src/protocol/resume-ticket.js';
import { loadResumeKey } from '../../src/hub/store/resume-key.js';
import { sha256 } from '../helpers/net.js';
import { findOpenSsh, numberedOutput, startTempSshd, type TestSshd } from '../helpers/openssh.js';

/**
 * Resumable streams through a cluster's failures: redis-server, three `dstream hub --redis`
 * nodes and haproxy in front, as docs/cluster.md runs them; the agent and the proxy reach the
 * hub through the balancer with the quick start's flags only (resumption is the default).
 * The node that holds the stream is killed (kill -9) or drained (SIGTERM) under a running ssh
 * session; the stream's halves come back through the balancer, meet on a node that stays,
 * and the session carries on.
 */

const openssh = findOpenSsh();
const sshRequired = process.env.DSTREAM_REQUIRE_OPENSSH === '1';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Running {
  readonly cluster: TestCluster;
  readonly sshd: TestSshd;
  readonly agent: CliProcess;
  readonly proxy: CliProcess;
  readonly proxyPort: number;
}

async function setUp(sshdPath: string): Promise<Running> {
  const cluster = await startTestCluster();
  cleanups.push(() => cluster.stop());
  const { sshd, dispose } = await startTempSshd(sshdPath, 'dstream-failover-ssh-');
  cleanups.push(dispose);
  const env = { DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString };
  const added = await runCli(['device', 'add', 'pi-f'], env);
  expect(added.code).toBe(0);
  const agent = spawnCli(['agent', '--target', `ssh=127.0.0.1:${sshd.port}`], {
    DSTREAM_DEVICE_CONNECTION_STRING: added.stdout.trim(),
  });
  cleanups.push(() => agent.stop('SIGKILL'));
  await agent.waitForLine(/connected to the hub/);
  const proxy = spawnCli(
    ['proxy', '--device', 'pi-f', '--local-port', '0', '--stream', 'ssh'],
    env,
  );
  cleanups.push(() => proxy.stop('SIGKILL'));
  const listening = await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/);
  return { cluster, sshd, agent, proxy, proxyPort: Number(listening[1]) };
}

/** Everything the processes said, for a failure's message. */
function logsOf(r: Running): string {
  return [
    `proxy:\n${r.proxy.output()}`,
    `agent:\n${r.agent.output()}`,
    ...r.cluster.nodes.map((n) => `${n.name}:\n${n.proc.output()}`),
  ].join('\n');
}

describe('cluster failover: a resumable stream outlives the node that held it', () => {
  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it.skipIf(!openssh && !sshRequired)(
      `ssh streaming output through the balancer carries on when its node gets ${signal === 'SIGKILL' ? 'kill -9' : 'SIGTERM (drain)'}; output complete and in order, ssh exits 0`,
      async () => {
        if (!openssh) throw new Error('DSTREAM_REQUIRE_OPENSSH=1 but sshd/ssh were not found');
        const r = await setUp(openssh.sshd);
        // The device's control connection is where its streams are set up and relayed.
        const holder = await r.cluster.ownerOf();
        const { command, expected } = numberedOutput();
        const ssh = spawn(
          'ssh',
          ['-p', String(r.proxyPort), ...r.sshd.sshOptions, `${r.sshd.user}@127.0.0.1`, command],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        cleanups.push(() => ssh.kill('SIGKILL'));
        let out = '';
        let err = '';
        let stopped: Promise<number | null> | undefined;
        ssh.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          // Some output is through: take the node away under the running session.
          if (!stopped && out.length > 100_000) stopped = holder.proc.stop(signal);
        });
        ssh.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const code = await new Promise<number | null>((resolve) => {
          const timer = setTimeout(() => resolve(-1), 100_000);
          ssh.once('close', (c) => {
            clearTimeout(timer);
            resolve(c);
          });
        });
        const result = { code, err, length: out.length };
        if (code !== 0 || out.length !== expected.length)
          throw new Error(`${JSON.stringify(result)}\n${logsOf(r)}`);
        expect(stopped).toBeDefined();
        const exit = await stopped;
        // A drained node leaves cleanly; a killed one does not.
        if (signal === 'SIGTERM') expect(exit).toBe(0);
        expect(result).toEqual({ code: 0, err: '', length: expected.length });
        expect(sha256(Buffer.from(out))).toBe(sha256(Buffer.from(expected)));
        expect(r.proxy.output()).toMatch(/stream resumed/);
        expect(r.agent.output()).toMatch(/stream resumed/);
        // The halves met on a node that stays, both sides.
        const stayed = r.cluster.nodes.filter((n) => n !== holder).map((n) => n.proc.output());
        expect(stayed.join('\n')).toMatch(/stream resuming[^\n]*side=service/);
        expect(stayed.join('\n')).toMatch(/stream resuming[^\n]*side=device/);
        if (signal === 'SIGTERM')
          expect(holder.proc.output()).toMatch(
            /draining: resumable streams handed over to the other nodes streams=1/,
          );
      },
      150_000,
    );
  }
});

describe('cluster: resume tickets are judged the same on a node that did not issue them', () => {
  it('forged, expired, other-stream, spent and disabled-device tickets are refused by another node; a good pair meets where the ticket says', async () => {
    const cluster = await startTestCluster();
    cleanups.push(() => cluster.stop());
    const env = { DSTREAM_SERVICE_CONNECTION_STRING: cluster.serviceString };
    expect((await runCli(['device', 'add', 'pi-t'], env)).code).toBe(0);
    const [a, b, c] = cluster.nodes as [ClusterNodeProcess, ClusterNodeProcess, ClusterNodeProcess];
    const nodeIdOf = (n: ClusterNodeProcess): string =>
      /joined the cluster\b.*? node=(\S+)/.exec(n.proc.output())?.[1] ?? '';
    // Every node has the seed's key (the data dir was copied): tickets made with it are genuine.
    const key = loadResumeKey(join(cluster.dir, a.name));
    const aId = nodeIdOf(a);
    expect(aId).not.toBe('');
    const claims = (over: Partial<ResumeClaims> = {}): ResumeClaims => ({
      streamId: `${aId}.t1`,
      deviceId: 'pi-t',
      streamName: 'ssh',
      side: 'service',
      generation: 1,
      expiresAt: Math.floor(Date.now() / 1000) + 600,
      node: aId,
      ...over,
    });
    const firstMessages = new Map<WebSocket, Promise<string>>();
    const open = (node: ClusterNodeProcess, id: string, ticket: string): Promise<WebSocket> =>
      openWebSocket(`wss://127.0.0.1:${node.port}/bridges/${id}`, node.target, {
        headers: { authorization: `Resume ${ticket}` },
        protocols: [resumableStreamProtocol],
      }).then((ws) => {
        ws.on('error', () => undefined);
        // Listening before the socket flows: a half's ticket may arrive while the test is
        // still opening the other half (the pairing happens as soon as both reach the node).
        firstMessages.set(
          ws,
          new Promise<string>((resolve, reject) => {
            ws.once('message', (d: Buffer) => resolve(d.toString()));
            ws.once('close', (code: number, reason: Buffer) =>
              reject(new Error(`closed (${code} ${reason.toString()}) before a message`)),
            );
          }),
        );
        firstMessages.get(ws)?.catch(() => undefined);
        ws.resume();
        return ws;
      });
    const attempt = async (
      node: ClusterNodeProcess,
      id: string,
      ticket: string,
    ): Promise<{ status: number; message: string } | 'open'> => {
      try {
        const ws = await open(node, id, ticket);
        closeWebSocket(ws, 1000);
        return 'open';
      } catch (error) {
        if (!(error instanceof UpgradeRefusedError)) throw error;
        return { status: error.status, message: hubError({ body: error.body }).message };
      }
    };
    const t1 = `${aId}.t1`;
    // Refused where they arrive (node B), before any forwarding.
    expect(await attempt(b, t1, signResumeTicket(randomBytes(32), claims()))).toEqual({
      status: 401,
      message: 'the resume ticket is not signed by this hub',
    });
    expect(await attempt(b, t1, signResumeTicket(key, claims({ expiresAt: 1000 })))).toEqual({
      status: 401,
      message: 'the resume window has passed',
    });
    expect(await attempt(b, `${aId}.other`, signResumeTicket(key, claims()))).toEqual({
      status: 401,
      message: 'the resume ticket is for another stream',
    });
    // A good pair through two other nodes meets on A, the node its tickets name.
    const service = await open(b, t1, signResumeTicket(key, claims()));
    const device = await open(c, t1, signResumeTicket(key, claims({ side: 'device' })));
    // Bounded, with the nodes' logs: a pairing that never happens says where it stopped.
    const tails = (): string =>
      [a, b, c].map((n) => `--- ${n.name}:\n${n.proc.output().slice(-3000)}`).join('\n');
    const firstFrame = (ws: WebSocket, side: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`the ${side} half got no ticket within 30 s\n${tails()}`)),
          30_000,
        );
        (firstMessages.get(ws) ?? Promise.reject(new Error('not opened here'))).then(
          (text) => {
            clearTimeout(timer);
            resolve(text);
          },
          (error: Error) => {
            clearTimeout(timer);
            reject(new Error(`the ${side} half: ${error.message}\n${tails()}`));
          },
        );
      });
    const [sf, df] = await Promise.all([
      firstFrame(service, 'service'),
      firstFrame(device, 'device'),
    ]);
    // Paired: each half gets its next ticket, issued by A.
    for (const frame of [sf, df]) expect(JSON.parse(frame)).toMatchObject({ type: 'ticket' });
    await a.proc.waitForLine(/stream resumed device=pi-t stream=ssh/);
    // The spent service ticket, replayed through C, is judged where the stream is.
    expect(await attempt(c, t1, signResumeTicket(key, claims()))).toEqual({
      status: 404,
      message: 'the resume ticket was already used',
    });
    closeWebSocket(service, 1000);
    closeWebSocket(device, 1000);
    // A device disabled through the balancer gets nothing back on any node.
    expect((await runCli(['device', 'disable', 'pi-t'], env)).code).toBe(0);
    for (const node of [a, b, c])
      await expect
        .poll(
          () =>
            attempt(node, `${aId}.t2`, signResumeTicket(key, claims({ streamId: `${aId}.t2` }))),
          {
            timeout: 10_000,
          },
        )
        .toEqual({ status: 403, message: "device 'pi-t' is disabled or no longer registered" });
  }, 120_000);
});
