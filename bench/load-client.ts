/**
 * A load client for the idle-devices scenario: holds many device control connections, speaking
 * the real protocol (SAS-signed upgrade to /devices/{id}/control, dstream.control.v1, pongs).
 * Reads its job as one JSON object on stdin; prints JSON progress lines on stdout; keeps the
 * connections until it gets SIGTERM.
 */
import { WebSocket } from 'ws';
import { signSas, expiryIn } from '../src/auth/sas.js';
import { controlProtocol } from '../src/protocol/constants.js';

interface Job {
  readonly host: string;
  readonly port: number;
  readonly resourceHost: string;
  readonly ca: string;
  readonly localAddress: string;
  readonly concurrency: number;
  readonly devices: readonly { readonly id: string; readonly key: string }[];
}

async function readJob(): Promise<Job> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Job;
}

function open(job: Job, device: { id: string; key: string }): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const token = signSas({
      resource: `${job.resourceHost}/devices/${encodeURIComponent(device.id)}`,
      key: device.key,
      expiry: expiryIn(3600),
    });
    const ws = new WebSocket(
      `wss://${job.host}:${job.port}/devices/${encodeURIComponent(device.id)}/control`,
      [controlProtocol],
      {
        ca: job.ca,
        localAddress: job.localAddress,
        headers: { authorization: token },
        perMessageDeflate: false,
        handshakeTimeout: 30_000,
      },
    );
    ws.once('open', () => {
      ws.removeAllListeners('error');
      ws.on('error', () => undefined);
      resolve(ws);
    });
    ws.once('error', reject);
  });
}

const job = await readJob();
const sockets: WebSocket[] = [];
let failed = 0;
let firstError: string | undefined;
let next = 0;
const start = Date.now();
await Promise.all(
  Array.from({ length: job.concurrency }, async () => {
    for (let i = next++; i < job.devices.length; i = next++) {
      const device = job.devices[i];
      if (!device) break;
      try {
        sockets.push(await open(job, device));
        if (sockets.length % 1000 === 0) console.log(JSON.stringify({ connected: sockets.length }));
      } catch (error) {
        failed++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  }),
);
let dropped = 0;
for (const ws of sockets) ws.once('close', () => dropped++);
console.log(JSON.stringify({ done: sockets.length, failed, firstError, ms: Date.now() - start }));
process.on('SIGTERM', () => {
  console.log(JSON.stringify({ dropped }));
  process.exit(0);
});
setInterval(() => undefined, 60_000);
