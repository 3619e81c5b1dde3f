import { defineConfig } from 'vitest/config';

// One project per workspace package plus the cross-package end-to-end suite in test/.
// Tests import sources directly through the "@colo/source" export condition, so a stale dist/ never hides a change.
const conditions = ['@colo/source'];
const globalSetup = [new URL('./test/support/global-tmp.ts', import.meta.url).pathname];

function pkg(name: string) {
  return {
    resolve: { conditions },
    ssr: { resolve: { conditions } },
    test: {
      name,
      root: `packages/${name}`,
      include: ['test/**/*.test.ts'],
      testTimeout: 60_000,
      globalSetup,
    },
  };
}

export default defineConfig({
  test: {
    projects: [
      pkg('stream'),
      pkg('domain'),
      pkg('qemu'),
      pkg('coordinator'),
      pkg('cli'),
      // The simulation's CI run is two CPU-bound files (docs/simulation.md): they run side by side, one per core,
      // in a group of their own after the other projects (a project with its own worker count needs its own group).
      { ...pkg('sim'), test: { ...pkg('sim').test, maxWorkers: 2, sequence: { groupOrder: 1 } } },
      {
        resolve: { conditions },
        ssr: { resolve: { conditions } },
        test: {
          name: 'e2e',
          root: 'test',
          include: ['**/*.test.ts'],
          testTimeout: 600_000,
          globalSetup,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
