/**
 * What an object literal that starts with a spread costs in this Node's V8, against the same
 * object written out or made with Object.assign: the reason for the ESLint rule on the
 * per-stream code (docs/architecture.md). `node .bench-build/bench/object-spread.js`.
 *
 * Each shape is made 200,000 times, a twentieth of them kept alive (as open streams keep their
 * records), after two warm-up rounds; ns per object.
 */

const rounds = 200_000;

function measure(make: (i: number) => unknown): number {
  const kept: unknown[] = [];
  let ns = 0;
  for (let round = 0; round < 3; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) {
      kept.push(make(i));
      if (kept.length > rounds / 20) kept.length = 0;
    }
    ns = Number(process.hrtime.bigint() - start) / rounds;
  }
  return ns;
}

interface Frame {
  readonly type: number;
  readonly payload: Buffer | undefined;
  readonly done: (() => void) | undefined;
}

const payload = Buffer.alloc(16);
const frameOf = (i: number): Frame => ({ type: i & 7, payload, done: undefined });
const bound = { stream: 'ssh', client: '127.0.0.1:50000' };
const fieldsOf = (i: number): Record<string, unknown> => ({ outcome: 'completed', bytes: i });

const cases: ReadonlyArray<readonly [string, (i: number) => unknown]> = [
  ['a frame and its stream id: { ...frame, stream }', (i) => ({ ...frameOf(i), stream: i })],
  [
    'the same, written out',
    (i) => {
      const f = frameOf(i);
      return { type: f.type, stream: i, payload: f.payload, done: f.done };
    },
  ],
  [
    'the same, Object.assign({}, frame, { stream })',
    (i) => Object.assign({}, frameOf(i), { stream: i }),
  ],
  ["a log line's fields: { ...bound, ...fields }", (i) => ({ ...bound, ...fieldsOf(i) })],
  ['the same, Object.assign({}, bound, fields)', (i) => Object.assign({}, bound, fieldsOf(i))],
  ['a spread last: { a, b, ...fields }', (i) => ({ a: 1, b: i, ...fieldsOf(i) })],
];

console.log(`node ${process.version}: ns per object (${rounds} made, a twentieth kept)`);
for (const [label, make] of cases) console.log(`${measure(make).toFixed(0).padStart(8)}  ${label}`);
