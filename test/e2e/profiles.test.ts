import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, runCliWithInput, spawnCli, startCliHub, type CliTunnel } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';

/** The same credential with another (valid-looking, wrong) key. */
function withWrongKey(cs: string): string {
  return cs.replace(
    /SharedAccessKey=[^;]+/,
    `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`,
  );
}

describe('saved profiles: dstream login, profiles, logout, --profile', () => {
  let dir: string;
  let hub: CliTunnel;
  let deviceString: string;
  let good: string;
  let bad: string;

  beforeAll(async () => {
    dir = makeTempDir('dstream-profiles-');
    hub = await startCliHub(join(dir, 'hub'));
    good = hub.serviceString;
    bad = withWrongKey(good);
    const added = await runCli(['device', 'add', 'pi-01'], {
      DSTREAM_SERVICE_CONNECTION_STRING: good,
    });
    expect(added.code).toBe(0);
    deviceString = added.stdout.trim();
  }, 60_000);

  afterAll(async () => {
    await hub.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh config home per test, so tests do not see each other's profiles. */
  const freshHome = (name: string): Record<string, string> => {
    const home = join(dir, 'xdg', name);
    mkdirSync(home, { recursive: true });
    return { XDG_CONFIG_HOME: home };
  };

  it('login checks the hub, saves the string 0600 in a 0700 dir, and profiles lists it without the key', async () => {
    const env = freshHome('save');
    const login = await runCli(['login', good], env);
    expect(login.code, login.stderr).toBe(0);
    const file = join(env.XDG_CONFIG_HOME ?? '', 'dstream', 'profiles.json');
    expect(login.stderr).toBe(
      `saved profile 'default': service 'service' at 127.0.0.1:${hub.hubPort} (in ${file})\n`,
    );
    expect(login.stdout).toBe('');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(env.XDG_CONFIG_HOME ?? '', 'dstream')).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
      profiles: { default: { connectionString: good } },
    });

    // From stdin, under another name: the key never appears on a command line.
    const piped = await runCliWithInput(
      ['login', '--profile', 'pi-01', '-'],
      deviceString + '\n',
      env,
    );
    expect(piped.code, piped.stderr).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const list = await runCli(['profiles'], env);
    expect(list.code).toBe(0);
    const where = `127.0.0.1:${hub.hubPort}`;
    expect(list.stdout).toBe(
      [
        'PROFILE  KIND     HUB' + ' '.repeat(where.length - 3) + '  IDENTITY  CA',
        `default  service  ${where}  service   -`,
        `pi-01    device   ${where}  pi-01     -`,
        '',
      ].join('\n'),
    );
    const key = /SharedAccessKey=([^;]+)/.exec(good)?.[1] ?? 'missing';
    expect(list.stdout).not.toContain(key);
    const json = await runCli(['profiles', '--json'], env);
    expect(JSON.parse(json.stdout)).toEqual([
      { name: 'default', kind: 'service', hub: where, identity: 'service', ca: null },
      { name: 'pi-01', kind: 'device', hub: where, identity: 'pi-01', ca: null },
    ]);
    expect(json.stdout).not.toContain(key);
  });

  it('precedence: --connection-string > --profile > environment > $DSTREAM_PROFILE > default', async () => {
    const env = freshHome('precedence');
    expect((await runCli(['login', good], env)).code).toBe(0);
    expect((await runCli(['login', '--profile', 'stale', bad], env)).code).toBe(0);
    expect((await runCli(['login', '--profile', 'ok', good], env)).code).toBe(0);
    const list = (extra: Record<string, string>, ...args: string[]) =>
      runCli(['device', 'list', '-q', ...args], { ...env, ...extra });
    const unauthorized = /^error: .*(unauthori[sz]ed|401|signature|key)/im;

    // Nothing else given: the saved default profile.
    const byDefault = await list({});
    expect(byDefault.code, byDefault.stderr).toBe(0);
    expect(byDefault.stdout).toContain('pi-01');
    // The environment beats the saved default...
    const envWins = await list({ DSTREAM_SERVICE_CONNECTION_STRING: bad });
    expect(envWins.code).toBe(1);
    expect(envWins.stderr).toMatch(unauthorized);
    // ...and $DSTREAM_PROFILE names another saved profile.
    const named = await list({ DSTREAM_PROFILE: 'stale' });
    expect(named.code).toBe(1);
    expect(named.stderr).toMatch(unauthorized);
    // Flags beat the environment.
    const flagWins = await list(
      { DSTREAM_SERVICE_CONNECTION_STRING: bad },
      '--connection-string',
      good,
    );
    expect(flagWins.code, flagWins.stderr).toBe(0);
    const profileFlagWins = await list(
      { DSTREAM_SERVICE_CONNECTION_STRING: bad, DSTREAM_PROFILE: 'stale' },
      '--profile',
      'ok',
    );
    expect(profileFlagWins.code, profileFlagWins.stderr).toBe(0);
    // Both flags at once is ambiguous.
    const both = await list({}, '--profile', 'ok', '--connection-string', good);
    expect(both.code).toBe(2);
    expect(both.stderr).toBe(
      'error: --connection-string and --profile are alternatives; give one\n',
    );
  });

  it('an agent runs from a saved device profile', async () => {
    const env = freshHome('agent');
    expect((await runCliWithInput(['login', '--profile', 'pi', '-'], deviceString, env)).code).toBe(
      0,
    );
    const agent = spawnCli(['agent', '--profile', 'pi', '--port', '22'], env);
    try {
      await agent.waitForLine(/connected to the hub/);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
    // The wrong kind of profile is named in the error.
    const wrongKind = await runCli(['device', 'list', '--profile', 'pi'], env);
    expect(wrongKind.code).toBe(2);
    expect(wrongKind.stderr).toBe(
      "error: profile 'pi' holds a device connection string; this command needs a service one\n" +
        'hint: Print the service connection string with `dstream hub init` on the hub.\n',
    );
  });

  it('login refuses what it cannot use and saves nothing', async () => {
    const env = freshHome('refuse');
    const file = join(env.XDG_CONFIG_HOME ?? '', 'dstream', 'profiles.json');
    const invalid = await runCli(['login', 'HostName=h;Nope=1'], env);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toMatch(/^error: invalid connection string: unknown field 'Nope'\n/);
    const pinned = good.replace(
      /CertificateFingerprint=[0-9A-F:]+/i,
      `CertificateFingerprint=${'AB'.repeat(32)}`,
    );
    expect(pinned).not.toBe(good);
    const mismatch = await runCli(['login', pinned], env);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toMatch(/^error: .*fingerprint/im);
    const badName = await runCli(['login', '--profile', '../x', good], env);
    expect(badName.code).toBe(2);
    expect(badName.stderr).toMatch(/^error: --profile: profile name '\.\.\/x' is invalid/);
    const empty = await runCliWithInput(['login'], '', env);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/^error: no connection string given\n/);
    expect(() => statSync(file)).toThrow();
    // Saved anyway when asked, for a hub that is not up yet.
    const offline = await runCli(['login', '--no-verify', pinned], env);
    expect(offline.code, offline.stderr).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('logout forgets a profile; unknown and broken profiles are one clear line', async () => {
    const env = freshHome('logout');
    expect((await runCli(['login', '--profile', 'gone', good], env)).code).toBe(0);
    const out = await runCli(['logout', '--profile', 'gone'], env);
    expect(out.code).toBe(0);
    expect(out.stderr).toBe("removed profile 'gone'\n");
    const again = await runCli(['logout', '--profile', 'gone'], env);
    expect(again.code).toBe(2);
    expect(again.stderr).toBe(
      "error: no saved profile 'gone'\nhint: List them with `dstream profiles`.\n",
    );
    const missing = await runCli(['device', 'list', '--profile', 'gone'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(
      "error: no saved profile 'gone' (--profile)\n" +
        'hint: List them with `dstream profiles`; save one with `dstream login <connection-string>`.\n',
    );
    writeFileSync(join(env.XDG_CONFIG_HOME ?? '', 'dstream', 'profiles.json'), '{ not json');
    const broken = await runCli(['device', 'list'], env);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(
      /^error: cannot read the profiles in .*\nhint: Fix or remove the file/,
    );
    expect(broken.stderr).not.toMatch(/^\s+at /m);
  });
});
