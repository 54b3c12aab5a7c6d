import { DstreamError } from '../errors.js';
import { parseHostPort } from '../auth/connection-string.js';
import { streamNameProblem } from '../protocol/identifiers.js';

export interface LocalTarget {
  readonly host: string;
  readonly port: number;
}

/**
 * The agent's local policy: stream name -> local TCP target. It is the only way a stream
 * reaches anything; a name not in it is rejected, and names are never parsed as addresses.
 */
export type AllowList = ReadonlyMap<string, LocalTarget>;

function parsePort(text: string, flag: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535)
    throw new DstreamError('ERR_USAGE', `${flag} ${text}: not a port number (1-65535)`);
  return Number(text);
}

/** Build the allow-list from `--port P` (stream "P" -> 127.0.0.1:P) and `--target NAME=HOST:PORT`. */
export function buildAllowList(ports: readonly string[], targets: readonly string[]): AllowList {
  const list = new Map<string, LocalTarget>();
  const add = (name: string, target: LocalTarget, flag: string): void => {
    if (list.has(name))
      throw new DstreamError('ERR_USAGE', `${flag}: stream '${name}' is allowed twice`);
    list.set(name, target);
  };
  for (const p of ports)
    add(
      String(parsePort(p, '--port')),
      { host: '127.0.0.1', port: parsePort(p, '--port') },
      '--port',
    );
  for (const t of targets) {
    const eq = t.indexOf('=');
    const name = eq > 0 ? t.slice(0, eq) : '';
    const problem = name ? streamNameProblem(name) : 'missing NAME';
    if (problem)
      throw new DstreamError('ERR_USAGE', `--target ${t}: ${problem}`, {
        hint: 'Example: --target ssh=127.0.0.1:22',
      });
    const rest = t.slice(eq + 1);
    const hp = /:\d+$/.test(rest) ? parseHostPort(rest) : undefined;
    if (!hp)
      throw new DstreamError('ERR_USAGE', `--target ${t}: expected NAME=HOST:PORT`, {
        hint: 'Example: --target rdp=127.0.0.1:3389',
      });
    add(name, hp, '--target');
  }
  if (list.size === 0)
    throw new DstreamError('ERR_USAGE', 'the agent allows no streams', {
      hint: 'Add --port 22 or --target ssh=127.0.0.1:22.',
    });
  return list;
}
