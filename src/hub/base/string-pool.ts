/**
 * One copy of each short string the hub keeps for every open stream (device ids, stream and
 * policy names): each request parses its own copy, and at 20,000 open streams those copies
 * were about 80 bytes of every stream. Bounded: cleared when full (a copy already handed out
 * stays valid; only the sharing starts over).
 */
export class StringPool {
  readonly #strings = new Map<string, string>();
  readonly #max: number;

  constructor(max = 10_000) {
    this.#max = max;
  }

  /** `s`, or an equal string handed out before. */
  intern(s: string): string {
    const known = this.#strings.get(s);
    if (known !== undefined) return known;
    if (this.#strings.size >= this.#max) this.#strings.clear();
    this.#strings.set(s, s);
    return s;
  }
}
