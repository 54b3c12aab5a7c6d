import type { Figure } from './result.js';

function num(v: number | undefined, unit: string): string {
  if (v === undefined || Number.isNaN(v)) return '';
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : Math.abs(v) >= 1 ? 2 : 3;
  return `${v.toFixed(digits)}${unit ? ' ' + unit : ''}`;
}

/** "and >= N% of the baseline", from the note figure() writes for a ratio target. */
function ratioTargetText(f: Figure): string {
  const m = /ratio target >= ([\d.]+)/.exec(f.note ?? '');
  return m ? `and >= ${Math.round(Number(m[1]) * 100)}% of the baseline` : '';
}

/** The results table: figure, value, baseline (direct, or as named), ratio, target, met/missed. */
export function formatTable(figures: readonly Figure[]): string {
  const rows = [
    ['#', 'figure', 'dstream', 'baseline', 'ratio', 'target', 'result'],
    ...figures.map((f) => [
      String(f.scenario),
      f.name,
      num(f.value, f.unit),
      num(f.baseline, f.unit),
      f.ratio === undefined ? '' : `${(f.ratio * 100).toFixed(f.ratio < 0.1 ? 1 : 0)}%`,
      [
        f.target ? `${f.target.op} ${f.target.value}${f.unit ? ' ' + f.unit : ''}` : '',
        ratioTargetText(f),
      ]
        .filter(Boolean)
        .join(' '),
      f.met === undefined ? '' : f.met ? 'met' : 'MISSED',
    ]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
