/**
 * A load process for the memory figures: `echo` serves the echo target and prints its port;
 * `hold <port>` holds streams through a tunnel's local port, driven by commands on stdin (one
 * per line: `open N`, `echoes-on`, `echoes-off`, `tally`, `close`), each answered on stdout by
 * `{"reply":<command number>,...}`. Runs until SIGTERM.
 */
import { createInterface } from 'node:readline';
import { StreamHolder } from './held-streams.js';
import { startEcho } from './target-servers.js';

const [role, portArg] = process.argv.slice(2);

if (role === 'echo') {
  const echo = await startEcho();
  console.log(JSON.stringify({ port: echo.port }));
  setInterval(() => undefined, 60_000);
} else if (role === 'hold' && portArg) {
  const holder = new StreamHolder(Number(portArg));
  let replies = 0;
  const answer = (fields: Record<string, number> = {}): void =>
    console.log(JSON.stringify({ reply: ++replies, ...fields }));
  // Commands run one after another, in the order they came.
  let queue = Promise.resolve();
  const run = async (line: string): Promise<void> => {
    const [command, arg] = line.trim().split(' ');
    if (command === 'open') return answer({ ms: await holder.open(Number(arg)) });
    if (command === 'tally') return answer({ ...(await holder.tally()) });
    if (command === 'echoes-on') await holder.startEchoes();
    else if (command === 'echoes-off') await holder.stopEchoes();
    else if (command === 'close') await holder.close();
    else throw new Error(`unknown command: ${line}`);
    answer();
  };
  createInterface({ input: process.stdin }).on('line', (line) => {
    // A failed command ends the process: the parent's wait for its answer fails with the output.
    queue = queue
      .then(() => run(line))
      .catch((error: unknown) => {
        console.error(error);
        process.exit(1);
      });
  });
  setInterval(() => undefined, 60_000);
} else {
  console.error('usage: hold-child echo | hold <port>');
  process.exit(2);
}
