#!/usr/bin/env node
// Thin shim: the compiled CLI lives in dist/ (npm run build). `dstream connect`, which ssh starts
// once per connection as its ProxyCommand, runs from the one file the build bundles it into
// (scripts/bundle-connect.mjs): the same command, started in about two thirds of the time.
import { existsSync } from 'node:fs';

const connect = new URL('../dist/connect.mjs', import.meta.url);
const entry =
  process.argv[2] === 'connect' && existsSync(connect)
    ? connect
    : new URL('../dist/cli.js', import.meta.url);
const { main } = await import(entry.href);

process.exitCode = await main(process.argv);
