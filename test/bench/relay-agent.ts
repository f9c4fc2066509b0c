/**
 * Bench agent process: `--url U --transport ws|msgpack|tcp --token T` plus `--expose NAME=HOST:PORT` or
 * `--reach NAME`; prints {"ready":true} or {"port"} of the reach listener once up.
 */
import * as Readline from "node:readline"
import { Effect } from "effect"
import * as HubClient from "../../agent/HubClient.ts"
import * as Msgpack from "../../transports/Msgpack.ts"
import * as Tcp from "../../transports/Tcp.ts"
import * as Ws from "../../transports/Ws.ts"

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? undefined : process.argv[i + 1]
}

const program = Effect.gen(function*() {
  const transport = arg("transport") === "ws" ? Ws.transport : arg("transport") === "tcp" ? Tcp.transport : Msgpack.transport
  const client = yield* HubClient.connect({ url: arg("url")!, transport, token: arg("token")! })
  const expose = arg("expose")
  const reach = arg("reach")
  if (expose) {
    const [name, target] = expose.split("=") as [string, string]
    const [host, port] = target.split(":") as [string, string]
    yield* client.expose(name, host, Number(port))
    console.log(JSON.stringify({ ready: true }))
  } else if (reach) {
    const listener = yield* client.reach(reach)
    console.log(JSON.stringify({ port: listener.port }))
  }
  yield* Effect.async<void>((resume) => {
    Readline.createInterface({ input: process.stdin })
      .on("line", (line) => {
        if (line === "stats") console.log(JSON.stringify({ rss: process.memoryUsage().rss, ...client.stats() }))
      })
      .on("close", () => resume(Effect.void))
  })
})

Effect.runPromise(Effect.scoped(program)).then(() => process.exit(0), (error) => {
  console.error(String(error))
  process.exit(1)
})
