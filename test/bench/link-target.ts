/** The HTTP service behind the link in `npm run bench -- link`: 200 with a small JSON body; prints {"port"} once listening. */
import * as Http from "node:http"

const body = Buffer.from(JSON.stringify({ ok: true, service: "bench", padding: "x".repeat(64) }))
const server = Http.createServer((request, response) => {
  request.resume()
  request.on("end", () => {
    response.writeHead(200, { "content-type": "application/json", "content-length": body.length })
    response.end(body)
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: (server.address() as { port: number }).port })))
