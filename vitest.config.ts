import { readFileSync } from "node:fs"
import { defineConfig } from "vitest/config"

// CONNECT_TEST_EMBEDDED=1 (.ci/run sets it) runs Postgres-backed files a second time, on an embedded Postgres, in
// the same run: one scheduler keeps both workers busy where two runs in a row each ended on one long file.
const embedded = process.env.CONNECT_TEST_EMBEDDED === "1"
// Which ones, and why those (test/support/embedded.json; .ci/run checks each ran twice and every other one once): all
// of them twice was ~1/4 of the suite's time, most of it HTTP and relay files whose SQL the listed ones already run.
const embeddedFiles = (JSON.parse(readFileSync(new URL("./test/support/embedded.json", import.meta.url), "utf8")) as {
  files: Array<string>
}).files.map((entry) => (entry.endsWith("/") ? `${entry}**/*.int.test.ts` : entry))

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // 2-core machines: two threads for the unit project; the int files' forks are set in poolOptions below.
    maxWorkers: 2,
    minWorkers: 1,
    pool: "forks",
    // The unit project runs in threads that each take file after file (isolate: false). Vitest reuses workers or not
    // per pool, not per project: the forks pool's isolate: false would also have put the int files (which rely on
    // their process's exit to stop the servers they start) in one process. A fresh process per unit file cost ~1.3 s
    // of CPU each (loading vitest and Effect again): the unit project alone took 135 s (collect 82 s) that way, 105 s
    // (collect 12 s) in threads, one after the other at load 5-8. The threads pool runs beside the forks pool, so unit
    // files also fill the int files' waits.
    //
    // The int files (forks) spend much of their time waiting (commits, CLI and hub starts, timeouts): three at once took
    // the whole suite (.ci/run) to 441 and 559 s of vitest, against 540 and 602 s with two, at comparable loads (0.6-7,
    // two runs each); four were not tried.
    poolOptions: { threads: { isolate: false }, forks: { maxForks: 3 } },
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/**/*.int.test.ts", "test/e2e/**"],
          // One thread runs file after file (see poolOptions). These files start no server, database or process that
          // outlives them, and restore what they change (process.env, a copy per thread); a file that leaves state
          // behind shows up as a failure in a later file of the same thread (test/support/EventLogContract.ts).
          pool: "threads"
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
      },
      ...(embedded
        ? [{
          extends: true as const,
          test: {
            // globalSetup.ts starts an embedded Postgres for this project whatever TEST_DATABASE_URL says.
            name: "int-embedded",
            include: embeddedFiles,
            globalSetup: ["test/support/globalSetup.ts"]
          }
        }]
        : [])
    ]
  }
})
