import { spawnSync } from 'node:child_process';

/**
 * CI sets DSTREAM_REQUIRE_SYSTEM_TOOLS=1 after installing the Debian packages the tests use
 * (.ci/run): there a missing tool is a failure, not a skip.
 */
export const systemToolsRequired = process.env.DSTREAM_REQUIRE_SYSTEM_TOOLS === '1';

/** True if `command` is on the PATH. */
export function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}
