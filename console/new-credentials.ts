import { h, replace } from './dom.js';

/**
 * Show a device's connection string once (after add or a key rotation), with the command to
 * run on the device. It is not kept anywhere: Done removes it from the page.
 */
export function showNewCredentials(
  where: HTMLElement,
  deviceId: string,
  connectionString: string,
  what: 'added' | 'rotated',
): void {
  const command = `dstream agent --connection-string '${connectionString}' --port 22`;
  replace(
    where,
    h(
      'section',
      { class: 'secret', 'aria-labelledby': 'secret-title' },
      h(
        'h2',
        { id: 'secret-title' },
        what === 'added' ? `Device ${deviceId} added` : `New key for ${deviceId}`,
      ),
      h('p', {}, 'Its connection string, shown this once (the hub keeps it; this page does not):'),
      h('pre', { class: 'copyable', id: 'device-connection-string' }, connectionString),
      h('p', {}, 'On the device, run (allow the ports it should serve with --port):'),
      h('pre', { class: 'copyable', id: 'agent-command' }, command),
      h('button', { type: 'button', on: { click: () => replace(where) } }, 'Done'),
    ),
  );
}
