import { defineConfig } from 'vitest/config';

// Two projects: `unit` is pure and runs anywhere (CI also runs it on Node 24);
// `kernel` needs root, network namespaces and real kernel features, and runs
// files serially because they share the host's nftables/BPF/cgroup subsystems.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.kernel.test.ts', 'node_modules/**'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['test/**/*.kernel.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
