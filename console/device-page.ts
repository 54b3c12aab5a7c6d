import { auditTable } from './audit-view.js';
import { confirmAction, h, replace } from './dom.js';
import { formatBytes, formatTime } from './format.js';
import { showNewCredentials } from './new-credentials.js';
import {
  connectionText,
  problemText,
  type AuditRecord,
  type DeviceActivity,
  type OpenStream,
  type Page,
  type PageContext,
} from './page.js';
import { streamsTable } from './streams-page.js';

/** A device: what it is now, its open streams, its recent audit lines, and its actions. */
export function devicePage(ctx: PageContext, deviceId: string): Page {
  const facts = h('div', { id: 'device-facts' });
  const actions = h('div', { class: 'actions', id: 'device-actions' });
  const secret = h('div', { id: 'device-secret' });
  const streams = h('div', { id: 'device-streams' });
  const audit = h('div', { id: 'device-audit' });
  const path = `/devices/${encodeURIComponent(deviceId)}`;

  const act = async (
    question: string,
    detail: string,
    label: string,
    run: () => Promise<void>,
  ): Promise<void> => {
    if (!(await confirmAction(question, detail, label))) return;
    try {
      await run();
    } catch (error) {
      ctx.notify(`${label} failed: ${problemText(error)}`, 'error');
    }
    await refresh().catch(() => undefined);
  };

  const drawActions = (device: DeviceActivity): void => {
    if (!ctx.canWrite) return replace(actions);
    const enabled = device.status === 'enabled';
    const rotate = (which: 'primary' | 'secondary'): Promise<void> =>
      act(
        `Rotate the ${which} key of ${deviceId}?`,
        `The old ${which} key stops working at once; an agent using it is disconnected until it gets the new connection string.`,
        `Rotate ${which} key`,
        async () => {
          const device = await ctx.api.request<{
            connectionString: string;
            secondaryConnectionString: string;
          }>('POST', `${path}/regenerate-key`, { key: which });
          showNewCredentials(
            ctx.api,
            secret,
            deviceId,
            which === 'primary' ? device.connectionString : device.secondaryConnectionString,
            'rotated',
          );
          ctx.notify(`The ${which} key of ${deviceId} was rotated.`);
        },
      );
    replace(
      actions,
      h(
        'button',
        {
          type: 'button',
          on: {
            click: () =>
              void act(
                enabled ? `Disable ${deviceId}?` : `Enable ${deviceId}?`,
                enabled
                  ? 'Its agent is disconnected and its open streams end; it cannot connect until enabled again.'
                  : 'Its agent may connect again.',
                enabled ? 'Disable' : 'Enable',
                async () => {
                  await ctx.api.request('PATCH', path, {
                    status: enabled ? 'disabled' : 'enabled',
                  });
                  ctx.notify(`${deviceId} ${enabled ? 'disabled' : 'enabled'}.`);
                },
              ),
          },
        },
        enabled ? 'Disable' : 'Enable',
      ),
      h(
        'button',
        { type: 'button', on: { click: () => void rotate('primary') } },
        'Rotate primary key',
      ),
      h(
        'button',
        { type: 'button', on: { click: () => void rotate('secondary') } },
        'Rotate secondary key',
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          on: {
            click: () =>
              void act(
                `Remove ${deviceId}?`,
                'Its identity and keys are deleted, its agent disconnected and its streams ended. This cannot be undone.',
                'Remove',
                async () => {
                  await ctx.api.request('DELETE', path);
                  ctx.notify(`${deviceId} removed.`);
                  ctx.navigate('#/devices');
                },
              ),
          },
        },
        'Remove',
      ),
    );
  };

  const refresh = async (): Promise<void> => {
    const [devices, open, records] = await Promise.all([
      ctx.api.get<DeviceActivity[]>('/hub/devices'),
      ctx.api.get<OpenStream[]>(`/streams?deviceId=${encodeURIComponent(deviceId)}`),
      ctx.api.get<{ records: AuditRecord[] }>(
        `/audit?deviceId=${encodeURIComponent(deviceId)}&limit=20`,
      ),
    ]);
    const device = devices.find((d) => d.deviceId === deviceId);
    if (!device) {
      replace(facts, h('p', { role: 'alert' }, `No device ${deviceId} is registered.`));
      replace(actions);
      replace(streams);
      replace(audit, auditTable(records.records, 'No audit records.'));
      return;
    }
    replace(
      facts,
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Status'),
        h('dd', {}, device.status),
        h('dt', {}, 'Connection'),
        h('dd', { id: 'device-connection' }, connectionText(device)),
        h('dt', {}, 'Connected since'),
        h('dd', {}, device.online ? formatTime(device.connectedSince) : '—'),
        h('dt', {}, 'From'),
        h('dd', {}, device.online ? (device.remote ?? '—') : '—'),
        h('dt', {}, 'Last activity'),
        h('dd', {}, formatTime(device.lastActivityTime)),
        h('dt', {}, 'Bytes, last hour'),
        h('dd', {}, formatBytes(device.bytesLastHour)),
      ),
    );
    drawActions(device);
    replace(streams, streamsTable(ctx, open, refresh));
    replace(audit, auditTable(records.records, 'No audit records.'));
  };

  replace(
    ctx.root,
    h('p', {}, h('a', { href: '#/devices' }, '← All devices')),
    h('h1', { tabindex: -1 }, `Device ${deviceId}`),
    facts,
    actions,
    secret,
    h('h2', {}, 'Open streams'),
    streams,
    h('h2', {}, 'Recent audit'),
    audit,
  );
  return { refresh, refreshOn: new Set(['device', 'stream', 'audit', 'tick']) };
}
