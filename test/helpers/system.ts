/**
 * CI sets DSTREAM_REQUIRE_SYSTEM_TOOLS=1 after installing the Debian packages the tests use
 * (.ci/run): there a missing tool is a failure, not a skip.
 */
export const systemToolsRequired = process.env.DSTREAM_REQUIRE_SYSTEM_TOOLS === '1';

/** True if `command` is on the PATH (one implementation, shared with the benchmark). */
export { onPath as hasCommand } from '../../bench/cluster-procs.js';
