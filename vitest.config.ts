import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // 2-core machines: more workers only add contention with the Postgres and relay processes the tests start.
    maxWorkers: 2,
    minWorkers: 1,
    pool: "forks",
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/**/*.int.test.ts", "test/e2e/**"],
          // One process runs file after file: a fresh process per file cost ~1.3 s of CPU each (loading vitest and
          // Effect again), 39 s against 10 s for test/core's 22 files. These files start no server, database or
          // process that outlives them, and restore what they change (process.env).
          isolate: false
        }
      },
      {
        extends: true,
        test: {
          name: "int",
          // Postgres-backed (*.int.test.ts) and end-to-end tests: one Postgres server for the run (globalSetup.ts),
          // each file in a process of its own, stopped with whatever the file started.
          include: ["test/**/*.int.test.ts", "test/e2e/**/*.test.ts"],
          globalSetup: ["test/support/globalSetup.ts"]
        }
      }
    ]
  }
})
