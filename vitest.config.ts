import { defineConfig } from 'vitest/config';

// Multi-process tests spawn real workers over real sockets; on 2-core machines they
// need generous timeouts and must not all run at once.
// Tests import the packages' TypeScript sources (the 'source' export condition); the processes
// they start run the built packages (dist/, which `pnpm test` builds first), as users do.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'tests/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
  },
});
