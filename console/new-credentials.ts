import type { Api } from './api.js';
import { h, replace } from './dom.js';

/** GET /agent/install: where the single-file agent is, its hash, the hub's key pin. */
interface AgentInstall {
  readonly path: string;
  readonly sha256: string;
  readonly pinnedPubKey: string | null;
}

/** Quote a word for a POSIX shell. */
const quote = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;

/** The hub address a device string names (HostName, UseTls), as a URL origin. */
function hubOrigin(connectionString: string): string {
  const fields = new Map(
    connectionString.split(';').map((part) => {
      const eq = part.indexOf('=');
      return [part.slice(0, eq), part.slice(eq + 1)] as const;
    }),
  );
  const tls = fields.get('UseTls')?.toLowerCase() !== 'false';
  return `${tls ? 'https' : 'http'}://${fields.get('HostName') ?? location.host}`;
}

/**
 * Show a device's connection string once (after add or a key rotation), with what to run on
 * the device: the two lines that fetch the single-file agent from the hub (pinned, hash
 * checked) and start it, or the `dstream agent` command where dstream is installed. Nothing is
 * kept: Done removes it from the page.
 */
export function showNewCredentials(
  api: Api,
  where: HTMLElement,
  deviceId: string,
  connectionString: string,
  what: 'added' | 'rotated',
): void {
  const command = `dstream agent --connection-string '${connectionString}' --port 22`;
  const fetchLines = h('pre', { class: 'copyable', id: 'agent-fetch' }, '…');
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
      h(
        'p',
        {},
        'On the device, with only Node.js 20 or newer: get the agent from the hub (one file, its hash checked) and start it, allowing the ports it should serve with --port:',
      ),
      fetchLines,
      h('p', {}, 'Or, where dstream is installed:'),
      h('pre', { class: 'copyable', id: 'agent-command' }, command),
      h('button', { type: 'button', on: { click: () => replace(where) } }, 'Done'),
    ),
  );
  api
    .get<AgentInstall>('/agent/install')
    .then((install) => {
      const trust =
        install.pinnedPubKey === null ? '' : `-k --pinnedpubkey ${quote(install.pinnedPubKey)} `;
      const url = `${hubOrigin(connectionString)}${install.path}`;
      replace(
        fetchLines,
        `curl -fsS ${trust}-o dstream-agent.mjs ${quote(url)} && echo ${quote(`${install.sha256}  dstream-agent.mjs`)} | sha256sum -c -\n` +
          `node dstream-agent.mjs agent --connection-string ${quote(connectionString)} --port 22`,
      );
    })
    .catch(() =>
      replace(fetchLines, 'This hub serves no agent file; use the dstream command below.'),
    );
}
