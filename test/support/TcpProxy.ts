/**
 * A TCP proxy on 127.0.0.1 that a test can cut (every connection dropped, new ones refused) and restore: an
 * unreachable Postgres without touching the server.
 */
import * as Net from "node:net"
import { Effect } from "effect"

/** A running proxy. */
export interface TcpProxy {
  readonly port: number
  /** Drops every connection and refuses new ones until `restore`. */
  readonly cut: () => void
  readonly restore: () => void
}

/** Proxies 127.0.0.1:<port> to `host:port` for the scope. */
export const start = (host: string, port: number) =>
  Effect.acquireRelease(
    Effect.async<{ proxy: TcpProxy; server: Net.Server; sockets: Set<Net.Socket> }>((resume) => {
      const sockets = new Set<Net.Socket>()
      let up = true
      const server = Net.createServer((client) => {
        if (!up) return client.destroy()
        const upstream = Net.connect(port, host)
        for (const s of [client, upstream]) {
          sockets.add(s)
          s.on("close", () => sockets.delete(s))
          s.on("error", () => {})
        }
        client.pipe(upstream).pipe(client)
        client.on("close", () => upstream.destroy())
        upstream.on("close", () => client.destroy())
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          server,
          sockets,
          proxy: {
            port: (server.address() as Net.AddressInfo).port,
            cut: () => {
              up = false
              for (const s of sockets) s.destroy()
            },
            restore: () => {
              up = true
            }
          }
        })))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ proxy }) => proxy))
