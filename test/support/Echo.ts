/** A TCP echo server on 127.0.0.1 for a test's scope (half-open aware), shared by the relay and gateway tests. */
import * as Net from "node:net"
import { Effect } from "effect"

/** Starts an echo server closed with the scope; resolves its port. */
export const echoServer = Effect.acquireRelease(
  Effect.async<Net.Server>((resume) => {
    const server = Net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on("error", () => {})
      socket.pipe(socket)
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.sync(() => server.close())
).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))
