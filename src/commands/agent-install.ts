import { formatHostPort } from '../auth/connection-string.js';
import { hubRequest, type HubTarget } from '../net/hub-client.js';

/** What GET /agent/install answers: where the single-file agent is, its hash, the pin. */
interface AgentInstall {
  readonly path: string;
  readonly sha256: string;
  readonly pinnedPubKey: string | null;
}

/** Quote a word for a POSIX shell. */
const quote = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;

/**
 * The two lines a device runs to get the agent from its hub and start it: curl over the same
 * TLS the agent will use (the hub's key pinned for a self-signed hub, `--cacert` with a private
 * CA, the system's CAs otherwise), the file's SHA-256 checked, then node. The connection string
 * is not repeated here (it is on stdout): the run line reads it from `<id>.cs`. Undefined
 * when the hub serves no agent file.
 */
export async function agentInstallLines(
  target: HubTarget,
  deviceId: string,
  caFile: string | undefined,
): Promise<string | undefined> {
  const res = await hubRequest(target, {
    method: 'GET',
    path: '/agent/install',
    timeoutMs: 10_000,
  });
  if (res.status !== 200) return undefined;
  const install = JSON.parse(res.body) as AgentInstall;
  const url = `${target.tls ? 'https' : 'http'}://${formatHostPort(target.host, target.port)}${install.path}`;
  const trust =
    install.pinnedPubKey !== null
      ? `-k --pinnedpubkey ${quote(install.pinnedPubKey)} `
      : caFile !== undefined
        ? `--cacert ${quote(caFile)} `
        : '';
  const file = `${deviceId.replace(/[^A-Za-z0-9._-]/g, '_')}.cs`;
  return [
    `On the device (Node.js 20 or newer), put its connection string (on stdout) in ${file}, then get the agent from the hub and start it:`,
    `  curl -fsS ${trust}-o dstream-agent.mjs ${quote(url)} && echo ${quote(`${install.sha256}  dstream-agent.mjs`)} | sha256sum -c -`,
    `  node dstream-agent.mjs agent --connection-string "$(cat ${file})" --port 22`,
    '',
  ].join('\n');
}
