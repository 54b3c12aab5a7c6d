import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../../log/logger.js';

/** A Lua script run atomically by Redis. */
export interface StoreScript {
  readonly name: string;
  readonly keys: number;
  readonly lua: string;
}

type MessageHandler = (message: string) => void;

export interface StoreOptions {
  /** Fail a command that gets no answer in this time (a paused or overloaded Redis). */
  readonly commandTimeoutMs?: number;
  /** Most time between reconnection attempts. */
  readonly maxReconnectMs?: number;
}

/**
 * The cluster's one door to Redis. Two connections: one for commands, one for
 * subscriptions (a subscribed connection takes no other commands in RESP2).
 *
 * Failure behaviour is chosen here, not left to defaults: no offline queue (a command while
 * Redis is away fails at once instead of piling up in memory), no retries of commands (the
 * caller decides), a command timeout, and reconnection for ever with jittered backoff.
 * Subscriptions are renewed by us, not by ioredis, so that 'up' fires only once the
 * subscriptions are in place again: whoever rebuilds state on 'up' cannot miss a message
 * published between the reconnection and the resubscription.
 *
 * Events: 'up' (both connections ready and subscribed), 'down' (either connection lost).
 */
export class Store extends EventEmitter {
  readonly #cmd: Redis;
  readonly #sub: Redis;
  readonly #handlers = new Map<string, MessageHandler>();
  readonly #logger: Logger;
  #up = false;
  #closed = false;
  #subReady = false;
  /** The last connection error ioredis reported: its own rejection just says "closed". */
  #lastError: Error | undefined;

  constructor(url: URL, logger: Logger, options: StoreOptions = {}) {
    super();
    this.#logger = logger;
    const maxReconnectMs = options.maxReconnectMs ?? 1000;
    const base: RedisOptions = Object.assign(connectionOptions(url), {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 2000,
      connectTimeout: 2000,
      autoResubscribe: false,
      // RESP2: replies in the shapes this code expects, with any Redis 5+.
      protocol: 2,
      retryStrategy: (attempt: number) =>
        Math.round(
          Math.min(maxReconnectMs, 50 * 2 ** Math.min(attempt, 10)) * (0.5 + Math.random() / 2),
        ),
    });
    this.#cmd = new Redis(Object.assign({}, base, { connectionName: 'dstream-cmd' }));
    this.#sub = new Redis(Object.assign({}, base, { connectionName: 'dstream-sub' }));
    for (const [conn, role] of [
      [this.#cmd, 'commands'],
      [this.#sub, 'subscriptions'],
    ] as const) {
      // ioredis emits 'error' on every failed attempt; the state change is what matters.
      conn.on('error', (error: Error) => {
        this.#lastError = error;
        this.#logger.debug('redis connection error', { role, error: error.message });
      });
      conn.on('close', () => this.#lost());
      conn.on('ready', () => void this.#maybeUp(conn === this.#sub));
    }
    this.#sub.on('message', (channel: string, message: string) =>
      this.#handlers.get(channel)?.(message),
    );
  }

  /** Connect both connections; rejects if Redis cannot be reached now. */
  async connect(): Promise<void> {
    try {
      await Promise.all([this.#cmd.connect(), this.#sub.connect()]);
    } catch (error) {
      throw this.#lastError ?? error;
    }
    await this.#resubscribe();
  }

  /** True while both connections are up and subscribed. */
  get up(): boolean {
    return this.#up;
  }

  #lost(): void {
    if (this.#sub.status !== 'ready') this.#subReady = false;
    if (!this.#up || this.#closed) return;
    this.#up = false;
    this.emit('down');
  }

  async #maybeUp(subscriber: boolean): Promise<void> {
    if (subscriber) await this.#resubscribe();
    else this.#check();
  }

  async #resubscribe(): Promise<void> {
    try {
      const channels = [...this.#handlers.keys()];
      if (channels.length > 0) await this.#sub.subscribe(...channels);
      this.#subReady = true;
      this.#check();
    } catch (error) {
      this.#logger.debug('redis resubscribe failed', { error: (error as Error).message });
    }
  }

  #check(): void {
    if (this.#up || this.#closed || !this.#subReady) return;
    if (this.#cmd.status !== 'ready' || this.#sub.status !== 'ready') return;
    this.#up = true;
    this.emit('up');
  }

  /** Receive messages published on `channel` (kept across reconnections). */
  async subscribe(channel: string, handler: MessageHandler): Promise<void> {
    this.#handlers.set(channel, handler);
    if (this.#sub.status === 'ready') await this.#sub.subscribe(channel);
  }

  /** Publish; resolves with the number of subscribers that got it. */
  async publish(channel: string, message: string): Promise<number> {
    return this.#cmd.publish(channel, message);
  }

  /** Run a script atomically (EVALSHA, loading it on first use). */
  async run(
    script: StoreScript,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    if (keys.length !== script.keys)
      throw new Error(`${script.name}: expected ${script.keys} keys`);
    return this.#cmd.evalsha(sha(script), keys.length, ...keys, ...args).catch((error: Error) => {
      if (!error.message.startsWith('NOSCRIPT')) throw error;
      return this.#cmd.eval(script.lua, keys.length, ...keys, ...args);
    });
  }

  /** A plain command, e.g. call('HGETALL', key). */
  async call(command: string, ...args: (string | number)[]): Promise<unknown> {
    return this.#cmd.call(command, ...args);
  }

  /** Close both connections; pending commands fail. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#up = false;
      this.#cmd.disconnect();
      this.#sub.disconnect();
    }
    return Promise.resolve();
  }
}

const shas = new WeakMap<StoreScript, string>();
function sha(script: StoreScript): string {
  let value = shas.get(script);
  if (!value) {
    value = createHash('sha1').update(script.lua).digest('hex');
    shas.set(script, value);
  }
  return value;
}

function connectionOptions(url: URL): RedisOptions {
  const auth = {
    ...(url.username && { username: decodeURIComponent(url.username) }),
    ...(url.password && { password: decodeURIComponent(url.password) }),
  };
  if (url.protocol === 'unix:') return { path: url.pathname, ...auth };
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : 6379,
    db: Number.isInteger(db) ? db : 0,
    ...auth,
    ...(url.protocol === 'rediss:' && { tls: { servername: url.hostname } }),
  };
}
