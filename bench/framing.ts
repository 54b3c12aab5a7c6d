import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http2 from 'node:http2';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { MuxSession } from '../src/mux/mux-session.js';
import type { MuxStream } from '../src/mux/mux-stream.js';
import { muxProtocol } from '../src/protocol/mux-frames.js';
import { keepHeapFloor } from '../src/runtime/heap-floor.js';
import { createSelfSignedCertificate } from '../src/tls/self-signed.js';
import { msSince, percentile } from './proc-stats.js';

// The framing comparison of issue 28: Node's HTTP/2 (nghttp2) against dstream.mux.v1 over one
// TLS WebSocket, the same measurements on each, the acceptor in a child process; and, as the
// reference for one hop of the per-stream carrier, a TLS WebSocket of its own per stream (`ws`):
//   npx tsc -p tsconfig.bench.json && node --expose-gc .bench-build/bench/framing.js [--quick]
// (FRAMING_ONLY=mux|http2|ws: one kind; FRAMING_PINGS_ONLY=N: only N 64-byte round trips;
// FRAMING_ECHO_ONLY=N: only the echo of N MiB.)
// docs/benchmark.md ("Choosing the multiplexed framing") has the figures and the choice.

type Kind = 'http2' | 'mux' | 'ws';
const windowBytes = 1024 * 1024;
const quick = process.argv.includes('--quick');
/** Bytes each mux side hands its WebSocket ahead (the session's default unless set). */
const sendHighWater =
  process.env.FRAMING_HIGH_WATER === undefined ? undefined : Number(process.env.FRAMING_HIGH_WATER);

// --- the acceptor (child process): accepts every stream; '/echo' echoes, '/sink' counts ---

function serve(kind: Kind): void {
  const tls = { key: process.env.FRAMING_KEY ?? '', cert: process.env.FRAMING_CERT ?? '' };
  if (kind === 'http2') {
    const server = http2.createSecureServer({
      ...tls,
      settings: { initialWindowSize: windowBytes, maxConcurrentStreams: 100_000 },
      maxSessionMemory: 1000,
    });
    server.on('session', (session) => session.setLocalWindowSize(16 * windowBytes));
    server.on('stream', (stream, headers) => {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 200 });
      if (headers[':path'] === '/echo') stream.pipe(stream);
      else {
        stream.resume();
        stream.on('end', () => stream.end());
      }
    });
    server.listen(0, '127.0.0.1', () => report(server.address() as AddressInfo));
    return;
  }
  const https: Server = createServer(tls);
  const wss = new WebSocketServer({
    server: https,
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
    handleProtocols: () => muxProtocol,
  });
  wss.on('connection', (ws, req) => {
    ws.on('error', () => undefined);
    if (kind === 'ws') {
      if (req.url === '/echo') echo(ws);
      else ws.on('message', () => undefined);
      return;
    }
    const session = new MuxSession(ws, {
      role: 'listener',
      receiveWindow: windowBytes,
      sendHighWater,
    });
    session.on('open-request', (stream, request) => {
      stream.accept('bench');
      if (request.path === '/echo') echo(stream);
      else stream.on('message', () => undefined);
      stream.on('close', () => undefined);
      stream.resume();
    });
  });
  https.listen(0, '127.0.0.1', () => report(https.address() as AddressInfo));
}

/** Echo with back-pressure: at most 1 MiB handed back and not yet sent. */
function echo(stream: MuxStream | WebSocket): void {
  let inFlight = 0;
  stream.on('message', (data: Buffer, isBinary: boolean) => {
    inFlight += data.length;
    if (inFlight > windowBytes) stream.pause();
    stream.send(data, { binary: isBinary }, () => {
      inFlight -= data.length;
      if (inFlight <= windowBytes / 2) stream.resume();
    });
  });
}

function report(address: AddressInfo): void {
  process.stdout.write(`port ${address.port}\n`);
  // 'mem' on stdin: the heap and buffers in use after a full collection (RSS moves in steps).
  process.stdin.on(
    'data',
    () => void memoryInUse().then((n) => process.stdout.write(`mem ${n}\n`)),
  );
}

/** JavaScript heap and buffers in use, after a full collection (node --expose-gc). */
async function memoryInUse(): Promise<number> {
  // Twice, a turn apart: buffers are freed by the collection after their handles'.
  for (let i = 0; i < 2; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

// --- the opener (this process) ---

interface Opener {
  /** Open a stream and wait for the acceptor's answer. */
  open(path: string): Promise<Carried>;
  close(): void;
}

interface Carried {
  write(data: Buffer): Promise<void>;
  onData(listener: (data: Buffer) => void): void;
  /** Close and wait until both sides have. */
  end(): Promise<void>;
}

async function connect(kind: Kind, port: number): Promise<Opener> {
  if (kind === 'http2') {
    const session = http2.connect(`https://127.0.0.1:${port}`, {
      rejectUnauthorized: false,
      settings: { initialWindowSize: windowBytes },
      maxSessionMemory: 1000,
    });
    session.on('error', () => undefined);
    await once(session, 'connect');
    session.setLocalWindowSize(16 * windowBytes);
    return {
      open: async (path) => {
        const req = session.request({ ':method': 'POST', ':path': path });
        req.on('error', () => undefined);
        await once(req, 'response');
        return {
          write: (data) =>
            new Promise<void>((resolve) => {
              if (req.write(data)) resolve();
              else req.once('drain', () => resolve());
            }),
          onData: (listener) => req.on('data', listener),
          end: async () => {
            req.resume();
            const closed = once(req, 'close');
            req.end();
            await closed;
          },
        };
      },
      close: () => session.close(),
    };
  }
  if (kind === 'ws')
    return {
      open: async (path) => {
        const socket = new WebSocket(`wss://127.0.0.1:${port}${path}`, {
          rejectUnauthorized: false,
          perMessageDeflate: false,
        });
        socket.on('error', () => undefined);
        await once(socket, 'open');
        return carried(socket);
      },
      close: () => undefined,
    };
  const ws = new WebSocket(`wss://127.0.0.1:${port}/`, muxProtocol, {
    rejectUnauthorized: false,
    perMessageDeflate: false,
  });
  ws.on('error', () => undefined);
  await once(ws, 'open');
  const session = new MuxSession(ws, {
    role: 'dialler',
    receiveWindow: windowBytes,
    sendHighWater,
  });
  return {
    open: async (path) => {
      const stream = session.open(path, { path, authorization: '', protocols: [] });
      await once(stream, 'open');
      stream.resume();
      return carried(stream);
    },
    close: () => session.close(),
  };
}

/** A substream or a WebSocket of its own, written with at most 1 MiB handed on and unsent. */
function carried(stream: MuxStream | WebSocket): Carried {
  let inFlight = 0;
  let waiting: (() => void) | undefined;
  return {
    write: (data) =>
      new Promise<void>((resolve) => {
        inFlight += data.length;
        stream.send(data, { binary: true }, () => {
          inFlight -= data.length;
          if (inFlight <= windowBytes / 2 && waiting) {
            const w = waiting;
            waiting = undefined;
            w();
          }
        });
        if (inFlight <= windowBytes) resolve();
        else waiting = resolve;
      }),
    onData: (listener) => stream.on('message', (d: Buffer) => listener(d)),
    end: async () => {
      const closed = once(stream, 'close');
      stream.close(1000);
      await closed;
    },
  };
}

async function setupLatency(opener: Opener, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count + 200; i++) {
    const start = process.hrtime.bigint();
    const s = await opener.open('/sink');
    if (i >= 200) times.push(msSince(start));
    await s.end();
  }
  return times;
}

async function setupRate(opener: Opener, seconds: number): Promise<number> {
  const until = Date.now() + seconds * 1000;
  let opened = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (Date.now() < until) {
        const s = await opener.open('/sink');
        opened++;
        await s.end();
      }
    }),
  );
  return opened / seconds;
}

async function echoThroughput(opener: Opener, bytes: number): Promise<number> {
  const s = await opener.open('/echo');
  const chunk = Buffer.alloc(64 * 1024, 7);
  let back = 0;
  const done = new Promise<void>((resolve) =>
    s.onData((d) => {
      back += d.length;
      if (back >= bytes) resolve();
    }),
  );
  const start = process.hrtime.bigint();
  for (let sent = 0; sent < bytes; sent += chunk.length) await s.write(chunk);
  await done;
  const ms = msSince(start);
  await s.end();
  return bytes / 1e6 / (ms / 1000);
}

/** Round trips of `count` 64-byte pings, one at a time, on a stream to the echo. */
async function pingTimes(ping: Carried, count: number): Promise<number[]> {
  let resolveBack: (() => void) | undefined;
  let got = 0;
  ping.onData((d) => {
    got += d.length;
    if (got >= 64 && resolveBack) {
      got -= 64;
      const r = resolveBack;
      resolveBack = undefined;
      r();
    }
  });
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = process.hrtime.bigint();
    const back = new Promise<void>((resolve) => (resolveBack = resolve));
    await ping.write(Buffer.alloc(64, 2));
    await back;
    times.push(msSince(start));
  }
  return times;
}

async function pingAlone(opener: Opener, count: number): Promise<number[]> {
  const ping = await opener.open('/echo');
  await pingTimes(ping, 200);
  const times = await pingTimes(ping, count);
  await ping.end();
  return times;
}

async function pingBesideBulk(opener: Opener, count: number): Promise<number[]> {
  const bulk = await opener.open('/sink');
  let running = true;
  const chunk = Buffer.alloc(64 * 1024, 1);
  const pushing = (async () => {
    while (running) await bulk.write(chunk);
  })();
  const ping = await opener.open('/echo');
  const times = await pingTimes(ping, count);
  running = false;
  await pushing;
  await Promise.all([bulk.end(), ping.end()]);
  return times;
}

async function openMemory(
  opener: Opener,
  serverMemory: () => Promise<number>,
  count: number,
): Promise<{ serverPerStream: number; clientPerStream: number }> {
  const server0 = await serverMemory();
  const client0 = await memoryInUse();
  const open: Carried[] = [];
  for (let i = 0; i < count; i += 500)
    open.push(...(await Promise.all(Array.from({ length: 500 }, () => opener.open('/sink')))));
  const server1 = await serverMemory();
  const client1 = await memoryInUse();
  for (let i = 0; i < open.length; i += 500)
    await Promise.all(open.slice(i, i + 500).map((s) => s.end()));
  return {
    serverPerStream: (server1 - server0) / count,
    clientPerStream: (client1 - client0) / count,
  };
}

async function measure(kind: Kind, tls: { key: string; cert: string }): Promise<void> {
  const child = spawn(
    process.execPath,
    ['--expose-gc', fileURLToPath(import.meta.url), '--serve', kind],
    {
      env: { ...process.env, FRAMING_KEY: tls.key, FRAMING_CERT: tls.cert },
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  while (!/port \d+/.test(out)) await once(child.stdout, 'data');
  const port = Number(/port (\d+)/.exec(out)?.[1]);
  const serverMemory = async (): Promise<number> => {
    out = '';
    child.stdin.write('mem\n');
    while (!/mem \d+/.test(out)) await once(child.stdout, 'data');
    return Number(/mem (\d+)/.exec(out)?.[1]);
  };
  try {
    const opener = await connect(kind, port);
    if (process.env.FRAMING_ECHO_ONLY) {
      // Only the echo, of that many MiB (A/B runs of a change to the bulk path).
      const mbps = await echoThroughput(
        opener,
        Number(process.env.FRAMING_ECHO_ONLY) * 1024 * 1024,
      );
      opener.close();
      console.log(`${kind.padEnd(6)} | echo ${mbps.toFixed(0)} MB/s`);
      return;
    }
    if (process.env.FRAMING_PINGS_ONLY) {
      // Only the round trip, many times (A/B runs of a change to the per-message path).
      const alone = await pingAlone(opener, Number(process.env.FRAMING_PINGS_ONLY));
      opener.close();
      console.log(
        `${kind.padEnd(6)} | ping p50 ${percentile(alone, 50).toFixed(3)} ms p90 ${percentile(alone, 90).toFixed(3)} ms`,
      );
      return;
    }
    // First, while nothing else has passed through either process.
    const memory = await openMemory(
      opener,
      serverMemory,
      process.env.FRAMING_STREAMS
        ? Number(process.env.FRAMING_STREAMS)
        : // A TLS connection per stream: fewer, or the handshakes take minutes.
          kind === 'ws'
          ? 2000
          : quick
            ? 5000
            : 20_000,
    );
    const latency = await setupLatency(opener, quick ? 500 : 3000);
    const rate = await setupRate(opener, quick ? 2 : 5);
    const mbps = await echoThroughput(opener, (quick ? 64 : 256) * 1024 * 1024);
    const alone = await pingAlone(opener, quick ? 1000 : 5000);
    const ping = await pingBesideBulk(opener, quick ? 300 : 1000);
    opener.close();
    const f = (n: number, d = 3): string => n.toFixed(d);
    console.log(
      [
        `${kind.padEnd(6)}`,
        `setup p50 ${f(percentile(latency, 50))} ms p99 ${f(percentile(latency, 99))} ms`,
        `rate ${f(rate, 0)}/s (50 openers)`,
        `echo ${f(mbps, 0)} MB/s`,
        `ping p50 ${f(percentile(alone, 50))} ms p90 ${f(percentile(alone, 90))} ms`,
        `ping beside bulk p50 ${f(percentile(ping, 50))} ms p99 ${f(percentile(ping, 99))} ms`,
        `per open stream: acceptor ${f(memory.serverPerStream / 1024, 1)} KiB, opener ${f(memory.clientPerStream / 1024, 1)} KiB`,
      ].join(' | '),
    );
  } finally {
    child.kill();
  }
}

// As every dstream process does (src/cli-runner.ts): without it both sides' full collections,
// not the framing, set a bulk transfer's pace (docs/benchmark.md, "The garbage collector's floor").
keepHeapFloor();
if (process.argv[2] === '--serve') serve(process.argv[3] as Kind);
else {
  const tls = await createSelfSignedCertificate('framing', ['127.0.0.1']);
  const only = process.env.FRAMING_ONLY;
  for (const kind of ['http2', 'mux', 'ws'] as const)
    if (only === undefined || only === kind) await measure(kind, tls);
}
