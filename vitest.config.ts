import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // 2-core machines: more workers only add contention with the Postgres and relay processes the tests start.
    maxWorkers: 2,
    minWorkers: 1,
    pool: "forks"
  }
})
