// Layer rules for src/ (npm run deps; CI runs it with lint). Layers from top to bottom; a
// module imports only from its own layer or the layers below it, and nothing forms a cycle.
// docs/architecture.md draws the same picture.
const layers = [
  { name: 'cli', path: '^src/(cli|cli-runner|agent-cli|agent-entry|connect-cli)\\.ts$' },
  { name: 'commands', path: '^src/(commands|config)/' },
  { name: 'ends', path: '^src/(agent|proxy)/' },
  { name: 'service', path: '^src/service/' },
  { name: 'hub', path: '^src/hub/' },
  { name: 'stream', path: '^src/stream/' },
  { name: 'mux', path: '^src/mux/' },
  { name: 'net', path: '^src/net/' },
  { name: 'credentials', path: '^src/(auth|tls)/' },
  { name: 'basics', path: '^src/(protocol|log|fs|runtime)/' },
  { name: 'errors', path: '^src/errors\\.ts$' },
];

// The hub's own roles, from top to bottom: the same rule inside src/hub/.
const hubLayers = [
  { name: 'hub wiring', path: '^src/hub/[^/]+\\.ts$' },
  { name: 'hub http', path: '^src/hub/http/' },
  { name: 'hub cluster', path: '^src/hub/cluster/' },
  { name: 'hub streams', path: '^src/hub/streams/' },
  { name: 'hub observe', path: '^src/hub/observe/' },
  { name: 'hub devices', path: '^src/hub/devices/' },
  { name: 'hub admission', path: '^src/hub/admission/' },
  { name: 'hub store', path: '^src/hub/store/' },
  { name: 'hub base', path: '^src/hub/base/' },
];

const downward = (list, prefix) =>
  list.slice(1).map((layer, i) => ({
    name: `${prefix}${layer.name.replace(/ /g, '-')}`,
    comment: `${layer.name} imports only the layers below it (${
      list
        .slice(i + 2)
        .map((l) => l.name)
        .join(', ') || 'none'
    })`,
    severity: 'error',
    from: { path: layer.path },
    to: { path: list.slice(0, i + 1).map((l) => l.path) },
  }));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import cycles, type-only imports included',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...downward(layers, 'layer-'),
    ...downward(hubLayers, 'layer-'),
    {
      name: 'layer-unknown',
      comment: 'every module belongs to a layer: add a new folder to the lists above',
      severity: 'error',
      from: { path: '^src/', pathNot: layers.map((l) => l.path) },
      to: {},
    },
    {
      name: 'hub-layer-unknown',
      comment: 'every hub module belongs to a hub layer: add a new folder to hubLayers',
      severity: 'error',
      from: { path: '^src/hub/', pathNot: hubLayers.map((l) => l.path) },
      to: {},
    },
    {
      name: 'ends-apart',
      comment: 'the device end and the service ends share code only through the layers below',
      severity: 'error',
      from: { path: '^src/agent/' },
      to: { path: '^src/proxy/' },
    },
    {
      name: 'ends-apart-2',
      comment: 'the device end and the service ends share code only through the layers below',
      severity: 'error',
      from: { path: '^src/proxy/' },
      to: { path: '^src/agent/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
  },
};
