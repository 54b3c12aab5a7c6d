// Bundle `dstream connect` on its own (src/connect-cli.ts) into one file, dist/connect.mjs, which
// bin/dstream.js runs for `dstream connect`: ssh starts it once per connection as a ProxyCommand,
// and one file loads in about two thirds of the time of the hundred modules it is made of
// (docs/benchmark.md). Run by `npm run build`, after tsc.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

await build({
  entryPoints: [`${root}src/connect-cli.ts`],
  outfile: `${root}dist/connect.mjs`,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: true,
  keepNames: true,
  legalComments: 'none',
  sourcemap: 'linked',
  // Native helpers ws loads if they are there; conf (to save a profile) and ora (a spinner)
  // load from node_modules in the rare run that needs them, as in the full CLI.
  external: ['bufferutil', 'utf-8-validate', 'conf', 'ora'],
  banner: {
    js: [
      "import { createRequire as __dstreamRequire } from 'node:module';",
      'const require = __dstreamRequire(import.meta.url);',
    ].join('\n'),
  },
  logLevel: 'warning',
});
