import { defineConfig } from 'vitest/config';

/** `npm run soak`: the soak test alone (SOAK_SECONDS, SOAK_CONCURRENCY). */
export default defineConfig({
  test: {
    include: ['test/soak/**/*.test.ts'],
    testTimeout: 3_600_000,
    hookTimeout: 60_000,
  },
});
