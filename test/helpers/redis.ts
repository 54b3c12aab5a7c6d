import { rmSync } from 'node:fs';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startRedisServer, type RedisServer } from '../../bench/cluster-procs.js';
import { Store } from '../../src/hub/cluster/store.js';
import { silentLogger, type Logger } from '../../src/log/logger.js';
import { makeTempDir } from './hub.js';

/**
 * A real redis-server for the cluster tests, private to one test: on a unix socket in the
 * test's temporary directory (see bench/cluster-procs.ts).
 *
 * Cluster mode needs Redis, so there is no skipping: a machine without redis-server fails
 * these tests with a message saying so (.ci/run installs it).
 */
export type TestRedis = RedisServer;

/** Start one (throws, saying what to install, if redis-server is missing). */
export const startRedis = startRedisServer;

/**
 * A redis-server for one test file: started before its tests, emptied after each (the Store
 * connections `connect()` made are closed first), stopped at the end. Call inside `describe`.
 */
export function redisForTests(prefix: string): {
  readonly redis: () => TestRedis;
  connect(logger?: Logger): Promise<Store>;
} {
  let dir = '';
  let redis: TestRedis | undefined;
  const stores: Store[] = [];
  const connect = async (logger: Logger = silentLogger): Promise<Store> => {
    if (!redis) throw new Error('redis is not started yet');
    const store = new Store(new URL(redis.url), logger);
    stores.push(store);
    await store.connect();
    return store;
  };
  beforeAll(async () => {
    dir = makeTempDir(prefix);
    redis = await startRedis(dir);
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    const flush = await connect();
    await flush.call('FLUSHALL');
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    redis: () => {
      if (!redis) throw new Error('redis is not started yet');
      return redis;
    },
    connect,
  };
}
