/**
 * Bench target process: one TCP port on 127.0.0.1 whose behaviour the client picks with its first byte —
 * "S" sink (count to EOF, answer the count as 8 bytes), "G" + u64 n (send n bytes, then EOF), "E" echo.
 * Prints {"port"} on stdout; `stats` on stdin prints open sockets.
 */
import * as Net from "node:net"
import * as Readline from "node:readline"

const block = Buffer.alloc(1024 * 1024, 0x5a)
let open = 0

const server = Net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
  open++
  socket.on("error", () => {})
  socket.on("close", () => open--)
  socket.once("readable", function first() {
    const head: Buffer | null = socket.read(1)
    if (head === null) return socket.once("readable", first)
    const mode = String.fromCharCode(head[0]!)
    if (mode === "E") {
      socket.pipe(socket)
    } else if (mode === "S") {
      let count = 0
      socket.on("data", (c: Buffer) => (count += c.byteLength))
      socket.on("end", () => {
        const answer = Buffer.alloc(8)
        answer.writeBigUInt64BE(BigInt(count))
        socket.end(answer)
      })
    } else if (mode === "G") {
      const readCount = () => {
        const n: Buffer | null = socket.read(8)
        if (n === null) return socket.once("readable", readCount)
        let left = Number(n.readBigUInt64BE())
        const pump = () => {
          while (left > 0) {
            const chunk = left >= block.byteLength ? block : block.subarray(0, left)
            left -= chunk.byteLength
            if (!socket.write(chunk)) return socket.once("drain", pump)
          }
          socket.end()
        }
        pump()
        socket.resume()
      }
      readCount()
    } else {
      socket.destroy()
    }
  })
})
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: (server.address() as Net.AddressInfo).port }))
})
Readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "stats") console.log(JSON.stringify({ open }))
}).on("close", () => process.exit(0))
