import { spawn as spawnChild, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConnectionString } from '../../src/auth/connection-string.js';
import { expiryIn, signSas } from '../../src/auth/sas.js';
import { runCli, runPrintedInit, spawnCli, type CliProcess } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/hub.js';
import { closed, dial } from '../helpers/net.js';
import { startEchoServer, type TestServer } from '../helpers/servers.js';

// Issue 27: the operator console, driven in Debian's Chromium (no browser download) against a
// real hub, agent and proxy started as a user starts them.

const chromiumPath = '/usr/bin/chromium';
const screenshots = fileURLToPath(new URL('../../docs/console/', import.meta.url));
const axeSource = readFileSync(
  fileURLToPath(new URL('../../node_modules/axe-core/axe.min.js', import.meta.url)),
  'utf8',
);

/** Strings that would run if the page put them in as markup. */
const hostile = {
  deviceIds: [
    "'onmouseover='alert(1)",
    'javascript:alert(1)',
    '%3Cimg%20src=x%20onerror=alert(1)%3E',
  ],
  markup: '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>',
};

let dir: string;
let echo: TestServer;
let hub: CliProcess;
let consoleUrl: URL;
let serviceString: string;
let browser: Browser;
const running: CliProcess[] = [];
const children: ChildProcess[] = [];

/** Every request each page made, and every console error or uncaught exception. */
interface Watched {
  readonly context: BrowserContext;
  readonly page: Page;
  readonly requests: string[];
  readonly errors: string[];
}

/** A shell line run in `cwd`, its stderr waited on as a CLI process's is. */
function startLine(
  line: string,
  cwd: string,
): { waitForLine(p: RegExp, ms: number): Promise<void> } {
  const child = spawnChild('bash', ['-c', `exec ${line}`], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: cwd },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let log = '';
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  return {
    waitForLine: async (pattern, ms) => {
      const deadline = Date.now() + ms;
      while (!pattern.test(log)) {
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`no line matching ${pattern}; stderr:\n${log}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

function spawn(args: readonly string[], env: Record<string, string> = {}): CliProcess {
  const p = spawnCli(args, env);
  running.push(p);
  return p;
}

async function openConsole(): Promise<Watched> {
  // The hub's certificate is self-signed; the test trusts it here as a user who pinned it.
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 900 },
  });
  const page = await context.newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  await page.goto(consoleUrl.href);
  return { context, page, requests, errors };
}

async function signIn(page: Page, connectionString: string): Promise<void> {
  await page.getByLabel('Service connection string').fill(connectionString);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function shoot(page: Page, name: string): Promise<void> {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}

/** Run axe-core in the page (through the debugging protocol: the page's CSP allows no inline script). */
async function seriousViolations(page: Page): Promise<string[]> {
  await page.evaluate(axeSource);
  // A string, run in the page: the test itself has no DOM types.
  const violations = await page.evaluate<{ id: string; impact: string; where: string[] }[]>(
    `axe.run(document).then((r) => r.violations.map((v) => ({
      id: v.id, impact: v.impact, where: v.nodes.map((n) => n.target.join(' ')),
    })))`,
  );
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}) at ${v.where.join(', ')}`);
}

/** A REST call to the console listener with a token signed here (a script's view of the API). */
function api(
  method: string,
  path: string,
  policy: { name: string; key: string },
): Promise<{ status: number; body: string }> {
  const token = signSas({
    resource: consoleUrl.host,
    key: policy.key,
    keyName: policy.name,
    expiry: expiryIn(600),
  });
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: consoleUrl.hostname,
        port: consoleUrl.port,
        path,
        method,
        headers: { authorization: token },
        rejectUnauthorized: false,
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Poll an asynchronous condition (a hub answer) until it holds. */
async function until(condition: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the hub');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function keyOf(connectionString: string): { name: string; key: string } {
  const cs = parseConnectionString(connectionString);
  if (cs.kind !== 'service') throw new Error('not a service string');
  return { name: cs.sharedAccessKeyName, key: cs.sharedAccessKey };
}

beforeAll(async () => {
  if (!existsSync(chromiumPath))
    throw new Error(
      `${chromiumPath} is missing: install Debian's chromium (apt-get install chromium)`,
    );
  dir = makeTempDir('dstream-console-');
  echo = await startEchoServer();
  // Hostile strings in the audit file the hub reads back at start: the console shows them as text.
  const dataDir = join(dir, 'hub');
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(
    join(dataDir, 'audit.log'),
    JSON.stringify({
      time: '2026-12-01T00:00:00.000Z',
      policy: hostile.markup,
      device: hostile.markup,
      stream: hostile.markup,
      outcome: 'rejected',
      reason: hostile.markup,
      bytesToDevice: 0,
      bytesFromDevice: 0,
      durationMs: 0,
      remote: hostile.markup,
    }) + '\n',
    { mode: 0o600 },
  );
  hub = spawnCli([
    'hub',
    '--data-dir',
    dataDir,
    '--listen',
    '127.0.0.1:0',
    '--console-listen',
    '127.0.0.1:0',
  ]);
  const m = await hub.waitForLine(/console at (https:\/\/\S+)/);
  consoleUrl = new URL(m[1] ?? '');
  const init = await runPrintedInit(hub);
  expect(init.code).toBe(0);
  serviceString = init.stdout.trim();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all(running.splice(0).map((p) => p.stop('SIGKILL')));
  for (const child of children) child.kill('SIGKILL');
  await hub?.stop();
  await echo?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the operator console in Chromium', () => {
  it('serves its page with a strict CSP, no framing, and cache headers', async () => {
    const headers = await new Promise<Record<string, string | string[] | undefined>>(
      (resolve, reject) => {
        httpsRequest(
          {
            host: consoleUrl.hostname,
            port: consoleUrl.port,
            path: '/console/',
            rejectUnauthorized: false,
          },
          (r) => {
            r.resume();
            resolve(r.headers);
          },
        )
          .on('error', reject)
          .end();
      },
    );
    expect(headers['content-security-policy']).toContain("script-src 'self'");
    expect(headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(headers['content-security-policy']).not.toContain('unsafe-eval');
    expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(headers['x-frame-options']).toBe('DENY');
    expect(headers['cache-control']).toBe('no-cache');
    expect(headers.etag).toMatch(/^"/);
  });

  it('a wrong key gets one clear message and nothing else loads', async () => {
    const w = await openConsole();
    const wrong = serviceString.replace(
      /SharedAccessKey=[^;]+/,
      `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`,
    );
    await signIn(w.page, wrong);
    const alert = w.page.locator('#sign-in-error');
    await expect
      .poll(() => alert.textContent(), { timeout: 15_000 })
      .toMatch(/^The hub refused this key/);
    expect(await w.page.locator('nav a').count()).toBe(0);
    expect(await w.page.locator('table').count()).toBe(0);
    // The only API request was the one that failed; the key itself never left the page.
    const apiRequests = w.requests.filter((u) => !new URL(u).pathname.startsWith('/console/'));
    expect(apiRequests.map((u) => new URL(u).pathname)).toEqual(['/hub']);
    expect(w.requests.every((u) => new URL(u).origin === consoleUrl.origin)).toBe(true);
    expect(w.errors.filter((e) => !/status of 401/.test(e))).toEqual([]);
    await shoot(w.page, 'sign-in-refused');
    await w.context.close();
  }, 60_000);

  it('add a device, run its agent, stream through a proxy, end the stream, disable the device', async () => {
    const w = await openConsole();
    const { page } = w;
    await signIn(page, serviceString);
    await page.getByRole('heading', { name: 'Devices' }).waitFor({ timeout: 15_000 });
    expect(await seriousViolations(page)).toEqual([]);

    // Add a device in the page; its connection string is shown once, with the agent command.
    await page.getByLabel('New device ID').fill('pi-01');
    await page.getByRole('button', { name: 'Add device' }).click();
    const shown =
      (await page.locator('#device-connection-string').textContent({ timeout: 15_000 })) ?? '';
    expect(shown).toMatch(/^HostName=.*;DeviceId=pi-01;SharedAccessKey=/);
    expect(await page.locator('#agent-command').textContent()).toBe(
      `dstream agent --connection-string '${shown}' --port 22`,
    );
    // And the two lines for a device with only Node.js: fetch the single-file agent, run it.
    const fetchBlock = page.locator('#agent-fetch');
    await expect
      .poll(() => fetchBlock.textContent(), { timeout: 15_000 })
      .toContain('sha256sum -c -');
    const [fetchLine = '', runLine = ''] = ((await fetchBlock.textContent()) ?? '').split('\n');
    await shoot(page, 'device-added');
    await page.getByRole('button', { name: 'Done' }).click();
    const row = page.locator('#device-list tr', { hasText: 'pi-01' });
    await expect.poll(() => row.textContent(), { timeout: 15_000 }).toContain('offline');

    // The real agent, fetched and started with the lines the page showed (its targets instead
    // of port 22) in a directory of its own: the row turns online without a reload.
    const deviceDir = join(dir, 'device');
    mkdirSync(deviceDir);
    const fetched = spawnSync('bash', ['-c', fetchLine], { cwd: deviceDir, encoding: 'utf8' });
    expect(fetched.stdout).toBe('dstream-agent.mjs: OK\n');
    expect(runLine).toBe(`node dstream-agent.mjs agent --connection-string '${shown}' --port 22`);
    const agent = startLine(
      runLine
        .replace(/^node /, `${process.execPath} `)
        .replace('--port 22', `--target echo=127.0.0.1:${echo.port}`),
      deviceDir,
    );
    await agent.waitForLine(/connected to the hub/, 30_000);
    await expect
      .poll(() => row.textContent(), { timeout: 15_000 })
      .toContain('online (control WebSocket)');
    await shoot(page, 'devices');

    // A real proxy; a client that keeps sending: the stream shows, and its counts grow.
    const proxy = spawn(['proxy', '--device', 'pi-01', '--stream', 'echo', '--local-port', '0'], {
      DSTREAM_SERVICE_CONNECTION_STRING: serviceString,
    });
    const pm = await proxy.waitForLine(/proxy listening on 127\.0\.0\.1:(\d+)/);
    const client: Socket = await dial(Number(pm[1]));
    let echoed = 0;
    client.on('data', (d: Buffer) => (echoed += d.length));
    const chunk = Buffer.alloc(1024, 'x');
    const pump = setInterval(() => client.write(chunk), 50);
    try {
      await page.getByRole('link', { name: 'Streams' }).click();
      const streamRow = page.locator('#stream-list tr', { hasText: 'pi-01' });
      await streamRow.waitFor({ timeout: 15_000 });
      const toDevice = streamRow.locator('[data-direction="to-device"]');
      const first = await toDevice.textContent();
      await expect.poll(() => toDevice.textContent(), { timeout: 20_000 }).not.toBe(first);
      expect(await streamRow.textContent()).toContain('echo');
      await shoot(page, 'streams');

      // End it from the page: the client's connection closes.
      const gone = closed(client, 30_000);
      await streamRow.getByRole('button', { name: /End stream echo to pi-01/ }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'End stream' }).click();
      await gone;
    } finally {
      clearInterval(pump);
    }
    expect(echoed).toBeGreaterThan(0);

    // The audit page names who ended it.
    await page.getByRole('link', { name: 'Audit' }).click();
    const ended = page.locator('#audit-list tr', { hasText: 'stream-ended' });
    await ended.waitFor({ timeout: 15_000 });
    expect(await ended.textContent()).toContain("ended by policy 'service'");
    expect(await seriousViolations(page)).toEqual([]);
    await shoot(page, 'audit');

    // Disable the device from its page: its agent is cut off and a stream open to it ends.
    const client2 = await dial(Number(pm[1]));
    client2.write('ping');
    await until(async () =>
      (await api('GET', '/streams', keyOf(serviceString))).body.includes('pi-01'),
    );
    await page.goto(`${consoleUrl.href}#/device/pi-01`);
    await page.getByRole('heading', { name: 'Device pi-01' }).waitFor({ timeout: 15_000 });
    await page.locator('#device-streams tr', { hasText: 'echo' }).waitFor({ timeout: 15_000 });
    expect(await seriousViolations(page)).toEqual([]);
    await shoot(page, 'device');
    const cut = closed(client2, 30_000);
    await page.getByRole('button', { name: 'Disable' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Disable' }).click();
    await cut;
    await agent.waitForLine(/disconnected|disabled/i, 30_000);
    await expect
      .poll(() => page.locator('#device-connection').textContent(), { timeout: 15_000 })
      .toBe('disabled');
    // The stream ended (not suspended: it cannot be resumed to a disabled device).
    await until(async () => {
      const r = await api('GET', '/audit?deviceId=pi-01&outcome=completed', keyOf(serviceString));
      return (JSON.parse(r.body) as { records: { reason: string }[] }).records.some(
        (x) => x.reason === 'device disabled or removed',
      );
    });
    const audit = await api(
      'GET',
      '/audit?deviceId=pi-01&outcome=device-disabled',
      keyOf(serviceString),
    );
    expect((JSON.parse(audit.body) as { records: unknown[] }).records[0]).toMatchObject({
      policy: 'service',
      outcome: 'device-disabled',
    });

    // The hub page and its charts.
    await page.getByRole('link', { name: 'Hub' }).click();
    await page.locator('#chart-0 canvas').waitFor({ timeout: 20_000 });
    expect(await page.locator('#hub-facts').textContent()).toContain('Signed in as');
    expect(await seriousViolations(page)).toEqual([]);
    await shoot(page, 'hub');

    expect(w.requests.every((u) => new URL(u).origin === consoleUrl.origin)).toBe(true);
    expect(w.errors).toEqual([]);
    await w.context.close();
  }, 240_000);

  it('a read-only policy sees no write actions, and the API refuses a forged write (403)', async () => {
    const added = await runCli(['policy', 'add', 'viewer', '--rights', 'RegistryRead'], {
      DSTREAM_SERVICE_CONNECTION_STRING: serviceString,
    });
    expect(added.code).toBe(0);
    const viewer = added.stdout.trim();
    const w = await openConsole();
    await signIn(w.page, viewer);
    await w.page.getByRole('heading', { name: 'Devices' }).waitFor({ timeout: 15_000 });
    await w.page.locator('#device-list tr', { hasText: 'pi-01' }).waitFor({ timeout: 15_000 });
    expect(await w.page.getByText('(read only)').count()).toBe(1);
    expect(await w.page.getByRole('button', { name: 'Add device' }).count()).toBe(0);
    await w.page.goto(`${consoleUrl.href}#/device/pi-01`);
    await w.page.getByRole('heading', { name: 'Device pi-01' }).waitFor({ timeout: 15_000 });
    await w.page.locator('#device-facts dl').waitFor({ timeout: 15_000 });
    expect(await w.page.locator('#device-actions button').count()).toBe(0);
    const forged = await api('DELETE', '/devices/pi-01', keyOf(viewer));
    expect(forged.status).toBe(403);
    const end = await api('DELETE', '/streams/any', keyOf(viewer));
    expect(end.status).toBe(403);
    expect(w.errors).toEqual([]);
    await w.context.close();
  }, 60_000);

  it('hostile strings in device IDs and audit fields are shown as text; no script runs', async () => {
    for (const id of hostile.deviceIds) {
      const r = await runCli(['device', 'add', id], {
        DSTREAM_SERVICE_CONNECTION_STRING: serviceString,
      });
      expect(r.code, r.stderr).toBe(0);
    }
    const w = await openConsole();
    await signIn(w.page, serviceString);
    for (const id of hostile.deviceIds)
      await w.page.locator('#device-list a', { hasText: id }).waitFor({ timeout: 15_000 });
    expect(await w.page.locator('#device-list a').allTextContents()).toEqual(
      expect.arrayContaining(hostile.deviceIds),
    );
    await w.page.getByRole('link', { name: 'Audit' }).click();
    const row = w.page.locator('#audit-list tr', { hasText: 'rejected' });
    await row.waitFor({ timeout: 15_000 });
    const cells = await row.locator('td').allTextContents();
    // Device, stream, policy, client and reason.
    expect(cells.filter((c) => c === hostile.markup).length).toBe(5);
    expect(await w.page.locator('main img, main script').count()).toBe(0);
    await w.page.goto(
      `${consoleUrl.href}#/device/${encodeURIComponent(hostile.deviceIds[2] ?? '')}`,
    );
    await w.page
      .getByRole('heading', { name: `Device ${hostile.deviceIds[2]}` })
      .waitFor({ timeout: 15_000 });
    expect(
      await w.page.evaluate(() => (globalThis as { __pwned?: number }).__pwned),
    ).toBeUndefined();
    expect(w.errors).toEqual([]);
    await w.context.close();
  }, 60_000);

  it('a page opened while the one before it is still loading loads too', async () => {
    const w = await openConsole();
    await signIn(w.page, serviceString);
    await w.page.getByRole('heading', { name: 'Devices' }).waitFor({ timeout: 15_000 });
    // Two pages in a row, the second before the first has its answer: the first's load is
    // still under way when the second asks for its own. The Audit page refreshes on audit
    // records only (not on the hub's ticks): one whose first load was put off and then dropped
    // stayed empty (what a loaded CI run met in the keyboard test below).
    await w.page.evaluate(
      "location.hash = '#/hub'; setTimeout(() => (location.hash = '#/audit'), 0)",
    );
    await w.page.getByRole('heading', { name: 'Audit' }).waitFor({ timeout: 15_000 });
    await w.page.locator('main table, main p.empty').first().waitFor({ timeout: 15_000 });
    expect(w.errors).toEqual([]);
    await w.context.close();
  }, 60_000);

  it('works from the keyboard and at 200% zoom (a 640-pixel-wide window) without sideways scrolling', async () => {
    const w = await openConsole();
    await w.page.setViewportSize({ width: 640, height: 900 });
    await w.page.getByLabel('Service connection string').focus();
    await w.page.keyboard.insertText(serviceString);
    await w.page.keyboard.press('Tab'); // the details summary
    await w.page.keyboard.press('Tab'); // Sign in
    await w.page.keyboard.press('Enter');
    await w.page.getByRole('heading', { name: 'Devices' }).waitFor({ timeout: 15_000 });
    for (let i = 0; i < 30; i++) {
      const text = await w.page.evaluate<string>("document.activeElement?.textContent ?? ''");
      if (text === 'Streams') break;
      await w.page.keyboard.press('Tab');
    }
    await w.page.keyboard.press('Enter');
    await w.page.getByRole('heading', { name: 'Streams' }).waitFor({ timeout: 15_000 });
    for (const hash of ['#/devices', '#/streams', '#/audit', '#/hub', '#/device/pi-01']) {
      await w.page.goto(`${consoleUrl.href}${hash}`);
      await w.page.locator('main h1').waitFor({ timeout: 15_000 });
      await w.page
        .locator('main table, main dl, main p.empty')
        .first()
        .waitFor({ timeout: 15_000 });
      const sideways = await w.page.evaluate<number>(
        'document.documentElement.scrollWidth - document.documentElement.clientWidth',
      );
      expect(sideways, hash).toBeLessThanOrEqual(0);
    }
    await shoot(w.page, 'narrow');
    expect(w.errors).toEqual([]);
    await w.context.close();
  }, 90_000);
});
