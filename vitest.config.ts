import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The soak test runs on its own: npm run soak (vitest.soak.config.ts).
    exclude: ['test/soak/**', '**/node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real processes and sockets; two cores, so keep parallelism modest.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
