import { auditTable } from './audit-view.js';
import { append, h, replace } from './dom.js';
import { problemText, type AuditRecord, type Page, type PageContext } from './page.js';

const pageSize = 50;

/** Audit: the audit log, newest first, filtered by device, outcome and time, paged. */
export function auditPage(ctx: PageContext): Page {
  const device = h('input', { id: 'audit-device', autocomplete: 'off', spellcheck: 'false' });
  const outcome = h('select', { id: 'audit-outcome' }, h('option', { value: '' }, 'Any outcome'));
  // The outcomes the hub knows (GET /hub lists them), filled in when it answers.
  ctx.api
    .get<{ auditOutcomes: string[] }>('/hub')
    .then((hub) => append(outcome, ...hub.auditOutcomes.map((o) => h('option', { value: o }, o))))
    .catch((error: unknown) => ctx.notify(problemText(error), 'error'));
  const since = h('input', { id: 'audit-since', type: 'datetime-local' });
  const until = h('input', { id: 'audit-until', type: 'datetime-local' });
  const list = h('div', { id: 'audit-list' });
  const paging = h('div', { class: 'paging' });
  /** The cursors of the pages shown before this one (Newer goes back to them). */
  const cursors: (number | undefined)[] = [];
  let cursor: number | undefined;

  const query = (): string => {
    const params = new URLSearchParams({ limit: String(pageSize) });
    if (device.value.trim()) params.set('deviceId', device.value.trim());
    if (outcome.value) params.set('outcome', outcome.value);
    if (since.value) params.set('since', new Date(since.value).toISOString());
    if (until.value) params.set('until', new Date(until.value).toISOString());
    if (cursor !== undefined) params.set('before', String(cursor));
    return params.toString();
  };

  const refresh = async (): Promise<void> => {
    const page = await ctx.api.get<{ records: AuditRecord[]; next: number | null }>(
      `/audit?${query()}`,
    );
    replace(list, auditTable(page.records, 'No audit records match.'));
    replace(
      paging,
      cursors.length > 0
        ? h('button', { type: 'button', on: { click: () => go(cursors.pop()) } }, 'Newer')
        : null,
      page.next !== null
        ? h(
            'button',
            {
              type: 'button',
              on: {
                click: () => {
                  cursors.push(cursor);
                  go(page.next ?? undefined);
                },
              },
            },
            'Older',
          )
        : null,
    );
  };
  const go = (to: number | undefined): void => {
    cursor = to;
    refresh().catch((error: unknown) => ctx.notify(String(error), 'error'));
  };

  replace(
    ctx.root,
    h('h1', { tabindex: -1 }, 'Audit'),
    h(
      'form',
      {
        class: 'controls',
        on: {
          submit: (event) => {
            event.preventDefault();
            cursors.length = 0;
            go(undefined);
          },
        },
      },
      h('label', { for: 'audit-device' }, 'Device'),
      device,
      h('label', { for: 'audit-outcome' }, 'Outcome'),
      outcome,
      h('label', { for: 'audit-since' }, 'From'),
      since,
      h('label', { for: 'audit-until' }, 'To'),
      until,
      h('button', { type: 'submit' }, 'Filter'),
    ),
    list,
    paging,
  );
  return {
    // New records show at once, but only on the newest page (an older page stays put).
    refresh: () => (cursor === undefined ? refresh() : Promise.resolve()),
    refreshOn: new Set(['audit']),
  };
}
