import { startAgent, type Agent } from '../../src/agent/agent.js';
import type { AllowList } from '../../src/agent/allow-list.js';
import type { DeviceConnectionString } from '../../src/auth/connection-string.js';
import { silentLogger, type Logger } from '../../src/log/logger.js';
import { startProxy, type Proxy } from '../../src/proxy/proxy.js';
import { hubTarget } from '../../src/service/credentials.js';
import type { TestHub } from './hub.js';
import { waitEvent } from './net.js';

/** Start an agent and wait until its control connection is up. */
export async function startConnectedAgent(
  credential: DeviceConnectionString,
  allow: AllowList,
  logger: Logger = silentLogger,
): Promise<Agent> {
  const agent = startAgent({ credential, allow, reconnectMinMs: 50, reconnectMaxMs: 500 }, logger);
  await waitEvent(agent, 'connected');
  return agent;
}

/** A proxy on 127.0.0.1:0 to `deviceId`/`streamName` through the test hub. */
export function startTestProxy(
  t: TestHub,
  deviceId: string,
  streamName: string,
  logger: Logger = silentLogger,
): Promise<Proxy> {
  return startProxy(
    {
      credential: t.service,
      target: hubTarget(t.service),
      deviceId,
      streamName,
      bindHost: '127.0.0.1',
      port: 0,
      responseTimeoutSeconds: 10,
    },
    logger,
  );
}
