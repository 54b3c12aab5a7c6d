import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseSas } from '../../auth/sas.js';
import type { Logger } from '../../log/logger.js';
import type { Guard } from '../admission/guard.js';
import { sendError } from '../base/http-util.js';

/** An event of `GET /events`: its SSE `event:` name and its JSON `data:`. */
export interface FeedEvent {
  readonly type: 'device' | 'stream' | 'audit' | 'tick';
  readonly data: unknown;
}

export interface EventFeedOptions {
  /** Event streams open at once; past it, 503 (default 64). */
  readonly maxClients?: number;
  /** A client behind for this long is cut off (default 30 s). */
  readonly stallMs?: number;
}

interface Client {
  readonly res: ServerResponse;
  /** Since when its socket has not taken what was written (ms), or undefined. */
  behindSince: number | undefined;
  readonly expiry: NodeJS.Timeout;
}

const line = (event: string, data: unknown): string =>
  `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/**
 * `GET /events` (RegistryRead): Server-Sent Events over one response that stays open, so a
 * page or a script learns what changed without polling: devices going online or offline,
 * streams ending or resuming, each new audit record, and a `tick` every few seconds.
 *
 * A client that does not read is not written to without bound: once a write finds its socket
 * full, events are skipped for it (it gets a `resync` when it drains, and should refetch), and
 * a client stuck for `stallMs` is cut off. The response ends when the token it
 * was opened with expires: the client reconnects with a fresh one.
 */
export class EventFeed {
  readonly #clients = new Set<Client>();
  readonly #maxClients: number;
  readonly #stallMs: number;

  constructor(
    private readonly guard: Guard,
    private readonly logger: Logger,
    options: EventFeedOptions = {},
  ) {
    this.#maxClients = options.maxClients ?? 64;
    this.#stallMs = options.stallMs ?? 30_000;
  }

  get size(): number {
    return this.#clients.size;
  }

  /** Answer `GET /events`. */
  serve(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET')
      return sendError(res, 405, 'MethodNotAllowed', `${req.method} is not supported on /events`);
    if (!this.guard.serviceOrRefuse(req, res, 'RegistryRead', 'events')) return;
    if (this.#clients.size >= this.#maxClients) {
      res.setHeader('retry-after', '10');
      return sendError(res, 503, 'ServiceUnavailable', 'too many event streams open; try later');
    }
    // Authenticated, so the header parses; the stream lasts no longer than its token.
    const expiresInMs = parseSas(req.headers.authorization ?? '').expiry * 1000 - Date.now();
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: 3000\n${line('hello', { time: new Date().toISOString() })}`);
    const client: Client = {
      res,
      behindSince: undefined,
      // Capped at what a timer holds (24.8 days): a longer one would fire at once.
      expiry: setTimeout(
        () => res.end(line('expired', {})),
        Math.min(Math.max(0, expiresInMs), 2 ** 31 - 1),
      ),
    };
    this.#clients.add(client);
    res.on('drain', () => {
      if (client.behindSince === undefined) return;
      client.behindSince = undefined;
      res.write(line('resync', {}));
    });
    res.once('close', () => {
      clearTimeout(client.expiry);
      this.#clients.delete(client);
    });
  }

  /** Send an event to every client that keeps up. */
  publish(event: FeedEvent): void {
    if (this.#clients.size === 0) return;
    const text = line(event.type, event.data);
    const now = Date.now();
    for (const client of this.#clients) {
      const { res } = client;
      if (client.behindSince !== undefined) {
        if (now - client.behindSince > this.#stallMs) {
          this.logger.debug('event stream cut off: its client stopped reading');
          res.destroy();
        }
        continue;
      }
      // Its socket is full: nothing more until it drains (then a `resync`).
      if (!res.write(text)) client.behindSince = now;
    }
  }

  /** End every event stream (the hub is closing). */
  close(): void {
    for (const client of this.#clients) {
      clearTimeout(client.expiry);
      client.res.destroy();
    }
    this.#clients.clear();
  }
}
