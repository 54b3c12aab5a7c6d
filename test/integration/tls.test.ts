import { afterEach, describe, expect, it } from 'vitest';
import type { ServiceConnectionString } from '../../src/auth/connection-string.js';
import { DstreamError } from '../../src/errors.js';
import { openWebSocket } from '../../src/net/hub-client.js';
import { RegistryClient } from '../../src/service/registry-client.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';
import { dial, readAll } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { startConnectedAgent, startTestProxy } from '../helpers/tunnel.js';

describe('hub trust modes', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('--insecure-no-tls: strings say UseTls=false and streams work over plain ws', async () => {
    const t: TestHub = await startTestHub({ tls: false });
    cleanups.push(() => t.cleanup());
    expect(t.serviceString).toContain(';UseTls=false');
    expect(t.serviceString).not.toContain('CertificateFingerprint');
    const echo: TestServer = await startEchoServer();
    cleanups.push(() => echo.close());
    const agent = await startConnectedAgent(
      await t.addDevice('plain'),
      new Map([['e', { host: '127.0.0.1', port: echo.port }]]),
    );
    cleanups.push(() => agent.close());
    const proxy = await startTestProxy(t, 'plain', 'e');
    cleanups.push(() => proxy.close());
    const client = await dial(proxy.port);
    client.end('over plain ws');
    expect((await readAll(client)).toString()).toBe('over plain ws');
  });

  it('without a pin the hub is verified by --ca, and refused by the system CAs', async () => {
    const t = await startTestHub();
    cleanups.push(() => t.cleanup());
    const unpinned: ServiceConnectionString = {
      ...t.service,
      hub: { ...t.service.hub, fingerprint: undefined },
    };
    const withCa = new RegistryClient(unpinned, { ...unpinned.hub, ca: t.state.tls?.cert });
    expect(await withCa.list()).toEqual([]);
    const withoutCa = new RegistryClient(unpinned, unpinned.hub);
    const error = await withoutCa.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DstreamError);
    expect((error as DstreamError).code).toBe('ERR_TLS_VERIFY');
    expect((error as DstreamError).message).toMatch(
      /^cannot verify the hub's certificate at 127\.0\.0\.1:\d+: self[- ]signed certificate/,
    );
  });

  it('a client never follows a plain ws:// URL handed out by a TLS hub', async () => {
    const error = await openWebSocket(
      'ws://127.0.0.1:1/bridges/x',
      { tls: true },
      { headers: {}, protocols: [] },
    ).catch((e: unknown) => e);
    expect((error as DstreamError).message).toBe(
      'refusing to follow a non-TLS URL (ws://127.0.0.1:1) from a TLS hub',
    );
  });
});
