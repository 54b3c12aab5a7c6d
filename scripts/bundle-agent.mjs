// Bundle the device's program (src/agent-cli.ts: agent and connect) into one JavaScript file
// with no native modules: dist/device/dstream-agent.mjs and its SHA-256 beside it. Run by
// `npm run build`, after tsc. The hub serves both at /agent/ (docs/operations.md).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { nodeBundle } from './node-bundle.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const outfile = `${root}dist/device/dstream-agent.mjs`;
const { version } = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));

await nodeBundle({
  entry: `${root}src/agent-entry.ts`,
  outfile,
  header: [
    '#!/usr/bin/env node',
    `// dstream-agent ${version}: dstream's device side in one file (agent, connect).`,
  ],
});
const sha256 = createHash('sha256').update(readFileSync(outfile)).digest('hex');
writeFileSync(`${outfile}.sha256`, `${sha256}  dstream-agent.mjs\n`);
