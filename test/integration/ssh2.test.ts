import { createHash, randomBytes } from 'node:crypto';
import ssh2 from 'ssh2';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent/agent.js';
import type { PortProxy } from '../../src/proxy/proxy.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';
import { startConnectedAgent, startTestProxy } from '../helpers/tunnel.js';

const { Client, Server, utils } = ssh2;

describe('an SSH session through the tunnel (ssh2 server and client)', () => {
  let t: TestHub;
  let sshServer: InstanceType<typeof Server>;
  let sshPort: number;
  let agent: Agent;
  let proxy: PortProxy;
  const clientKeys = utils.generateKeyPairSync('ed25519');

  beforeEach(async () => {
    t = await startTestHub();
    const hostKeys = utils.generateKeyPairSync('ed25519');
    const allowed = utils.parseKey(clientKeys.public);
    if (allowed instanceof Error) throw allowed;
    sshServer = new Server({ hostKeys: [hostKeys.private] }, (conn) => {
      conn.on('error', () => undefined);
      conn.on('authentication', (ctx) => {
        const ok =
          ctx.method === 'publickey' &&
          ctx.key.algo === allowed.type &&
          Buffer.compare(ctx.key.data, allowed.getPublicSSH()) === 0 &&
          (!ctx.signature ||
            allowed.verify(ctx.blob as Buffer, ctx.signature, ctx.hashAlgo) === true);
        if (ok) ctx.accept();
        else ctx.reject(['publickey']);
      });
      conn.on('ready', () => {
        conn.on('session', (accept) => {
          const session = accept();
          session.on('exec', (acceptExec, _reject, info) => {
            const stream = acceptExec();
            // "sha256sum" reads stdin to EOF and prints the digest: EOF must cross the tunnel.
            if (info.command === 'sha256sum') {
              const hash = createHash('sha256');
              stream.on('data', (d: Buffer) => hash.update(d));
              stream.on('end', () => {
                stream.write(`${hash.digest('hex')}  -\n`);
                stream.exit(0);
                stream.end();
              });
            } else {
              stream.write(`ran: ${info.command}\n`);
              stream.exit(0);
              stream.end();
            }
          });
        });
      });
    });
    await new Promise<void>((resolve) => sshServer.listen(0, '127.0.0.1', resolve));
    sshPort = (sshServer.address() as { port: number }).port;
    agent = await startConnectedAgent(
      await t.addDevice('pi-01'),
      new Map([['22', { host: '127.0.0.1', port: sshPort }]]),
    );
    proxy = await startTestProxy(t, 'pi-01', '22');
  });

  afterEach(async () => {
    await proxy.close();
    await agent.close();
    await new Promise((resolve) => sshServer.close(resolve));
    await t.cleanup();
  });

  function connect(): Promise<InstanceType<typeof Client>> {
    return new Promise((resolve, reject) => {
      const client = new Client();
      client.on('ready', () => resolve(client)).on('error', reject);
      client.connect({
        host: '127.0.0.1',
        port: proxy.port,
        username: 'pi',
        privateKey: clientKeys.private,
        readyTimeout: 20_000,
      });
    });
  }

  function exec(
    client: InstanceType<typeof Client>,
    command: string,
    input?: Buffer,
  ): Promise<{ out: string; code: number }> {
    return new Promise((resolve, reject) => {
      client.exec(command, (err, stream) => {
        if (err) return reject(err);
        let out = '';
        let code = -1;
        stream.on('data', (d: Buffer) => (out += d.toString()));
        stream.on('exit', (c: number) => (code = c));
        stream.on('close', () => resolve({ out, code }));
        stream.stderr.resume();
        stream.end(input);
      });
    });
  }

  it('runs a command and moves 16 MiB with the right checksum', async () => {
    const client = await connect();
    expect(await exec(client, 'hostname')).toEqual({ out: 'ran: hostname\n', code: 0 });
    const data = randomBytes(16 * 1024 * 1024);
    const digest = createHash('sha256').update(data).digest('hex');
    expect(await exec(client, 'sha256sum', data)).toEqual({ out: `${digest}  -\n`, code: 0 });
    client.end();
  }, 60_000);
});
