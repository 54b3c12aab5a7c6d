/** One measured figure, with its baseline and target where it has them. */
export interface Figure {
  readonly scenario: number;
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** The same thing without the tunnel (direct loopback), measured in the same run. */
  readonly baseline?: number;
  /** value / baseline, when both exist. */
  readonly ratio?: number;
  /** The target, e.g. ">= 300" or "< 5". */
  readonly target?: { readonly op: '>=' | '<'; readonly value: number };
  readonly met?: boolean;
  readonly note?: string;
}

/** A figure with its target evaluated and its ratio computed. */
export function figure(
  f: Omit<Figure, 'ratio' | 'met'> & { readonly ratioTarget?: number },
): Figure {
  const ratio = f.baseline !== undefined && f.baseline !== 0 ? f.value / f.baseline : undefined;
  const metValue =
    f.target === undefined
      ? undefined
      : f.target.op === '>='
        ? f.value >= f.target.value
        : f.value < f.target.value;
  const metRatio =
    f.ratioTarget === undefined || ratio === undefined ? undefined : ratio >= f.ratioTarget;
  const met =
    metValue === undefined ? metRatio : metRatio === undefined ? metValue : metValue && metRatio;
  const { ratioTarget, ...rest } = f;
  return {
    ...rest,
    ...(ratio !== undefined ? { ratio } : {}),
    ...(met !== undefined ? { met } : {}),
    ...(ratioTarget !== undefined
      ? { note: `${rest.note ? rest.note + '; ' : ''}ratio target >= ${ratioTarget}` }
      : {}),
  };
}
