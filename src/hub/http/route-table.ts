/** Values of a route's `:name` segments, decoded. */
export type RouteParams = Readonly<Record<string, string>>;

interface Route<H> {
  readonly method: string;
  readonly parts: readonly string[];
  readonly handler: H;
}

/**
 * A route table over a request's path segments, already decoded and checked by
 * `parseRequestPath` (which refuses dot segments and encoded slashes). Patterns are literal
 * segments and `:name` segments (any one segment, empty included); the first route added
 * that matches wins. Method `*` matches any method, for handlers that answer 405 themselves.
 *
 * Not a general router: the hub has a dozen routes, no wildcards and no prefixes, and matching
 * decoded segments keeps one decoding step (a router that decodes the raw URL again would
 * have to agree with parseRequestPath on every edge).
 */
export class RouteTable<H> {
  readonly #routes: Route<H>[] = [];

  /** Add a route: `add('POST', '/twins/:deviceId/streams/:streamName', handler)`. */
  add(method: string, pattern: string, handler: H): this {
    this.#routes.push({ method, parts: pattern.split('/').slice(1), handler });
    return this;
  }

  /** Add every route of `other`, after this table's own (which win where both match). */
  addAll(other: RouteTable<H>): this {
    this.#routes.push(...other.#routes);
    return this;
  }

  /** The handler for `method` and `segments`, with its parameters, or undefined. */
  match(
    method: string,
    segments: readonly string[],
  ): { readonly handler: H; readonly params: RouteParams } | undefined {
    for (const route of this.#routes) {
      if (route.method !== '*' && route.method !== method) continue;
      if (route.parts.length !== segments.length) continue;
      const params: Record<string, string> = {};
      let matched = true;
      for (let i = 0; i < route.parts.length && matched; i++) {
        const part = route.parts[i] ?? '';
        const segment = segments[i] ?? '';
        if (part.startsWith(':')) params[part.slice(1)] = segment;
        else matched = part === segment;
      }
      if (matched) return { handler: route.handler, params };
    }
    return undefined;
  }
}
