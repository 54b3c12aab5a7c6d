import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expiryIn, signSas } from '../../src/auth/sas.js';
import { defaultGuardOptions, Guard } from '../../src/hub/admission/guard.js';
import { EventFeed } from '../../src/hub/http/event-feed.js';
import { openHubDataDir, type HubDataDir } from '../../src/hub/store/data-dir.js';
import { silentLogger } from '../../src/log/logger.js';
import { makeTempDir } from '../helpers/hub.js';
import { waitFor } from '../helpers/net.js';

// GET /events toward a client that stops reading: bounded, skipped, then cut off (issue 27).

let dir: string;
let state: HubDataDir;
let feed: EventFeed;
let server: Server;
const responses: ServerResponse[] = [];

beforeAll(async () => {
  dir = makeTempDir('dstream-feed-');
  state = await openHubDataDir(
    { dataDir: dir, insecureNoTls: true, certificateNames: ['localhost'] },
    silentLogger,
  );
  const guard = new Guard(state.registry, silentLogger, defaultGuardOptions);
  feed = new EventFeed(guard, silentLogger, { stallMs: 1_000 });
  server = createServer((req, res) => {
    responses.push(res);
    feed.serve(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  feed.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  state.registry.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A raw client that sends the request and reads only when told. */
function openEvents(): Promise<Socket> {
  const { port } = server.address() as AddressInfo;
  const token = signSas({
    resource: 'hub',
    key: state.servicePolicy.key,
    keyName: state.servicePolicy.name,
    expiry: expiryIn(600),
  });
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: ${token}\r\n\r\n`);
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

describe('EventFeed', () => {
  it('a client that stops reading is written to no further than its socket takes, then cut off', async () => {
    const before = responses.length;
    const client = await openEvents();
    client.pause();
    await waitFor(() => feed.size === 1, 10_000, 'the client to be served');
    const res = responses[before];
    if (!res) throw new Error('no response');
    const big = 'x'.repeat(64 * 1024);
    let mostBuffered = 0;
    let published = 0;
    // Publish until the feed gives up on it: once the kernel's buffers are full too, the
    // client stays behind for a second and the next event cuts it off.
    while (feed.size > 0 && published < 3_000) {
      feed.publish({ type: 'tick', data: { big } });
      published++;
      mostBuffered = Math.max(mostBuffered, res.writableLength);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(feed.size).toBe(0);
    expect(res.destroyed).toBe(true);
    // However many were published, the response held at most about one event.
    expect(published).toBeGreaterThan(50);
    expect(mostBuffered).toBeLessThan(256 * 1024);
    client.destroy();
  });

  it('a client that falls behind and catches up is told to resync', async () => {
    await waitFor(() => feed.size === 0, 10_000, 'no client left from before');
    const client = await openEvents();
    client.pause();
    await waitFor(() => feed.size === 1, 10_000, 'the client to be served');
    const big = 'y'.repeat(64 * 1024);
    for (let i = 0; i < 100; i++) feed.publish({ type: 'tick', data: { big } });
    let text = '';
    client.setEncoding('utf8');
    client.on('data', (d: string) => (text = (text + d).slice(-4096)));
    client.resume();
    await waitFor(() => text.includes('event: resync'), 10_000, 'a resync event');
    client.destroy();
    await waitFor(() => feed.size === 0, 10_000, 'the client to go');
  });
});
