/**
 * Loaded into the hub, agent and proxy by bench/setup-timeline.ts (`node --import`): records
 * when each carrier message is sent and arrives ('dstream:mux:message', src/mux/mux-session.ts)
 * and when a TCP connection is accepted (Node's own 'net.server.socket'), on the clock every process shares (process.hrtime), and writes them to
 * DSTREAM_TIMELINE_DIR/<pid>.json when the process exits. Nothing without that variable.
 */
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** One process's marks: [hrtime in ns as a string, label] pairs, flattened. */
export type TimelineMarks = string[];

interface MessageTrace {
  readonly session: object;
  readonly direction: 'in' | 'out';
  readonly frames: readonly number[];
  readonly arrivedAt?: bigint;
}

const dir = process.env.DSTREAM_TIMELINE_DIR;
if (dir) {
  const marks: TimelineMarks = [];
  // Bounded: a process left recording does not grow without end.
  const limit = 4_000_000;
  const sessions = new WeakMap<object, number>();
  let nextSession = 1;
  const record = (at: bigint, label: string): void => {
    if (marks.length < limit) marks.push(String(at), label);
  };
  subscribe('dstream:mux:message', (message) => {
    const m = message as MessageTrace;
    let id = sessions.get(m.session);
    if (id === undefined) sessions.set(m.session, (id = nextSession++));
    record(m.arrivedAt ?? process.hrtime.bigint(), `${m.direction} ${m.frames.join(',')} @${id}`);
  });
  subscribe('net.server.socket', () => record(process.hrtime.bigint(), 'accept'));
  process.on('exit', () => writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify(marks)));
}
