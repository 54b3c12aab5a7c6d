import { Api, ApiError } from './api.js';
import { auditPage } from './audit-page.js';
import {
  credentialsFromPolicy,
  forgetCredentials,
  loadCredentials,
  parseServiceConnectionString,
  saveCredentials,
  TokenSigner,
  type Credentials,
} from './credentials.js';
import { devicePage } from './device-page.js';
import { devicesPage } from './devices-page.js';
import { h, replace } from './dom.js';
import { hubPage } from './hub-page.js';
import { problemText, type Page, type PageContext } from './page.js';
import { streamsPage } from './streams-page.js';

const main = document.getElementById('main') as HTMLElement;
const nav = document.getElementById('nav') as HTMLElement;
const account = document.getElementById('account') as HTMLElement;
const status = document.getElementById('status') as HTMLElement;
const live = document.getElementById('live') as HTMLElement;

function notify(message: string, kind: 'info' | 'error' = 'info'): void {
  status.className = kind;
  status.textContent = message;
}

/** The sign-in form. `problem`: the one message about why the last try failed. */
function showSignIn(problem?: string): void {
  replace(nav);
  replace(account);
  replace(live);
  notify('');
  const text = h('textarea', {
    id: 'connection-string',
    rows: 3,
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-describedby': 'sign-in-help',
  });
  const policy = h('input', { id: 'policy-name', autocomplete: 'off', spellcheck: 'false' });
  const key = h('input', { id: 'policy-key', type: 'password', autocomplete: 'off' });
  const error = h('p', { id: 'sign-in-error', role: 'alert', class: 'error' }, problem ?? '');
  const submit = (event: Event): void => {
    event.preventDefault();
    const credentials =
      text.value.trim() !== ''
        ? parseServiceConnectionString(text.value)
        : credentialsFromPolicy(policy.value, key.value);
    if (typeof credentials === 'string') {
      error.textContent = credentials;
      return;
    }
    void signIn(credentials);
  };
  replace(
    main,
    h('h1', { tabindex: -1 }, 'Sign in'),
    h(
      'form',
      { id: 'sign-in', on: { submit } },
      h('label', { for: 'connection-string' }, 'Service connection string'),
      text,
      h(
        'p',
        { id: 'sign-in-help', class: 'help' },
        'The string `dstream hub init` printed, or one from `dstream policy add`. The key stays in this tab: the page signs short-lived tokens with it and sends only those.',
      ),
      h(
        'details',
        {},
        h('summary', {}, 'Or a policy name and key'),
        h('label', { for: 'policy-name' }, 'Policy name'),
        policy,
        h('label', { for: 'policy-key' }, 'Key'),
        key,
      ),
      error,
      h('button', { type: 'submit' }, 'Sign in'),
    ),
  );
  text.focus();
}

/** Check the credentials against the hub (GET /hub), then open the console. */
async function signIn(credentials: Credentials): Promise<void> {
  const api = new Api(new TokenSigner(credentials));
  let rights: readonly string[];
  try {
    const info = await api.get<{ caller: { rights: string[] } }>('/hub');
    rights = info.caller.rights;
  } catch (error) {
    forgetCredentials();
    if (error instanceof ApiError && error.status === 401)
      return showSignIn(
        `The hub refused this key: check the policy name and key (${error.message}).`,
      );
    if (error instanceof ApiError && error.status === 403)
      return showSignIn(
        `This policy may not read the registry (it needs RegistryRead): ${error.message}.`,
      );
    return showSignIn(`Cannot reach the hub: ${problemText(error)}`);
  }
  saveCredentials(credentials);
  startConsole(api, credentials.policy, rights.includes('RegistryWrite'));
}

let current: Page | undefined;
let events: AbortController | undefined;

function startConsole(api: Api, policy: string, canWrite: boolean): void {
  replace(
    account,
    h('span', {}, `Policy ${policy}${canWrite ? '' : ' (read only)'}`),
    h(
      'button',
      {
        type: 'button',
        id: 'sign-out',
        on: {
          click: () => {
            forgetCredentials();
            events?.abort();
            current?.dispose?.();
            current = undefined;
            location.hash = '';
            showSignIn();
          },
        },
      },
      'Sign out',
    ),
  );
  const links: [string, string][] = [
    ['#/devices', 'Devices'],
    ['#/streams', 'Streams'],
    ['#/audit', 'Audit'],
    ['#/hub', 'Hub'],
  ];
  replace(nav, h('ul', {}, ...links.map(([href, text]) => h('li', {}, h('a', { href }, text)))));
  const ctx: PageContext = {
    api,
    canWrite,
    root: main,
    notify,
    navigate: (hash) => {
      location.hash = hash;
    },
  };

  let refreshing = false;
  let again = false;
  const refresh = (): void => {
    const page = current;
    if (!page) return;
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    page
      .refresh()
      .catch((error: unknown) => {
        if (error instanceof ApiError && error.status === 401) {
          forgetCredentials();
          events?.abort();
          return showSignIn(`The hub no longer accepts this key (${error.message}).`);
        }
        notify(problemText(error), 'error');
      })
      .finally(() => {
        refreshing = false;
        // Asked for again meanwhile: by this page (an event) or by the one opened since, whose
        // first load waited for this one. Dropping it when the page had changed left a page
        // that refreshes on rare events only (Audit) empty until one came.
        if (again) {
          again = false;
          refresh();
        }
      });
  };

  const route = (): void => {
    current?.dispose?.();
    const hash = location.hash || '#/devices';
    const [, name, arg] = /^#\/([a-z]+)(?:\/(.*))?$/.exec(hash) ?? [];
    for (const a of nav.querySelectorAll('a'))
      if (a.getAttribute('href') === `#/${name === 'device' ? 'devices' : (name ?? '')}`)
        a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    notify('');
    if (name === 'device' && arg !== undefined) current = devicePage(ctx, decodeURIComponent(arg));
    else if (name === 'streams') current = streamsPage(ctx);
    else if (name === 'audit') current = auditPage(ctx);
    else if (name === 'hub') current = hubPage(ctx);
    else current = devicesPage(ctx);
    document.title = `${main.querySelector('h1')?.textContent ?? 'Console'} · dstream`;
    main.querySelector('h1')?.focus();
    refresh();
  };
  window.onhashchange = route;
  route();

  events?.abort();
  events = new AbortController();
  void api.follow(
    (type) => {
      if (current?.refreshOn.has(type)) refresh();
    },
    (connected) => replace(live, connected ? 'live' : 'reconnecting…'),
    events.signal,
  );
}

const saved = loadCredentials();
if (saved) void signIn(saved);
else showSignIn();
