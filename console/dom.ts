/**
 * Building the page: elements are made with `h`, and every string from the hub goes in as
 * text (textContent, attribute values), never as markup, so a device ID such as
 * `<img src=x onerror=...>` is shown, not run. There is no innerHTML in the console.
 */

type Child = Node | string | number | null | undefined | false;
type Handlers = Readonly<{
  [K in keyof HTMLElementEventMap]?: (event: HTMLElementEventMap[K]) => void;
}>;
type AttributeValue = string | number | boolean | null | undefined;
/** Attributes by name, and `on`: event handlers by event name. */
type Attributes = { readonly on?: Handlers; readonly [name: string]: AttributeValue | Handlers };

/** An element with attributes, event handlers (`on`) and children (strings become text nodes). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: readonly Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'on' || value === null || value === undefined || value === false) continue;
    if (typeof value === 'object') continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  const handlers = attributes.on ?? {};
  for (const [event, handler] of Object.entries(handlers))
    element.addEventListener(event, handler as EventListener);
  append(element, ...children);
  return element;
}

/** Append children; strings and numbers as text. */
export function append(parent: Node, ...children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(
      typeof child === 'string' || typeof child === 'number'
        ? document.createTextNode(String(child))
        : child,
    );
  }
}

/** Replace an element's children. */
export function replace(parent: Element, ...children: readonly Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** A table with a caption, header cells and rows of cells. */
export function table(
  caption: string,
  headers: readonly string[],
  rows: readonly (readonly Child[])[],
  empty: string,
): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  return h(
    'div',
    // A wide table scrolls inside its own box, which the keyboard can reach and scroll.
    { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': caption },
    h(
      'table',
      {},
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, ...headers.map((text) => h('th', { scope: 'col' }, text)))),
      h(
        'tbody',
        {},
        ...rows.map((cells) => h('tr', {}, ...cells.map((cell) => h('td', {}, cell)))),
      ),
    ),
  );
}

/**
 * Ask the operator to confirm an action in a modal dialog (keyboard: Tab between the buttons,
 * Escape cancels). Resolves true on confirm.
 */
export function confirmAction(question: string, detail: string, action: string): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-title' },
      h('h2', { id: 'confirm-title' }, question),
      h('p', {}, detail),
    );
    const finish = (ok: boolean): void => {
      dialog.close();
      dialog.remove();
      resolve(ok);
    };
    append(
      dialog,
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'danger', on: { click: () => finish(true) } }, action),
        h('button', { type: 'button', on: { click: () => finish(false) } }, 'Cancel'),
      ),
    );
    dialog.addEventListener('cancel', (event) => {
      event.preventDefault();
      finish(false);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}
