import { startRedisServer, type RedisServer } from '../../bench/cluster-procs.js';
import { hasCommand } from './system.js';

/**
 * A real redis-server for the cluster tests, private to one test: on a unix socket in the
 * test's temporary directory (see bench/cluster-procs.ts).
 *
 * Cluster mode needs Redis, so there is no skipping: a machine without redis-server fails
 * these tests with a message saying so (.ci/run installs it).
 */
export type TestRedis = RedisServer;

export async function startRedis(dir: string): Promise<TestRedis> {
  if (!hasCommand('redis-server'))
    throw new Error(
      'redis-server is not installed; the cluster tests need it (apt-get install redis-server)',
    );
  return startRedisServer(dir);
}
