#!/usr/bin/env node
// Thin shim: the compiled CLI lives in dist/ (npm run build).
import { main } from '../dist/cli.js';

process.exitCode = await main(process.argv);
