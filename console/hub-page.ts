import type uPlot from 'uplot';
import { h, replace } from './dom.js';
import { formatBytes, formatDuration } from './format.js';
import type { Page, PageContext } from './page.js';

interface HubInfo {
  readonly version: string;
  readonly node: string | null;
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  readonly listeners: Readonly<Record<string, string>>;
  readonly resumeWindowSeconds: number | null;
  readonly caller: { readonly policy: string; readonly rights: readonly string[] };
  readonly devices: { readonly registered: number; readonly online: number };
  readonly streams: {
    readonly open: number;
    readonly toDevice: number;
    readonly fromDevice: number;
  };
  readonly cluster?: {
    readonly nodes: readonly {
      readonly id: string;
      readonly url: string | null;
      readonly state: string;
      readonly devicesOnline: number | null;
      readonly openStreams: number | null;
    }[];
  } | null;
  readonly history: readonly {
    t: number;
    openStreams: number;
    newStreams: number;
    bytes: number;
  }[];
}

/** uPlot, loaded by its own script tag (vendor/uPlot.iife.min.js), served by the hub. */
const UPlot = (): typeof uPlot => (globalThis as unknown as { uPlot: typeof uPlot }).uPlot;

interface Chart {
  readonly title: string;
  readonly pick: (s: HubInfo['history'][number]) => number;
  readonly unit: (value: number) => string;
  plot?: uPlot;
}

/** Hub: version, uptime, listeners, cluster nodes, and the last hour in three charts. */
export function hubPage(ctx: PageContext): Page {
  const facts = h('div', { id: 'hub-facts' });
  const charts: Chart[] = [
    {
      title: 'Open streams',
      pick: (s) => s.openStreams,
      unit: (v) => (Number.isInteger(v) ? String(v) : ''),
    },
    { title: 'New streams a second', pick: (s) => s.newStreams, unit: (v) => v.toFixed(1) },
    { title: 'Bytes a second', pick: (s) => s.bytes, unit: (v) => `${formatBytes(v)}/s` },
  ];
  const chartBoxes = charts.map((chart, i) =>
    h('figure', { class: 'chart', id: `chart-${i}` }, h('figcaption', {}, chart.title)),
  );

  const draw = (info: HubInfo): void => {
    const times = info.history.map((s) => s.t / 1000);
    charts.forEach((chart, i) => {
      const box = chartBoxes[i];
      if (!box) return;
      const data: uPlot.AlignedData = [times, info.history.map(chart.pick)];
      const width = Math.max(260, Math.min(900, box.clientWidth - 8));
      if (chart.plot && Math.abs(chart.plot.width - width) < 2) chart.plot.setData(data);
      else {
        chart.plot?.destroy();
        chart.plot = new (UPlot())(
          {
            width,
            height: 180,
            legend: { show: false },
            series: [
              {},
              { label: chart.title, stroke: '#1f5fa8', fill: 'rgba(31,95,168,0.12)', width: 2 },
            ],
            axes: [{}, { values: (_u, values) => values.map(chart.unit), size: 70 }],
            scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
          },
          data,
          box,
        );
      }
    });
  };

  const refresh = async (): Promise<void> => {
    const info = await ctx.api.get<HubInfo>('/hub');
    const rows: [string, string][] = [
      ['Version', info.version],
      ['Node', info.node ?? 'single hub'],
      ['Up for', formatDuration(info.uptimeSeconds * 1000)],
      [
        'Resumable streams',
        info.resumeWindowSeconds === null ? 'off' : `on (window ${info.resumeWindowSeconds} s)`,
      ],
      ['Devices', `${info.devices.online} online of ${info.devices.registered}`],
      ['Open streams', String(info.streams.open)],
      [
        'Relayed since start',
        `${formatBytes(info.streams.toDevice)} to devices, ${formatBytes(info.streams.fromDevice)} from devices`,
      ],
      ['Signed in as', `${info.caller.policy} (${info.caller.rights.join(', ')})`],
    ];
    for (const [name, where] of Object.entries(info.listeners))
      rows.push([`Listener: ${name}`, where]);
    replace(
      facts,
      h('dl', { class: 'facts' }, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      info.cluster
        ? h(
            'section',
            {},
            h('h2', {}, 'Cluster nodes'),
            h(
              'ul',
              { id: 'cluster-nodes' },
              ...info.cluster.nodes.map((n) =>
                h(
                  'li',
                  {},
                  [
                    n.id,
                    n.state,
                    n.url,
                    n.devicesOnline === null ? null : `${n.devicesOnline} devices online`,
                    n.openStreams === null ? null : `${n.openStreams} open streams`,
                  ]
                    .filter((part) => part !== null)
                    .join(' — '),
                ),
              ),
            ),
          )
        : null,
    );
    draw(info);
  };

  replace(
    ctx.root,
    h('h1', { tabindex: -1 }, 'Hub'),
    facts,
    h('h2', {}, 'The last hour'),
    h('div', { class: 'charts' }, ...chartBoxes),
  );
  return {
    refresh,
    refreshOn: new Set(['tick']),
    dispose: () => charts.forEach((c) => c.plot?.destroy()),
  };
}
