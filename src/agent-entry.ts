// The single-file agent's entry point (scripts/bundle-agent.mjs bundles from here).
import { agentMain } from './agent-cli.js';

process.exitCode = await agentMain(process.argv);
