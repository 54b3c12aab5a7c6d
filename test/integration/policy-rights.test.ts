import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseConnectionString,
  type ServiceConnectionString,
} from '../../src/auth/connection-string.js';
import type { DstreamError } from '../../src/errors.js';
import { allRights, type Right } from '../../src/hub/store/registry.js';
import { hubTarget } from '../../src/service/credentials.js';
import { PolicyClient } from '../../src/service/policy-client.js';
import { runCli } from '../helpers/cli.js';
import { startTestHub, type TestHub } from '../helpers/hub.js';

// Issue 16, finding 3: a policy holding registry rights could delete the all-rights policy and
// mint a copy of itself. Now: managing policies is PolicyWrite, and a manager acts only on
// policies whose rights it holds itself.

let t: TestHub;
let service: PolicyClient;

beforeAll(async () => {
  t = await startTestHub();
  service = new PolicyClient(t.service, hubTarget(t.service));
});
afterAll(async () => {
  await t.cleanup();
});

function clientOf(connectionString: string | undefined): PolicyClient {
  const cs = parseConnectionString(connectionString ?? '') as ServiceConnectionString;
  return new PolicyClient(cs, hubTarget(cs));
}

const failure = (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => (e as DstreamError).message,
  );

describe('policy rights table', () => {
  // Every pair: a caller holding one right (with or without PolicyWrite) acting on a policy
  // that holds one right.
  const pairs = allRights.flatMap((callerRight) =>
    allRights.map((targetRight) => [callerRight, targetRight] as const),
  );

  it.each(pairs)(
    'REST: a caller with PolicyWrite and %s creates, changes and removes a %s policy only if it holds that right',
    async (callerRight, targetRight) => {
      const tag = `${callerRight}-${targetRight}`.toLowerCase();
      const callerRights: Right[] = [...new Set<Right>(['PolicyWrite', callerRight])];
      const caller = clientOf((await service.add(`c-${tag}`, callerRights)).connectionString);
      const name = `c-${tag}`;
      await service.add(`t-${tag}`, [targetRight]);
      const allowed = callerRights.includes(targetRight);

      const created = await failure(caller.add(`n-${tag}`, [targetRight]));
      const changed = await failure(
        caller.update(`t-${tag}`, { rights: [targetRight], regenerateKey: true }),
      );
      const removed = await failure(caller.remove(`t-${tag}`));
      if (allowed) {
        expect([created, changed, removed]).toEqual([undefined, undefined, undefined]);
      } else {
        expect(created).toBe(`policy '${name}' cannot grant ${targetRight}, which it lacks`);
        expect(changed).toBe(
          `policy '${name}' cannot change policy 't-${tag}': it lacks ${targetRight}`,
        );
        expect(removed).toBe(
          `policy '${name}' cannot remove policy 't-${tag}': it lacks ${targetRight}`,
        );
      }
      // Without PolicyWrite nothing about policies is possible, whatever else it holds.
      if (callerRight !== 'PolicyWrite') {
        const plain = clientOf((await service.add(`p-${tag}`, [callerRight])).connectionString);
        const lacks = `policy 'p-${tag}' lacks the PolicyWrite right`;
        expect(await failure(plain.add(`x-${tag}`, [callerRight]))).toBe(lacks);
        expect(await failure(plain.update('service', { regenerateKey: true }))).toBe(lacks);
        expect(await failure(plain.remove('service'))).toBe(lacks);
        expect(await failure(plain.list())).toBe(lacks);
      }
    },
  );

  it('a policy cannot be widened beyond, or stripped by, a manager lacking its rights', async () => {
    const manager = clientOf(
      (await service.add('manager', ['PolicyWrite', 'RegistryRead'])).connectionString,
    );
    await service.add('reader', ['RegistryRead']);
    expect(
      await failure(manager.update('reader', { rights: ['RegistryRead', 'RegistryWrite'] })),
    ).toBe("policy 'manager' cannot change policy 'reader': it lacks RegistryWrite");
    expect(await failure(manager.update('service', { rights: ['RegistryRead'] }))).toBe(
      "policy 'manager' cannot change policy 'service': it lacks ServiceConnect, RegistryWrite",
    );
    expect(await failure(manager.remove('service'))).toBe(
      "policy 'manager' cannot remove policy 'service': it lacks ServiceConnect, RegistryWrite",
    );
  });

  it('the last policy holding PolicyWrite keeps it, and cannot be removed', async () => {
    const hub = await startTestHub();
    try {
      const root = new PolicyClient(hub.service, hubTarget(hub.service));
      expect(await failure(root.update('service', { rights: ['ServiceConnect'] }))).toBe(
        "policy 'service' is the last one holding PolicyWrite; grant it to another policy first",
      );
      const second = clientOf((await root.add('second', [...allRights])).connectionString);
      // With another manager, the service policy may give it up; then the other is the last.
      await root.update('service', { rights: ['ServiceConnect', 'RegistryRead', 'RegistryWrite'] });
      expect(await failure(second.update('second', { rights: ['RegistryRead'] }))).toBe(
        "policy 'second' is the last one holding PolicyWrite; grant it to another policy first",
      );
      expect(await failure(second.remove('second'))).toBe(
        "policy 'second' cannot remove itself; use another policy",
      );
      expect((await second.list()).map((p) => [p.name, p.rights.join(',')])).toEqual([
        ['second', 'ServiceConnect,RegistryRead,RegistryWrite,PolicyWrite'],
        ['service', 'ServiceConnect,RegistryRead,RegistryWrite'],
      ]);
    } finally {
      await hub.cleanup();
    }
  });
});

describe('policy rights through the CLI', () => {
  it.each(allRights)(
    'a manager holding PolicyWrite,RegistryRead and a %s policy: add, update, remove',
    async (targetRight) => {
      const tag = targetRight.toLowerCase();
      const mk = await runCli(
        ['policy', 'add', `cli-m-${tag}`, '--rights', 'PolicyWrite,RegistryRead'],
        { DSTREAM_SERVICE_CONNECTION_STRING: t.serviceString },
      );
      expect(mk.code).toBe(0);
      const asManager = { DSTREAM_SERVICE_CONNECTION_STRING: mk.stdout.trim() };
      const asService = { DSTREAM_SERVICE_CONNECTION_STRING: t.serviceString };
      expect(
        (await runCli(['policy', 'add', `cli-t-${tag}`, '--rights', targetRight], asService)).code,
      ).toBe(0);
      const allowed = targetRight === 'PolicyWrite' || targetRight === 'RegistryRead';
      const add = await runCli(
        ['policy', 'add', `cli-n-${tag}`, '--rights', targetRight],
        asManager,
      );
      const update = await runCli(['policy', 'update', `cli-t-${tag}`, '--rotate-key'], asManager);
      const remove = await runCli(['policy', 'remove', `cli-t-${tag}`], asManager);
      if (allowed) {
        expect(add.stdout).toMatch(new RegExp(`^HostName=[^;]+;SharedAccessKeyName=cli-n-${tag};`));
        expect(update.stdout).toMatch(
          new RegExp(`^HostName=[^;]+;SharedAccessKeyName=cli-t-${tag};`),
        );
        expect(remove).toMatchObject({ code: 0, stdout: `removed cli-t-${tag}\n` });
      } else {
        const m = `cli-m-${tag}`;
        expect(add).toMatchObject({
          code: 1,
          stdout: '',
          stderr: `error: policy '${m}' cannot grant ${targetRight}, which it lacks\n`,
        });
        expect(update).toMatchObject({
          code: 1,
          stderr: `error: policy '${m}' cannot change policy 'cli-t-${tag}': it lacks ${targetRight}\n`,
        });
        expect(remove).toMatchObject({
          code: 1,
          stderr: `error: policy '${m}' cannot remove policy 'cli-t-${tag}': it lacks ${targetRight}\n`,
        });
      }
    },
  );

  it('policy update needs something to change; a rotated key replaces the old string', async () => {
    const env = { DSTREAM_SERVICE_CONNECTION_STRING: t.serviceString };
    expect(await runCli(['policy', 'update', 'x'], env)).toMatchObject({
      code: 2,
      stderr: 'error: policy update needs --rights, --rotate-key or both\n',
    });
    const made = await runCli(['policy', 'add', 'rot', '--rights', 'RegistryRead'], env);
    const rotated = await runCli(['policy', 'update', 'rot', '--rotate-key'], env);
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).not.toBe(made.stdout);
    const old = await runCli(['device', 'list'], {
      DSTREAM_SERVICE_CONNECTION_STRING: made.stdout.trim(),
    });
    expect(old).toMatchObject({
      code: 1,
      stderr:
        'error: invalid token signature or policy\nhint: Check the connection string: it may belong to another hub, or its key was changed.\n',
    });
    const fresh = await runCli(['device', 'list'], {
      DSTREAM_SERVICE_CONNECTION_STRING: rotated.stdout.trim(),
    });
    expect(fresh.code).toBe(0);
  });
});
