import { Duplex, PassThrough } from 'node:stream';
import { afterEach, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../src/agent/agent.js';
import type { BridgeResult } from '../../src/stream/bridge.js';
import { createLogger, silentLogger } from '../../src/log/logger.js';
import { hubTarget } from '../../src/service/credentials.js';
import { openServiceStream } from '../../src/service/stream-client.js';
import { WebSocketCarrier } from '../../src/stream/websocket-carrier.js';
import { carryStream } from '../../src/stream/carry.js';
import { formatStreamFrame } from '../../src/protocol/stream-frames.js';
import { startTestHub } from '../helpers/hub.js';
import { randomBytes, sha256, waitEvent } from '../helpers/net.js';
import { startEchoServer } from '../helpers/servers.js';

// Issue 24 item 8: only the hub says `ticket` and `plain`. A service-side end that sends its
// own is not relayed: the device's end neither takes a forged ticket nor drops to raw bytes,
// and the stream carries on, byte-exact.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

it('forged ticket and plain frames from an end are dropped by the hub, logged once; the stream carries on', async () => {
  const logs: string[] = [];
  const t = await startTestHub({
    logger: createLogger({ level: 'debug', format: 'json', write: (l) => logs.push(l) }),
  });
  cleanups.push(() => t.cleanup());
  const echo = await startEchoServer();
  cleanups.push(() => echo.close());
  const agent: Agent = startAgent(
    {
      credential: await t.addDevice('dev'),
      allow: new Map([['echo', { host: '127.0.0.1', port: echo.port }]]),
      resume: true,
    },
    silentLogger,
  );
  cleanups.push(() => agent.close());
  await waitEvent(agent, 'connected');

  const ws = await openServiceStream(t.service, hubTarget(t.service), {
    deviceId: 'dev',
    streamName: 'echo',
    resume: true,
  });
  expect(ws.protocol).toBe('dstream.stream.v2');
  // Before anything else: a peer that took these would drop to raw bytes or resume with a
  // stranger's ticket.
  ws.send(formatStreamFrame({ type: 'plain', peer: 'raw' }));
  ws.send(formatStreamFrame({ type: 'ticket', ticket: 'v1.forged.forged' }));
  ws.send(formatStreamFrame({ type: 'plain', peer: 'v1' }));

  const input = new PassThrough();
  const output = new PassThrough();
  const local = Duplex.from({ readable: input, writable: output });
  local.on('error', () => undefined);
  const payload = randomBytes(2 * 1024 * 1024);
  const chunks: Buffer[] = [];
  output.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<BridgeResult>((resolve) =>
    carryStream(local, ws, {
      carrier: new WebSocketCarrier({ trust: hubTarget(t.service) }),
      logger: silentLogger,
      onEnd: resolve,
    }),
  );
  input.end(payload);
  const result = await ended;
  expect(result.end).toBe('completed');
  expect(sha256(Buffer.concat(chunks))).toBe(sha256(payload));
  const forged = logs.filter((l) => l.includes('dropped a frame only the hub may send'));
  expect(forged).toHaveLength(1);
  expect(forged[0]).toContain('"side":"service"');
}, 30_000);
