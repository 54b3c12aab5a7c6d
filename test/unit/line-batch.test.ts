import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LineBatch } from '../../src/log/line-batch.js';

/** A batch whose writes are recorded; `next()` resolves with the next write. */
function recorded(options = { delayMs: 20, maxChars: 16 * 1024 }): {
  batch: LineBatch;
  writes: string[];
  next: () => Promise<string>;
} {
  const writes: string[] = [];
  const waiting: ((text: string) => void)[] = [];
  const batch = new LineBatch((text) => {
    writes.push(text);
    waiting.shift()?.(text);
  }, options);
  return { batch, writes, next: () => new Promise((resolve) => waiting.push(resolve)) };
}

describe('log lines gathered for stderr', () => {
  it('writes the lines of one moment together, in order, each with its newline', async () => {
    const { batch, writes, next } = recorded();
    const written = next();
    batch.add('one');
    batch.add('two');
    batch.add('three');
    // Nothing yet: the lines wait for the others of their moment.
    expect(writes).toEqual([]);
    expect(batch.pendingLines).toBe(3);
    expect(await written).toBe('one\ntwo\nthree\n');
    expect(writes).toHaveLength(1);
    expect(batch.pendingLines).toBe(0);
  });

  it('a line that must go now takes everything before it along, in one write', () => {
    const { batch, writes } = recorded();
    batch.add('INFO  a');
    batch.add('INFO  b');
    batch.addNow('WARN  c');
    expect(writes).toEqual(['INFO  a\nINFO  b\nWARN  c\n']);
    expect(batch.pendingLines).toBe(0);
  });

  it('writes at once past its size bound, and nothing when nothing is pending', () => {
    const { batch, writes } = recorded({ delayMs: 60_000, maxChars: 10 });
    batch.add('12345');
    expect(writes).toEqual([]);
    batch.add('6789');
    expect(writes).toEqual(['12345\n6789\n']);
    batch.flush();
    expect(writes).toHaveLength(1);
  });

  it('a line added after a write waits for its own moment', async () => {
    const { batch, writes, next } = recorded();
    let written = next();
    batch.add('first');
    expect(await written).toBe('first\n');
    written = next();
    batch.add('second');
    expect(writes).toEqual(['first\n']);
    expect(await written).toBe('second\n');
  });
});

const loggerUrl = new URL('../../dist/log/logger.js', import.meta.url).href;

/** Run a module in a child node process (the built logger, as the CLI runs it). */
function runChild(
  body: string,
): Promise<{ code: number | null; stderr: string; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createLogger } from ${JSON.stringify(loggerUrl)};\n${body}`,
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, stderr, signal }));
  });
}

describe('a process that logs through stderr', () => {
  it('writes its pending lines before it exits, even at once', async () => {
    const r = await runChild(
      `const log = createLogger({ level: 'info', format: 'text' });
       for (let i = 0; i < 5; i++) log.info('line', { n: i });
       process.exit(3);`,
    );
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(
      'INFO  line n=0\nINFO  line n=1\nINFO  line n=2\nINFO  line n=3\nINFO  line n=4\n',
    );
  });

  it("puts the lines before an uncaught exception's report", async () => {
    const r = await runChild(
      `const log = createLogger({ level: 'info', format: 'json' });
       log.info('about to fail', { step: 1 });
       setImmediate(() => { throw new Error('boom 4711'); });`,
    );
    expect(r.code).toBe(1);
    const first = r.stderr.indexOf('"msg":"about to fail"');
    const report = r.stderr.indexOf('boom 4711');
    expect(first).toBeGreaterThanOrEqual(0);
    expect(report).toBeGreaterThan(first);
  });

  it('a warning comes after the lines logged before it, while the process runs on', async () => {
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createLogger } from ${JSON.stringify(loggerUrl)};
         const log = createLogger({ level: 'info', format: 'text' });
         log.info('before');
         log.warn('careful', { why: 'a test' });
         setInterval(() => undefined, 1000);`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    try {
      let stderr = '';
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject);
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (stderr.includes('\nWARN')) resolve();
        });
      });
      expect(stderr).toBe('INFO  before\nWARN  careful why="a test"\n');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
