// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'bin/', '.bench-build/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    // Code that runs per stream, per frame or per log line. In this V8 (Node 20) an object
    // literal that starts with a spread and goes on with properties takes about a microsecond
    // per property, 10-50 times a literal or Object.assign (bench/object-spread.ts;
    // docs/benchmark.md, 2026-12-05 night).
    files: [
      'src/mux/**',
      'src/stream/**',
      'src/net/**',
      'src/log/**',
      'src/agent/**',
      'src/proxy/**',
      'src/hub/streams/**',
      'src/hub/devices/**',
      'src/hub/cluster/**',
    ],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ObjectExpression > SpreadElement:first-child + Property',
          message:
            'A spread followed by properties is slow in this V8 (about 1 µs per property): write the fields out, or use Object.assign({}, a, { ... }).',
        },
      ],
    },
  },
  {
    files: ['src/log/**', 'test/**', 'bench/**'],
    rules: { 'no-console': 'off' },
  },
  {
    files: ['eslint.config.js', 'vitest.config.ts', 'vitest.soak.config.ts'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The layer rules of npm run deps (CommonJS, as dependency-cruiser reads it).
    files: ['.dependency-cruiser.cjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      sourceType: 'commonjs',
      parserOptions: { projectService: false, project: null },
      globals: { module: 'writable' },
    },
  },
  {
    // Programs the tests run as child processes, and build scripts: plain JavaScript.
    files: ['test/fixtures/**/*.mjs', 'scripts/**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      parserOptions: { projectService: false, project: null },
      globals: { process: 'readonly', URL: 'readonly' },
    },
  },
);
