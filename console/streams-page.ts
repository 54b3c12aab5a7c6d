import { confirmAction, h, replace, table } from './dom.js';
import { formatBytes, formatDuration } from './format.js';
import { problemText, type OpenStream, type Page, type PageContext } from './page.js';

/** The open streams as a table, with End buttons for a policy that may end them. */
export function streamsTable(
  ctx: PageContext,
  streams: readonly OpenStream[],
  ended: () => Promise<void>,
): HTMLElement {
  const end = async (stream: OpenStream): Promise<void> => {
    const ok = await confirmAction(
      `End stream ${stream.streamName} to ${stream.deviceId}?`,
      'Both ends see the stream reset; the client connection closes. The audit log records that you ended it.',
      'End stream',
    );
    if (!ok) return;
    try {
      await ctx.api.request('DELETE', `/streams/${encodeURIComponent(stream.id)}`);
      ctx.notify(`Stream ${stream.streamName} to ${stream.deviceId} ended.`);
    } catch (error) {
      ctx.notify(`Cannot end the stream: ${problemText(error)}`, 'error');
    }
    await ended();
  };
  // In a cluster, which node relays each stream.
  const clustered = streams.some((s) => s.node !== null && s.node !== undefined);
  const headers = [
    'Device',
    'Stream',
    'Client',
    'Policy',
    'State',
    'To device',
    'From device',
    'Age',
    'Resumed',
  ];
  if (clustered) headers.push('Node');
  if (ctx.canWrite) headers.push('Action');
  return table(
    'Open streams',
    headers,
    streams.map((s) => {
      const cells: (Node | string)[] = [
        h('a', { href: `#/device/${encodeURIComponent(s.deviceId)}` }, s.deviceId),
        s.streamName,
        s.remote ?? '—',
        s.policy ?? '—',
        s.state,
        h(
          'span',
          { class: 'bytes', 'data-stream': s.id, 'data-direction': 'to-device' },
          formatBytes(s.bytesToDevice),
        ),
        h(
          'span',
          { class: 'bytes', 'data-stream': s.id, 'data-direction': 'from-device' },
          formatBytes(s.bytesFromDevice),
        ),
        formatDuration(s.ageMs),
        s.resumable ? `${s.resumptions} ×` : 'not resumable',
      ];
      if (clustered) cells.push(s.node ?? '—');
      if (ctx.canWrite)
        cells.push(
          h(
            'button',
            {
              type: 'button',
              class: 'danger small',
              'aria-label': `End stream ${s.streamName} to ${s.deviceId}`,
              on: { click: () => void end(s) },
            },
            'End',
          ),
        );
      return cells;
    }),
    'No open streams.',
  );
}

/** Streams: every open stream on the hub, with live byte counts. */
export function streamsPage(ctx: PageContext): Page {
  const list = h('div', { id: 'stream-list' });
  const refresh = async (): Promise<void> => {
    const streams = await ctx.api.get<OpenStream[]>('/streams');
    replace(
      list,
      h('p', { class: 'count' }, `${streams.length} open`),
      streamsTable(ctx, streams, refresh),
    );
  };
  replace(ctx.root, h('h1', { tabindex: -1 }, 'Streams'), list);
  return { refresh, refreshOn: new Set(['stream', 'tick']) };
}
