import { startAgent, type Agent } from '../../src/agent/agent.js';
import type { AllowList } from '../../src/agent/allow-list.js';
import type { DeviceConnectionString } from '../../src/auth/connection-string.js';
import { silentLogger, type Logger } from '../../src/log/logger.js';
import { startProxy, type PortProxy } from '../../src/proxy/proxy.js';
import { hubTarget } from '../../src/service/credentials.js';
import { startTestHub, type TestHub } from './hub.js';
import { waitEvent } from './net.js';
import type { TestServer } from './servers.js';

/** Start an agent and wait until its control connection is up. */
export async function startConnectedAgent(
  credential: DeviceConnectionString,
  allow: AllowList,
  logger: Logger = silentLogger,
  heartbeatMs?: number,
): Promise<Agent> {
  const agent = startAgent(
    {
      credential,
      allow,
      reconnectMinMs: 50,
      reconnectMaxMs: 500,
      ...(heartbeatMs ? { heartbeatMs } : {}),
    },
    logger,
  );
  await waitEvent(agent, 'connected');
  return agent;
}

/** A proxy on 127.0.0.1:0 to `deviceId`/`streamName` through the test hub. */
export function startTestProxy(
  t: TestHub,
  deviceId: string,
  streamName: string,
  logger: Logger = silentLogger,
  heartbeatMs?: number,
): Promise<PortProxy> {
  return startProxy(
    {
      credential: t.service,
      target: hubTarget(t.service),
      deviceId,
      streamName,
      bindHost: '127.0.0.1',
      port: 0,
      responseTimeoutSeconds: 10,
      ...(heartbeatMs ? { heartbeatMs } : {}),
    },
    logger,
  );
}

/** A hub, a device target, an agent allowing it and a proxy to it: the whole chain in-process. */
export interface TestTunnel {
  readonly t: TestHub;
  readonly target: TestServer;
  readonly agent: Agent;
  readonly proxy: PortProxy;
  close(): Promise<void>;
}

/** Start the chain in front of `target`: device 'dev', stream 't'. */
export async function startTestTunnel(
  target: Promise<TestServer>,
  heartbeatMs?: number,
): Promise<TestTunnel> {
  const t = await startTestHub({ ...(heartbeatMs ? { heartbeatMs } : {}) });
  const server = await target;
  const agent = await startConnectedAgent(
    await t.addDevice('dev'),
    new Map([['t', { host: '127.0.0.1', port: server.port }]]),
    silentLogger,
    heartbeatMs,
  );
  const proxy = await startTestProxy(t, 'dev', 't', silentLogger, heartbeatMs);
  return {
    t,
    target: server,
    agent,
    proxy,
    close: async () => {
      await proxy.close();
      await agent.close();
      await server.close();
      await t.cleanup();
    },
  };
}
