import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** A TCP socket a process holds, as /proc/net/tcp{,6} shows it. */
export interface ProcTcpSocket {
  /** Local address in /proc's hex form, e.g. `0100007F` for 127.0.0.1. */
  readonly address: string;
  readonly port: number;
  /** /proc's state code: `0A` is LISTEN, `01` ESTABLISHED. */
  readonly state: string;
}

/** The TCP sockets process `pid` holds, read from /proc (Linux). */
export function tcpSocketsOf(pid: number): ProcTcpSocket[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const found: ProcTcpSocket[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6'])
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      // sl local_address rem_address st ... inode (field 9)
      const f = line.trim().split(/\s+/);
      if (f[9] === undefined || !inodes.has(f[9])) continue;
      const [address = '', port = '0'] = (f[1] ?? '').split(':');
      found.push({ address, port: parseInt(port, 16), state: f[3] ?? '' });
    }
  return found;
}
