// Bundle `dstream connect` on its own (src/connect-cli.ts) into one file, dist/connect.mjs, which
// bin/dstream.js runs for `dstream connect`: ssh starts it once per connection as a ProxyCommand,
// and one file loads in about two thirds of the time of the hundred modules it is made of
// (docs/benchmark.md). Run by `npm run build`, after tsc.
import { fileURLToPath } from 'node:url';
import { nodeBundle } from './node-bundle.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

await nodeBundle({
  entry: `${root}src/connect-cli.ts`,
  outfile: `${root}dist/connect.mjs`,
  // conf (to save a profile) and ora (a spinner) load from node_modules in the rare run that
  // needs them, as in the full CLI.
  external: ['conf', 'ora'],
  sourcemap: true,
});
