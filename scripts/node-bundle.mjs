// One program and its dependencies bundled into one ES module file for Node (esbuild): what the
// single-file agent (bundle-agent.mjs) and `dstream connect` (bundle-connect.mjs) share.
import { build } from 'esbuild';

/**
 * Bundle `entry` into `outfile`. `external`: packages left to load from node_modules (ws's
 * native helpers always: ws does without them when they are not there). `header`: lines put
 * first in the file, before the `require` that bundled CommonJS packages call.
 */
export function nodeBundle({ entry, outfile, external = [], header = [], sourcemap = false }) {
  return build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    // The lowest Node.js the file runs on (docs/operations.md says which was tested).
    target: 'node20',
    minify: true,
    keepNames: true,
    legalComments: 'none',
    sourcemap: sourcemap ? 'linked' : false,
    external: ['bufferutil', 'utf-8-validate', ...external],
    banner: {
      js: [
        ...header,
        "import { createRequire as __dstreamRequire } from 'node:module';",
        'const require = __dstreamRequire(import.meta.url);',
      ].join('\n'),
    },
    logLevel: 'warning',
  });
}
