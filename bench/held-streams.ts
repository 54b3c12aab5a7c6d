import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { spawnChild, type Child } from './child.js';
import { dial, readExactly, waitUntil } from './client.js';
import { msSince } from './proc-stats.js';

const payload = Buffer.alloc(32, 7);

/** Streams held open through one local port, wherever the holding process is. */
export interface Holding {
  /** Opens `count` more streams (each up, its first echo back, before it counts); the ms taken. */
  open(count: number): Promise<number>;
  /** Every held stream echoes a small payload once a second until `stopEchoes`. */
  startEchoes(): Promise<void>;
  /** Stops echoing once every echo sent is answered or has timed out (and was counted). */
  stopEchoes(): Promise<void>;
  /** Streams held and failures so far (a stream that could not open, an echo that timed out, a close). */
  tally(): Promise<{ readonly held: number; readonly failures: number }>;
  /** Lets every stream go (ends it; closes no longer count as failures). */
  close(): Promise<void>;
}

/** Holds streams in the process that runs it: one descriptor per stream (its client socket). */
export class StreamHolder implements Holding {
  readonly #port: number;
  readonly #sockets: Socket[] = [];
  #failures = 0;
  #closing = false;
  #pending = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(port: number) {
    this.#port = port;
  }

  async open(count: number): Promise<number> {
    const start = process.hrtime.bigint();
    // Ramp in batches: each batch's streams are up (first echo back) before the next starts.
    const batch = 100;
    for (let i = 0; i < count; i += batch) {
      await Promise.all(Array.from({ length: Math.min(batch, count - i) }, () => this.#openOne()));
    }
    return msSince(start);
  }

  async #openOne(): Promise<void> {
    try {
      const socket = await dial(this.#port);
      socket.once('close', () => {
        if (!this.#closing) this.#failures++;
      });
      const back = readExactly(socket, payload.length);
      socket.write(payload);
      await back;
      this.#sockets.push(socket);
    } catch {
      this.#failures++;
    }
  }

  #round = (): void => {
    for (const s of this.#sockets) {
      this.#pending++;
      readExactly(s, payload.length, 20_000)
        .catch(() => this.#failures++)
        .finally(() => this.#pending--);
      s.write(payload);
    }
  };

  startEchoes(): Promise<void> {
    this.#timer ??= setInterval(this.#round, 1000);
    return Promise.resolve();
  }

  async stopEchoes(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await waitUntil(() => this.#pending === 0, 30_000, 'the last echoes');
  }

  tally(): Promise<{ held: number; failures: number }> {
    return Promise.resolve({ held: this.#sockets.length, failures: this.#failures });
  }

  async close(): Promise<void> {
    this.#closing = true;
    await Promise.all(
      this.#sockets.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.closed) return resolve();
            s.once('close', () => resolve());
            s.end();
            setTimeout(() => s.destroy(), 10_000).unref();
          }),
      ),
    );
  }
}

/** bench/hold-child.ts as compiled next to this file (the bench runs from .bench-build/). */
const holdChildPath = fileURLToPath(new URL('./hold-child.js', import.meta.url));

/** An echo target in a process of its own, so that its descriptors count against its own limit. */
export interface EchoProcess {
  readonly port: number;
  readonly child: Child;
}

export async function startEchoProcess(): Promise<EchoProcess> {
  const child = spawnChild(process.execPath, [holdChildPath, 'echo']);
  try {
    const port = Number((await child.waitFor(/\{"port":(\d+)\}/))[1]);
    return { port, child };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

/**
 * Holds streams in a process of its own (a StreamHolder there, driven by one command per line
 * on its stdin, each answered by a numbered JSON line), so that many streams fit descriptor
 * limits that are per process.
 */
export function holdInChildProcess(port: number): Holding & { readonly child: Child } {
  const child = spawnChild(process.execPath, [holdChildPath, 'hold', String(port)], {}, null);
  let sent = 0;
  const ask = async (command: string, timeoutMs: number): Promise<Record<string, number>> => {
    const n = ++sent;
    child.process.stdin?.write(`${command}\n`);
    const m = await child.waitFor(new RegExp(`^\\{"reply":${n}(?:,[^\\n]*)?\\}$`, 'm'), timeoutMs);
    return JSON.parse(m[0]) as Record<string, number>;
  };
  return {
    child,
    open: async (count) => (await ask(`open ${count}`, 1_800_000)).ms ?? NaN,
    startEchoes: async () => void (await ask('echoes-on', 30_000)),
    stopEchoes: async () => void (await ask('echoes-off', 60_000)),
    tally: async () => {
      const r = await ask('tally', 30_000);
      return { held: r.held ?? 0, failures: r.failures ?? 0 };
    },
    close: async () => void (await ask('close', 60_000)),
  };
}
