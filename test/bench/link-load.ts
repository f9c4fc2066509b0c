/**
 * The load client of `npm run bench -- link`, a process of its own: `CONCURRENCY` keep-alive clients each sending
 * GET requests one after another to `URL` for `SECONDS`, after a one-second warm-up; prints one JSON line with the
 * requests answered 200, the requests per second, p50/p99 latency in ms and the other statuses seen.
 */
import * as Http from "node:http"

const [url, concurrencyText, secondsText] = process.argv.slice(2)
const concurrency = Number(concurrencyText)
const seconds = Number(secondsText)
const target = new URL(url!)
const agent = new Http.Agent({ keepAlive: true, maxSockets: concurrency })

const once = () =>
  new Promise<number>((resolve) => {
    const request = Http.request(
      { host: target.hostname, port: target.port, path: target.pathname + target.search, agent },
      (response) => {
        response.resume()
        response.on("end", () => resolve(response.statusCode ?? 0))
      }
    )
    request.on("error", () => resolve(0))
    request.end()
  })

const run = async (ms: number, record: boolean) => {
  const latencies: Array<number> = []
  const statuses: Record<string, number> = {}
  let ok = 0
  const until = performance.now() + ms
  let all = 0
  const client = async () => {
    while (performance.now() < until) {
      const start = performance.now()
      const status = await once()
      if (status === 200) all++
      if (!record) continue
      if (status === 200) {
        ok++
        latencies.push(performance.now() - start)
      } else statuses[status] = (statuses[status] ?? 0) + 1
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, client))
  return { ok, all, latencies, statuses, elapsed: performance.now() - started }
}

const warm = await run(1_000, false)
const { elapsed, latencies, ok, statuses } = await run(seconds * 1_000, true)
latencies.sort((a, b) => a - b)
const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil((p / 100) * latencies.length) - 1))] ?? NaN
console.log(JSON.stringify({ ok, rps: (ok / elapsed) * 1000, p50: at(50), p99: at(99), statuses, all: warm.all + ok }))
agent.destroy()
