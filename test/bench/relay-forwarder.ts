/**
 * Bench anchor process: a plain Node TCP forwarder (each read written to the other side, no framing), what one of the
 * relay's three Node processes would cost if it only moved bytes. `--to PORT`; prints {"port"} of its listener.
 */
import * as Net from "node:net"

const i = process.argv.indexOf("--to")
const to = Number(process.argv[i + 1])

const server = Net.createServer({ noDelay: true, allowHalfOpen: true }, (a) => {
  const b = Net.connect({ port: to, host: "127.0.0.1", noDelay: true, allowHalfOpen: true })
  a.pipe(b)
  b.pipe(a)
  a.on("error", () => b.destroy())
  b.on("error", () => a.destroy())
})
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: (server.address() as Net.AddressInfo).port }))
})
process.stdin.on("data", () => {}).on("end", () => process.exit(0))
