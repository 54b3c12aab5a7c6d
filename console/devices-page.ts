import { h, replace, table } from './dom.js';
import { formatBytes, formatTime } from './format.js';
import {
  connectionText,
  problemText,
  type DeviceActivity,
  type Page,
  type PageContext,
} from './page.js';
import { showNewCredentials } from './new-credentials.js';

/** Devices: every registered device, live, with search, a filter and (with RegistryWrite) add. */
export function devicesPage(ctx: PageContext): Page {
  const search = h('input', {
    id: 'device-search',
    type: 'search',
    autocomplete: 'off',
    spellcheck: 'false',
    on: { input: () => draw() },
  });
  const filter = h(
    'select',
    { id: 'device-filter', on: { change: () => draw() } },
    h('option', { value: 'all' }, 'All devices'),
    h('option', { value: 'online' }, 'Online'),
    h('option', { value: 'offline' }, 'Offline'),
    h('option', { value: 'disabled' }, 'Disabled'),
  );
  const list = h('div', { id: 'device-list', 'aria-live': 'off' });
  const added = h('div', { id: 'device-added' });
  let devices: readonly DeviceActivity[] = [];

  const addForm = (): HTMLElement => {
    const input = h('input', {
      id: 'new-device-id',
      required: true,
      autocomplete: 'off',
      spellcheck: 'false',
      maxlength: 128,
    });
    return h(
      'form',
      {
        class: 'inline-form',
        on: {
          submit: (event) => {
            event.preventDefault();
            const deviceId = input.value.trim();
            if (deviceId === '') return;
            ctx.api
              .request<{ connectionString: string }>(
                'PUT',
                `/devices/${encodeURIComponent(deviceId)}`,
                { deviceId },
              )
              .then(async (device) => {
                input.value = '';
                showNewCredentials(ctx.api, added, deviceId, device.connectionString, 'added');
                ctx.notify(`Device ${deviceId} added.`);
                await refresh();
              })
              .catch((error: unknown) =>
                ctx.notify(`Cannot add ${deviceId}: ${problemText(error)}`, 'error'),
              );
          },
        },
      },
      h('label', { for: 'new-device-id' }, 'New device ID'),
      input,
      h('button', { type: 'submit' }, 'Add device'),
    );
  };

  const draw = (): void => {
    const needle = search.value.trim().toLowerCase();
    const which = filter.value;
    const shown = devices.filter((d) => {
      if (needle && !d.deviceId.toLowerCase().includes(needle)) return false;
      if (which === 'online') return d.status === 'enabled' && d.online;
      if (which === 'offline') return d.status === 'enabled' && !d.online;
      if (which === 'disabled') return d.status === 'disabled';
      return true;
    });
    replace(
      list,
      h('p', { class: 'count' }, `${shown.length} of ${devices.length} devices`),
      table(
        'Devices',
        [
          'Device',
          'Status',
          'Connection',
          'Node',
          'Connected since',
          'Open streams',
          'Bytes, last hour',
        ],
        shown.map((d) => [
          h('a', { href: `#/device/${encodeURIComponent(d.deviceId)}` }, d.deviceId),
          d.status,
          h(
            'span',
            {
              class: `state ${d.status === 'disabled' ? 'disabled' : d.online ? 'online' : 'offline'}`,
            },
            connectionText(d),
          ),
          d.online ? (d.node ?? '—') : '—',
          d.online ? formatTime(d.connectedSince) : '—',
          String(d.openStreams),
          formatBytes(d.bytesLastHour),
        ]),
        devices.length === 0 ? 'No devices yet.' : 'No device matches.',
      ),
    );
  };

  const refresh = async (): Promise<void> => {
    devices = await ctx.api.get<DeviceActivity[]>('/hub/devices');
    draw();
  };

  replace(
    ctx.root,
    h('h1', { tabindex: -1 }, 'Devices'),
    h(
      'div',
      { class: 'controls' },
      h('label', { for: 'device-search' }, 'Search'),
      search,
      h('label', { for: 'device-filter' }, 'Show'),
      filter,
    ),
    ctx.canWrite ? addForm() : null,
    added,
    list,
  );
  return { refresh, refreshOn: new Set(['device', 'stream', 'tick']) };
}
