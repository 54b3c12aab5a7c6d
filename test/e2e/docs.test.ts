import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cliPath } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';
import { hasCommand, systemToolsRequired } from '../helpers/system.js';

const operations = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
const units = [
  ...operations.matchAll(/`\/etc\/systemd\/system\/([\w-]+\.service)`:\s*```ini\n([\s\S]*?)```/g),
].map((m) => ({ name: m[1] ?? '', text: m[2] ?? '' }));
const systemdAnalyze = hasCommand('systemd-analyze');
/** The single-file agent as `npm run build` bundles it. */
const agentFile = fileURLToPath(new URL('../../dist/device/dstream-agent.mjs', import.meta.url));

describe('docs/operations.md: the systemd units', () => {
  it('has a unit for the hub and one for the agent', () => {
    expect(units.map((u) => u.name)).toEqual(['dstream-hub.service', 'dstream-agent.service']);
    for (const u of units) {
      expect(u.text).toMatch(/^Restart=always$/m);
      // Never root: a system user for the hub, a dynamic one for the agent.
      expect(u.text).toMatch(/^(User=dstream|DynamicUser=yes)$/m);
      expect(u.text).toMatch(/^NoNewPrivileges=yes$/m);
    }
  });

  it('systemd-analyze is installed where it is required', () => {
    if (systemToolsRequired)
      expect(systemdAnalyze, 'DSTREAM_REQUIRE_SYSTEM_TOOLS=1 but systemd-analyze is missing').toBe(
        true,
      );
  });

  it.skipIf(!systemdAnalyze).each(units.map((u) => [u.name, u.text]))(
    '%s passes systemd-analyze verify without a warning',
    (name, text) => {
      const dir = makeTempDir('dstream-units-');
      try {
        // The documented path is where `npm install -g .` puts the CLI; here it is the checkout's.
        const file = join(dir, name);
        writeFileSync(
          file,
          text
            .replaceAll('/usr/local/bin/dstream', cliPath)
            .replaceAll(
              '/usr/bin/node /opt/dstream/dstream-agent.mjs',
              `${process.execPath} ${agentFile}`,
            ),
        );
        const r = spawnSync('systemd-analyze', ['verify', file], {
          encoding: 'utf8',
          timeout: 30_000,
        });
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it('the ExecStart command lines use real subcommands and options', () => {
    for (const u of units) {
      // The hub runs the installed CLI; the agent, the single file the hub serves.
      const exec =
        /^ExecStart=(\/usr\/local\/bin\/dstream|\/usr\/bin\/node \/opt\/dstream\/dstream-agent\.mjs) (\w+) (.+)$/m.exec(
          u.text,
        );
      expect(exec, u.name).not.toBeNull();
      const [, program = '', command = '', args = ''] = exec ?? [];
      const file = program.endsWith('.mjs') ? agentFile : cliPath;
      const help = spawnSync(process.execPath, [file, command, '--help'], { encoding: 'utf8' });
      expect(help.status).toBe(0);
      const options = args.split(' ').filter((a) => a.startsWith('--'));
      expect(options.length).toBeGreaterThan(0);
      for (const option of options)
        expect(help.stdout, `${u.name}: ${option}`).toContain(`${option} `);
    }
  });
});

const cluster = readFileSync(new URL('../../docs/cluster.md', import.meta.url), 'utf8');

describe('docs/cluster.md: the local 3-node recipe', () => {
  it('its haproxy configuration passes haproxy -c', () => {
    const config = /```haproxy\n([\s\S]*?)```/.exec(cluster)?.[1];
    expect(config).toBeDefined();
    // Its backends are the ports the recipe's nodes listen on.
    expect(
      [...(config ?? '').matchAll(/server node\d 127\.0\.0\.1:(\d+)/g)].map((m) => m[1]),
    ).toEqual(['8451', '8452', '8453']);
    expect(cluster).toContain('--listen 127.0.0.1:845$i');
    if (!hasCommand('haproxy'))
      throw new Error('haproxy is not installed (apt-get install haproxy)');
    const dir = makeTempDir('dstream-haproxy-');
    try {
      const file = join(dir, 'haproxy.cfg');
      writeFileSync(file, config ?? '');
      const r = spawnSync('haproxy', ['-c', '-f', file], { encoding: 'utf8', timeout: 10_000 });
      expect(r.status, r.stdout + r.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('its dstream command lines use real subcommands and options', () => {
    const script = /```sh\n([\s\S]*?)```/.exec(
      cluster.slice(cluster.indexOf('## Run a 3-node')),
    )?.[1];
    const lines = (script ?? '').replace(/\\\n\s*/g, ' ').split('\n');
    const calls = lines.flatMap((line) => [
      ...line.matchAll(/dstream ((?:hub init|\w+(?: \w+)?)) ([^)&|>]*)/g),
    ]);
    expect(calls.length).toBeGreaterThanOrEqual(5);
    for (const [, command = '', args = ''] of calls) {
      const words = command.split(' ');
      const help = spawnSync(process.execPath, [cliPath, ...words, '--help'], { encoding: 'utf8' });
      expect(help.status, command).toBe(0);
      for (const option of args.split(/\s+/).filter((a) => a.startsWith('--')))
        expect(help.stdout, `${command}: ${option}`).toContain(`${option} `);
    }
  });
});
