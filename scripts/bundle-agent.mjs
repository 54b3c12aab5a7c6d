// Bundle the device's program (src/agent-cli.ts: agent and connect) into one JavaScript file
// with no native modules: dist/device/dstream-agent.mjs and its SHA-256 beside it. Run by
// `npm run build`, after tsc. The hub serves both at /agent/ (docs/operations.md).
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const outfile = `${root}dist/device/dstream-agent.mjs`;
const { version } = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));

await build({
  entryPoints: [`${root}src/agent-entry.ts`],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  // The lowest Node.js the file runs on (docs/operations.md says which was tested).
  target: 'node20',
  minify: true,
  keepNames: true,
  legalComments: 'none',
  // ws loads these native helpers if they are there, and does without them otherwise.
  external: ['bufferutil', 'utf-8-validate'],
  banner: {
    js: [
      '#!/usr/bin/env node',
      `// dstream-agent ${version}: dstream's device side in one file (agent, connect).`,
      "import { createRequire as __dstreamRequire } from 'node:module';",
      'const require = __dstreamRequire(import.meta.url);',
    ].join('\n'),
  },
  logLevel: 'warning',
});
const sha256 = createHash('sha256').update(readFileSync(outfile)).digest('hex');
writeFileSync(`${outfile}.sha256`, `${sha256}  dstream-agent.mjs\n`);
