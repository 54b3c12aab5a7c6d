import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent/agent.js';
import { DstreamError } from '../../src/errors.js';
import { closeWebSocket } from '../../src/net/close.js';
import {
  parseConnectionString,
  type DeviceConnectionString,
} from '../../src/auth/connection-string.js';
import { createLogger } from '../../src/log/logger.js';
import { hubTarget } from '../../src/service/credentials.js';
import { hubRequest } from '../../src/net/hub-client.js';
import { openServiceStream } from '../../src/service/stream-client.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';
import { dial, readAll, waitEvent } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';
import { startConnectedAgent, startTestProxy } from '../helpers/tunnel.js';

describe('reliability (in-process)', () => {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  async function hubWithEcho(
    limits?: Parameters<typeof startTestHub>[0],
  ): Promise<{ t: TestHub; echo: TestServer }> {
    const t = await startTestHub(limits);
    cleanups.push(() => t.cleanup());
    const echo = await startEchoServer();
    cleanups.push(() => echo.close());
    return { t, echo };
  }

  async function agent(t: TestHub, echo: TestServer, id = 'dev'): Promise<Agent> {
    const cs = t.state.registry.getDevice(id)
      ? (await t.registry.show(id)).connectionString
      : (await t.registry.add(id)).connectionString;
    const a = await startConnectedAgent(
      parseConnectionString(cs ?? '') as DeviceConnectionString,
      new Map([['e', { host: '127.0.0.1', port: echo.port }]]),
    );
    cleanups.push(() => a.close());
    return a;
  }

  it('a device that connects again replaces its old control connection at once (newest wins)', async () => {
    const { t, echo } = await hubWithEcho();
    const first = await agent(t, echo);
    const replaced = waitEvent<string>(first, 'disconnected');
    const second = await agent(t, echo);
    expect(await replaced).toBe('replaced by a newer connection');
    expect(second.connected).toBe(true);
    expect(t.hub.devices.isOnline('dev')).toBe(true);
    const proxy = await startTestProxy(t, 'dev', 'e');
    cleanups.push(() => proxy.close());
    const client = await dial(proxy.port);
    client.end('to the newest');
    expect((await readAll(client)).toString()).toBe('to the newest');
    // The replaced agent backs off at its cap instead of taking the device back.
    expect(first.connected).toBe(false);
  });

  it('draining: devices are told to go away (1001) and retry at once; new streams get 503', async () => {
    const { t, echo } = await hubWithEcho();
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({
      level: 'info',
      format: 'json',
      write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>),
    });
    const cs = (await t.registry.add('dev')).connectionString ?? '';
    const a = await startConnectedAgent(
      parseConnectionString(cs) as DeviceConnectionString,
      new Map([['e', { host: '127.0.0.1', port: echo.port }]]),
      logger,
    );
    cleanups.push(() => a.close());
    const gone = waitEvent<string>(a, 'disconnected');
    // Keep one stream open so the drain has something to wait for.
    const held = await openServiceStream(t.service, hubTarget(t.service), {
      deviceId: 'dev',
      streamName: 'e',
    });
    const ready = await hubRequest(hubTarget(t.service), { method: 'GET', path: '/readyz' });
    expect([ready.status, ready.body]).toEqual([200, '{"status":"ready"}']);
    const draining = t.hub.drain(10_000);
    const notReady = await hubRequest(hubTarget(t.service), { method: 'GET', path: '/readyz' });
    expect([notReady.status, notReady.body]).toEqual([503, '{"status":"draining"}']);
    expect(await gone).toBe('hub shutting down');
    expect(lines).toContainEqual(
      expect.objectContaining({
        msg: 'lost the hub connection; reconnecting',
        code: 1001,
        retryInMs: 0,
      }),
    );
    const refused = (await openServiceStream(t.service, hubTarget(t.service), {
      deviceId: 'dev',
      streamName: 'e',
    }).catch((e: unknown) => e)) as DstreamError;
    expect(refused.message).toBe('the hub is shutting down and takes no new streams');
    closeWebSocket(held, 1000);
    await draining;
  });

  it('streams per device are limited: the next one gets 429 with the reason', async () => {
    const { t, echo } = await hubWithEcho({ limits: { maxStreamsPerDevice: 2 } });
    await agent(t, echo);
    const open = () =>
      openServiceStream(t.service, hubTarget(t.service), { deviceId: 'dev', streamName: 'e' });
    const held = [await open(), await open()];
    const error = (await open().catch((e: unknown) => e)) as DstreamError;
    expect(error).toBeInstanceOf(DstreamError);
    expect(error.message).toBe("device 'dev' has 2 streams open, its limit");
    for (const ws of held) closeWebSocket(ws, 1000);
    await waitEvent(t.hub.streams, 'stream-end');
    await waitEvent(t.hub.streams, 'stream-end').catch(() => undefined);
    const again = await open();
    closeWebSocket(again, 1000);
  });

  it('streams per hub are limited', async () => {
    const { t, echo } = await hubWithEcho({ limits: { maxStreams: 1 } });
    await agent(t, echo, 'a');
    await agent(t, echo, 'b');
    const first = await openServiceStream(t.service, hubTarget(t.service), {
      deviceId: 'a',
      streamName: 'e',
    });
    const error = (await openServiceStream(t.service, hubTarget(t.service), {
      deviceId: 'b',
      streamName: 'e',
    }).catch((e: unknown) => e)) as DstreamError;
    expect(error.message).toBe('the hub has 1 streams open, its limit');
    closeWebSocket(first, 1000);
  });
});
