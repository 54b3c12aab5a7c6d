import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeWebSocket } from '../../src/net/close.js';
import { openWebSocket, UpgradeRefusedError } from '../../src/net/hub-client.js';
import {
  closeCodes,
  resumableStreamProtocol,
  streamProtocol,
} from '../../src/protocol/constants.js';
import type { AuditRecord } from '../../src/hub/store/audit-log.js';
import { signResumeTicket, type ResumeClaims } from '../../src/protocol/resume-ticket.js';
import { hubTarget } from '../../src/service/credentials.js';
import type { WebSocket } from 'ws';
import { hubError } from '../helpers/hub-error.js';
import { waitFor } from '../helpers/net.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';

// The hub's side of resumption, attacked directly: only a ticket it signed, for that stream
// and side, unused, for a device still enabled, gets a half back.

let t: TestHub;
beforeAll(async () => {
  t = await startTestHub();
  await t.addDevice('rt-dev');
});
afterAll(async () => {
  await t.cleanup();
});

const claims = (over: Partial<ResumeClaims> = {}): ResumeClaims => ({
  streamId: 'stream-one',
  deviceId: 'rt-dev',
  streamName: '22',
  side: 'service',
  generation: 1,
  expiresAt: Math.floor(Date.now() / 1000) + 600,
  ...over,
});

/** An open resumed half (throws when refused). */
async function openWs(id: string, ticket: string): Promise<WebSocket> {
  const ws = await openWebSocket(
    `wss://127.0.0.1:${t.hub.port}/bridges/${id}`,
    hubTarget(t.service),
    {
      headers: { authorization: `Resume ${ticket}` },
      protocols: [resumableStreamProtocol],
    },
  );
  ws.on('error', () => undefined);
  ws.resume();
  return ws;
}

async function resume(
  id: string,
  ticket: string,
  protocols: readonly string[] = [resumableStreamProtocol],
): Promise<{ ok: true; close: () => void } | { ok: false; status: number; message: string }> {
  try {
    const ws = await openWebSocket(
      `wss://127.0.0.1:${t.hub.port}/bridges/${id}`,
      hubTarget(t.service),
      { headers: { authorization: `Resume ${ticket}` }, protocols },
    );
    return { ok: true, close: () => closeWebSocket(ws, 1000) };
  } catch (error) {
    if (!(error instanceof UpgradeRefusedError)) throw error;
    return { ok: false, status: error.status, message: hubError({ body: error.body }).message };
  }
}

describe('resume tickets at the hub', () => {
  it('a ticket the hub signed takes a half back; it is spent once the halves pair', async () => {
    const ticket = signResumeTicket(t.state.resumeKey, claims());
    const first = await resume('stream-one', ticket);
    expect(first.ok).toBe(true);
    if (first.ok) first.close();
    // Not paired yet: the same end may come again with it (an attempt whose answer it never
    // saw), and the newer attempt wins.
    const again = await openWs('stream-one', ticket);
    const device = await openWs(
      'stream-one',
      signResumeTicket(t.state.resumeKey, claims({ side: 'device' })),
    );
    // Paired: both tickets are spent.
    const closedAgain = new Promise((resolve) => again.once('close', resolve));
    closeWebSocket(device, 1000);
    await closedAgain;
    expect(await resume('stream-one', ticket)).toEqual({
      ok: false,
      status: 404,
      message: 'the resume ticket was already used',
    });
    // A genuine ticket retried is no guess: forty refusals never throttle the address (the
    // limit is 30 failed authentications a minute).
    for (let i = 0; i < 40; i++)
      expect(await resume('stream-one', ticket)).toMatchObject({ ok: false, status: 404 });
  });

  it('a half waiting for its partner is read: its pings are answered all along, so no heartbeat drops it', async () => {
    const ws = await openWs(
      'waiting',
      signResumeTicket(t.state.resumeKey, claims({ streamId: 'waiting', side: 'device' })),
    );
    // Held paused (as a new stream's first side is), it would never see a ping or answer one.
    for (let i = 0; i < 3; i++) {
      const pong = new Promise((resolve) => ws.once('pong', resolve));
      ws.ping();
      await pong;
    }
    closeWebSocket(ws, 1000);
  });

  it('a stream that ended normally voids its tickets at once, and holds no slot', async () => {
    const key = t.state.resumeKey;
    // Other tests' halves still wait here; this stream's slot is what must come and go.
    const before = t.hub.streams.countFor('rt-dev');
    const device = await openWs(
      'done',
      signResumeTicket(key, claims({ streamId: 'done', side: 'device' })),
    );
    const service = await openWs('done', signResumeTicket(key, claims({ streamId: 'done' })));
    // Paired: each gets its next ticket; then the service side ends the stream normally.
    const closedDevice = new Promise((resolve) => device.once('close', resolve));
    closeWebSocket(service, 1000);
    await closedDevice;
    await waitFor(() => t.hub.streams.countFor('rt-dev') === before, 10_000, 'the slot freed');
    expect(
      await resume('done', signResumeTicket(key, claims({ streamId: 'done', generation: 2 }))),
    ).toEqual({ ok: false, status: 404, message: 'the stream has ended' });
    expect(t.hub.streams.countFor('rt-dev')).toBe(before);
  });

  it('a device disabled and enabled again within the window does not get its suspended streams back', async () => {
    // Issued a few seconds ago, as the hub issues them (valid for 24 h from then).
    const ticket = signResumeTicket(
      t.state.resumeKey,
      claims({
        streamId: 's8',
        side: 'device',
        expiresAt: Math.floor(Date.now() / 1000) + 86_400 - 5,
      }),
    );
    await t.registry.setStatus('rt-dev', 'disabled');
    await t.registry.setStatus('rt-dev', 'enabled');
    expect(await resume('s8', ticket)).toEqual({
      ok: false,
      status: 404,
      message: "device 'rt-dev' was disabled, removed or re-keyed since the stream was suspended",
    });
  });

  it('forged, expired, other-stream and non-v2 attempts are refused with their reason', async () => {
    const key = t.state.resumeKey;
    expect(
      await resume('s2', signResumeTicket(randomBytes(32), claims({ streamId: 's2' }))),
    ).toEqual({
      ok: false,
      status: 401,
      message: 'the resume ticket is not signed by this hub',
    });
    expect(
      await resume('s3', signResumeTicket(key, claims({ streamId: 's3', expiresAt: 1000 }))),
    ).toEqual({ ok: false, status: 401, message: 'the resume window has passed' });
    expect(await resume('s4', signResumeTicket(key, claims({ streamId: 'other' })))).toEqual({
      ok: false,
      status: 401,
      message: 'the resume ticket is for another stream',
    });
    expect(await resume('s5', 'not-a-ticket')).toEqual({
      ok: false,
      status: 401,
      message: 'not a resume ticket',
    });
    expect(
      await resume('s6', signResumeTicket(key, claims({ streamId: 's6' })), [streamProtocol]),
    ).toEqual({
      ok: false,
      status: 400,
      message: `resuming needs the ${resumableStreamProtocol} subprotocol`,
    });
  });

  it('a device disabled meanwhile does not get its stream back', async () => {
    await t.registry.setStatus('rt-dev', 'disabled');
    try {
      expect(
        await resume(
          's7',
          signResumeTicket(t.state.resumeKey, claims({ streamId: 's7', side: 'device' })),
        ),
      ).toEqual({
        ok: false,
        status: 403,
        message: "device 'rt-dev' is disabled or no longer registered",
      });
    } finally {
      await t.registry.setStatus('rt-dev', 'enabled');
    }
  });
});

describe('resumptions in the audit log and the metrics', () => {
  let h: TestHub;
  const records: AuditRecord[] = [];
  beforeAll(async () => {
    h = await startTestHub({
      resumeWindowMs: 500,
      audit: { write: (r) => void records.push(r), reopen: () => undefined, close: async () => {} },
    });
    await h.addDevice('au-dev');
  });
  afterAll(async () => {
    await h.cleanup();
  });

  const ticketFor = (id: string, side: 'service' | 'device', generation = 3): string =>
    signResumeTicket(
      h.state.resumeKey,
      claims({ streamId: id, deviceId: 'au-dev', side, generation }),
    );
  const half = async (
    id: string,
    side: 'service' | 'device',
    generation = 3,
  ): Promise<WebSocket> => {
    const ws = await openWebSocket(
      `wss://127.0.0.1:${h.hub.port}/bridges/${id}`,
      hubTarget(h.service),
      {
        headers: { authorization: `Resume ${ticketFor(id, side, generation)}` },
        protocols: [resumableStreamProtocol],
      },
    );
    ws.on('error', () => undefined);
    ws.resume();
    return ws;
  };
  const counted = async (outcome: string): Promise<number> => {
    const text = await h.hub.metrics.render();
    const m = new RegExp(`^dstream_streams_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(
      text,
    );
    return Number(m?.[1] ?? NaN);
  };

  it('halves that meet again write one "resumed" line; a half left alone past the window writes "gave-up"', async () => {
    const service = await half('au-met', 'service');
    const device = await half('au-met', 'device');
    await waitFor(() => records.some((r) => r.outcome === 'resumed'), 10_000, 'the resumed line');
    const resumed = records.filter((r) => r.outcome === 'resumed');
    expect(resumed).toHaveLength(1);
    expect(resumed[0]).toMatchObject({
      device: 'au-dev',
      stream: '22',
      reason: 'resumed (generation 3)',
      remote: '127.0.0.1',
    });
    expect(await counted('resumed')).toBe(1);
    closeWebSocket(service, 1000);
    closeWebSocket(device, 1000);

    const alone = await half('au-alone', 'service');
    const closed = new Promise<number>((resolve) => alone.once('close', (code) => resolve(code)));
    expect(await closed).toBe(closeCodes.pairTimeout);
    await waitFor(() => records.some((r) => r.outcome === 'gave-up'), 10_000, 'the gave-up line');
    expect(records.filter((r) => r.outcome === 'gave-up')).toEqual([
      expect.objectContaining({
        device: 'au-dev',
        stream: '22',
        reason: 'the other side did not resume in time',
      }),
    ]);
    expect(await counted('gave-up')).toBe(1);
  }, 30_000);

  it('/metrics counts the bytes a resumed end sends again that the hub had relayed before the loss', async () => {
    const replayed = async (): Promise<number> =>
      Number(
        /^dstream_stream_replayed_bytes_total (\d+)$/m.exec(await h.hub.metrics.render())?.[1],
      );
    const before = await replayed();
    const pairUp = async (generation: number): Promise<[WebSocket, WebSocket]> => {
      const service = await half('au-rp', 'service', generation);
      const device = await half('au-rp', 'device', generation);
      // Each gets its ticket once paired.
      await Promise.all([service, device].map((ws) => once(ws, 'message')));
      return [service, device];
    };
    const [s1, d1] = await pairUp(3);
    s1.send(JSON.stringify({ type: 'resume', received: 0 }));
    d1.send(JSON.stringify({ type: 'resume', received: 0 }));
    // 1000 bytes from the service side reach the device; then both links are lost.
    const arrived = new Promise<void>((resolve) => {
      let n = 0;
      d1.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary && (n += data.length) >= 1000) resolve();
      });
    });
    s1.send(Buffer.alloc(1000, 7), { binary: true });
    await arrived;
    const suspended = (): number => records.filter((r) => r.outcome === 'suspended').length;
    const suspendedBefore = suspended();
    s1.terminate();
    d1.terminate();
    await waitFor(() => suspended() === suspendedBefore + 1, 10_000, 'the suspension');
    // Back: the device says it holds 400 of them (its application took only those), so the
    // service side sends the other 600 again.
    const [s2, d2] = await pairUp(4);
    d2.send(JSON.stringify({ type: 'resume', received: 400 }));
    s2.send(JSON.stringify({ type: 'resume', received: 0 }));
    await expect.poll(replayed, { timeout: 10_000 }).toBe(before + 600);
    closeWebSocket(s2, 1000);
    closeWebSocket(d2, 1000);
  }, 30_000);

  it('a suspended stream neither of whose halves comes back writes "gave-up" once the window has passed', async () => {
    const count = (outcome: string): number => records.filter((r) => r.outcome === outcome).length;
    const [resumedBefore, suspendedBefore] = [count('resumed'), count('suspended')];
    const service = await half('au-gone', 'service');
    const device = await half('au-gone', 'device');
    await waitFor(() => count('resumed') === resumedBefore + 1, 10_000, 'the pairing');
    // Both ends vanish at once (say, the laptop and the device both lost power): lost, not
    // ended, so the stream is suspended; nobody comes back.
    service.terminate();
    device.terminate();
    const gone = (): AuditRecord | undefined =>
      records.find((r) => r.outcome === 'gave-up' && r.reason === 'neither side resumed in time');
    await waitFor(() => gone() !== undefined, 10_000, 'the gave-up line');
    expect(count('suspended')).toBe(suspendedBefore + 1);
    expect(gone()).toMatchObject({ device: 'au-dev', stream: '22' });
    expect(await counted('gave-up')).toBe(2);
  }, 30_000);
});
