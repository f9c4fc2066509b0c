/**
 * A TCP proxy on 127.0.0.1 that a test can cut (every connection dropped, new ones refused) and restore: an
 * unreachable Postgres without touching the server. It can also lose exactly one COMMIT reply (`cutAfterCommit`) and
 * play a server that stops answering (`stall`).
 */
import * as Net from "node:net"
import { Effect } from "effect"

/** A running proxy. */
export interface TcpProxy {
  readonly port: number
  /** Drops every connection and refuses new ones until `restore`. */
  readonly cut: () => void
  /** Ends a stall (its connections are dropped: bytes were lost) or a cut: new connections go through again. */
  readonly restore: () => void
  /**
   * Arms a one-shot fault: the next simple-protocol message that ends in `commit` is forwarded to the server, its
   * reply is held back, and both sides of that connection are then dropped, so the client cannot know whether the
   * transaction committed (it did). Other connections are untouched, unless `thenCut`: then, as with `cut`, every
   * connection is dropped and new ones refused until `restore`.
   */
  readonly cutAfterCommit: (options?: { readonly thenCut?: boolean }) => void
  /** Stops forwarding in both directions and on new connections, keeping every socket open: a server that hangs. */
  readonly stall: () => void
}

// A Query message's text ends with a NUL byte, so a pipelined `…;\ncommit` ends in exactly these bytes.
const COMMIT_END = "commit\u0000"

/** Proxies 127.0.0.1:<port> to `host:port` for the scope. */
export const start = (host: string, port: number) =>
  Effect.acquireRelease(
    Effect.async<{ proxy: TcpProxy; server: Net.Server; sockets: Set<Net.Socket> }>((resume) => {
      const sockets = new Set<Net.Socket>()
      let up = true
      let stalled = false
      let commitArmed = false
      let cutAfter = false
      const server = Net.createServer((client) => {
        if (!up) return client.destroy()
        const upstream = Net.connect(port, host)
        for (const s of [client, upstream]) {
          sockets.add(s)
          s.on("close", () => sockets.delete(s))
          s.on("error", () => {})
        }
        let tail = ""
        let replyLost = false
        client.on("data", (chunk: Buffer) => {
          if (stalled) return
          if (commitArmed) {
            const text = tail + chunk.toString("latin1")
            tail = text.slice(-COMMIT_END.length)
            if (text.includes(COMMIT_END)) {
              commitArmed = false
              replyLost = true
              if (cutAfter) up = false
              // Give the server the whole message, then drop both sides before any reply gets through.
              upstream.write(chunk, () =>
                setTimeout(() => {
                  client.destroy()
                  upstream.destroy()
                  if (cutAfter) for (const s of sockets) s.destroy()
                }, 100))
              return
            }
          }
          upstream.write(chunk)
        })
        upstream.on("data", (chunk: Buffer) => {
          if (!stalled && !replyLost) client.write(chunk)
        })
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
              if (stalled) for (const s of sockets) s.destroy()
              stalled = false
              up = true
            },
            cutAfterCommit: (options) => {
              commitArmed = true
              cutAfter = options?.thenCut ?? false
            },
            stall: () => {
              stalled = true
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
