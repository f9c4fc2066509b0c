/**
 * A fuzzing campaign against a running hub on 127.0.0.1, bounded in time: strangers sending random frames (before
 * and after `Hello`), pairs of colluding authenticated agents sending random Open/Data/Credit/End/Reset sequences on
 * shared streams (credits and data beyond the windows included, a reader that stops reading), raw bytes after a
 * WebSocket upgrade, and random HTTP requests. It records how the hub answered and every answer outside the
 * contract, with the frames that led to it.
 */
import * as Net from "node:net"
import { WebSocket } from "ws"
import * as Protocol from "../../core/Protocol.ts"
import type { Message } from "../../core/Protocol.ts"
import { CLOSE_CODES } from "../../core/Transport.ts"
import * as Fuzzer from "./Fuzzer.ts"
import type { Frame, HttpKeys, Rng } from "./Fuzzer.ts"

/**
 * Close codes the hub may end a connection with (`CLOSE_CODES` less 1011), and 1007, which `ws` itself sends for a
 * text frame that is not UTF-8. 1006 (cut without a close frame) is allowed only for a client that stopped reading:
 * the hub terminates those (4010) rather than wait for a close frame they will not read.
 */
export const AllowedCloseCodes: ReadonlySet<number> = new Set([
  CLOSE_CODES.Normal,
  CLOSE_CODES.GoingAway,
  CLOSE_CODES.Protocol,
  1007,
  CLOSE_CODES.FrameTooLarge,
  CLOSE_CODES.Unauthorized,
  CLOSE_CODES.UnsupportedVersion,
  CLOSE_CODES.Timeout,
  CLOSE_CODES.Replaced,
  CLOSE_CODES.SlowConsumer
])

/** What a campaign saw. */
export interface Findings {
  /** Close codes the hub ended connections with, as the clients saw them, with counts. */
  readonly closeCodes: Map<number, number>
  /** HTTP statuses answered, with counts (0: cut without an answer, -1: no answer in time). */
  readonly httpStatuses: Map<number, number>
  /** Answers outside the contract, each with what led to it (seed, actor, last frames). */
  readonly problems: Array<string>
  frames: number
  connections: number
  requests: number
  /** The longest a well-formed HTTP request waited for its answer, in ms. */
  slowestAnswerMs: number
}

/** Empty findings. */
export const makeFindings = (): Findings => ({
  closeCodes: new Map(),
  httpStatuses: new Map(),
  problems: [],
  frames: 0,
  connections: 0,
  requests: 0,
  slowestAnswerMs: 0
})

const count = (map: Map<number, number>, key: number) => map.set(key, (map.get(key) ?? 0) + 1)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The frames a client sent last, kept for a reproduction. */
const TrailLength = 24

/** A fuzzing WebSocket client: sends any frame, decodes what it can of the hub's answers, remembers its trail. */
interface Client {
  readonly ws: WebSocket
  readonly codec: "ws" | "msgpack"
  readonly trail: Array<string>
  /** Messages received that the codec could decode. */
  readonly onMessage: (listener: (m: Message) => void) => void
  /** Resolves with the hub's close code and reason (never for a close this client started). */
  readonly closed: Promise<{ readonly code: number; readonly reason: string }>
  /** True once closed (by either side). */
  readonly isClosed: () => boolean
  /** True once the client stopped reading at least once (the hub may then cut it: 1006). */
  paused: boolean
  readonly send: (frame: Frame, binary: boolean) => void
  /** Closes from this side (1000); such a close is not a finding. */
  readonly close: () => void
}

const dial = (url: string, subprotocols: Array<string>, codec: "ws" | "msgpack", findings: Findings): Promise<Client> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url, subprotocols, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 })
    const listeners: Array<(m: Message) => void> = []
    let ours = false
    let done = false
    let onClosed!: (info: { code: number; reason: string }) => void
    const closed = new Promise<{ code: number; reason: string }>((r) => (onClosed = r))
    ws.on("error", (error) => {
      if (!done) reject(error)
    })
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      let message: Message
      try {
        message = Fuzzer.codecs[codec].decode(isBinary ? data : data.toString("utf8"))
      } catch {
        return
      }
      for (const listener of listeners) listener(message)
    })
    ws.on("close", (code: number, reason: Buffer) => {
      done = true
      if (!ours) onClosed({ code, reason: reason.toString() })
    })
    ws.on("open", () => {
      done = true
      findings.connections++
      const client: Client = {
        ws,
        codec,
        trail: [],
        onMessage: (listener) => listeners.push(listener),
        closed,
        isClosed: () => ws.readyState !== WebSocket.OPEN,
        paused: false,
        send: (frame, binary) => {
          if (ws.readyState !== WebSocket.OPEN) return
          client.trail.push(`${binary ? "bin" : "txt"} ${Fuzzer.describeFrame(frame)}`)
          if (client.trail.length > TrailLength) client.trail.shift()
          findings.frames++
          ws.send(frame, { binary, compress: false })
        },
        close: () => {
          ours = true
          ;(ws as unknown as { _socket?: Net.Socket })._socket?.resume()
          ws.terminate()
        }
      }
      resolve(client)
    })
  })

/** Checks how the hub closed `client`, recording the code and, for a code outside the contract, the trail. */
const judgeClose = (findings: Findings, client: Client, info: { code: number; reason: string }, who: string) => {
  count(findings.closeCodes, info.code)
  const allowed = AllowedCloseCodes.has(info.code) || (info.code === 1006 && client.paused)
  if (!allowed) {
    findings.problems.push(
      `${who}: closed with ${info.code} "${info.reason}" after:\n    ${client.trail.join("\n    ")}`
    )
  }
}

/** Pauses or resumes reading the client's socket (a reader that stops reading). */
const setReading = (client: Client, reading: boolean) => {
  const socket = (client.ws as unknown as { _socket?: Net.Socket })._socket
  if (!socket) return
  if (reading) socket.resume()
  else {
    client.paused = true
    socket.pause()
  }
}

/** Whether the frame goes out as binary: mostly the codec's kind, sometimes the other (a violation by itself). */
const binaryFor = (rng: Rng, codec: "ws" | "msgpack", frame: Frame) =>
  typeof frame === "string" ? false : codec === "msgpack" ? !rng.chance(0.03) : rng.chance(0.2)

/** Options of a campaign. */
export interface CampaignOptions {
  /** `ws://127.0.0.1:port/...` of the agent endpoint. */
  readonly url: string
  readonly rng: Rng
  /** Wall-clock time (ms since epoch) at which every actor stops. */
  readonly deadline: number
  readonly findings: Findings
}

/**
 * Strangers: connections that send random frames, without `Hello` or after one with `token` (its own agent, so
 * that replacing it harms no one), each closed by the hub or by itself after a short wait.
 */
export const strangers = async (options: CampaignOptions & { readonly token: string; readonly label: string }) => {
  const { rng, findings } = options
  let n = 0
  while (Date.now() < options.deadline) {
    const codec = rng.chance(0.5) ? "ws" : "msgpack"
    const subprotocol = rng.chance(0.95) ? Fuzzer.codecs[codec].subprotocol : rng.pick(["", "connect.ws.v2", "x"])
    let client: Client
    try {
      client = await dial(options.url, subprotocol === "" ? [] : [subprotocol], codec, findings)
    } catch {
      // A refused upgrade (unknown subprotocol) is the HTTP fuzzer's to judge.
      n++
      continue
    }
    const who = `seed ${rng.root} ${options.label} #${n++} (${codec})`
    let hubClosed: { code: number; reason: string } | undefined
    void client.closed.then((info) => (hubClosed = info))
    if (rng.chance(0.5)) {
      client.send(Fuzzer.encode(codec, new Protocol.Hello({ protocol: 1, token: options.token, transport: codec, agentVersion: "fuzz" })), codec === "msgpack")
      await sleep(20)
    }
    for (let i = 0, frames = 1 + rng.int(20); i < frames && !client.isClosed(); i++) {
      const frame = Fuzzer.randomFrame(rng, codec, { token: options.token })
      client.send(frame, binaryFor(rng, codec, frame))
      if (rng.chance(0.3)) await sleep(1)
    }
    await Promise.race([client.closed, sleep(150)])
    if (hubClosed) judgeClose(findings, client, hubClosed, who)
    else client.close()
  }
}

/** Per-stream bookkeeping of a colluding agent. */
interface StreamState {
  /** Bytes received and not yet credited. */
  received: number
  /** Bytes sent and not yet credited back by the hub. */
  sent: number
}

/**
 * Two colluding agents (`tokens`), each exposing a name and opening streams to the other's and its own, sending
 * random Open/Data/Credit/End/Reset/Opened sequences on the streams they share: honest credits and dishonest ones,
 * bursts beyond the stream and connection windows, and pauses in reading. A closed agent reconnects. Most
 * connections are "careful" (they fill the windows exactly and stop reading, which is what makes the hub hold
 * bytes, and break a rule only now and then); the rest are reckless and break one within a few frames.
 */
export const colludingPair = async (
  options: CampaignOptions & { readonly tokens: readonly [string, string]; readonly label: string }
) => {
  const { findings } = options
  const names = [`${options.label}-a`, `${options.label}-b`]
  const run = async (side: 0 | 1) => {
    const rng = options.rng.fork(`${options.label}-${side}`)
    let generation = 0
    while (Date.now() < options.deadline) {
      const codec = rng.chance(0.5) ? "ws" : "msgpack"
      let client: Client
      try {
        client = await dial(options.url, [Fuzzer.codecs[codec].subprotocol], codec, findings)
      } catch (error) {
        findings.problems.push(`seed ${rng.root} ${options.label}-${side}: could not connect: ${String(error)}`)
        await sleep(100)
        continue
      }
      const who = `seed ${options.rng.root} ${options.label}-${side} generation ${generation++} (${codec})`
      const streams = new Map<number, StreamState>()
      const careful = rng.chance(0.7)
      let welcomed = false
      let sentTotal = 0
      const forget = (stream: number) => {
        sentTotal -= streams.get(stream)?.sent ?? 0
        streams.delete(stream)
      }
      client.onMessage((m) => {
        if (m._tag === "Welcome") welcomed = true
        else if (m._tag === "Open") streams.set(m.stream, { received: 0, sent: 0 })
        else if (m._tag === "Data") {
          const s = streams.get(m.stream)
          if (s) s.received += m.payload.byteLength
        } else if (m._tag === "Credit") {
          const s = streams.get(m.stream)
          if (s) {
            s.sent -= m.bytes
            sentTotal -= m.bytes
          }
        } else if (m._tag === "Reset" || (m._tag === "Error" && m.stream !== undefined)) forget(m.stream!)
      })
      let hubClosed: { code: number; reason: string } | undefined
      void client.closed.then((info) => (hubClosed = info))
      const send = (message: Message) => client.send(Fuzzer.encode(codec, message), codec === "msgpack")
      send(new Protocol.Hello({ protocol: 1, token: options.tokens[side], transport: codec, agentVersion: "fuzz" }))
      const started = Date.now()
      while (!welcomed && !client.isClosed() && Date.now() - started < 5_000) await sleep(5)
      if (!welcomed) {
        if (hubClosed) judgeClose(findings, client, hubClosed, who)
        else client.close()
        continue
      }
      send(new Protocol.Expose({ request: 1, name: names[side]!, host: "127.0.0.1", port: 9 }))
      let nextOdd = 1
      const known = () => [...streams.keys()]
      const someStream = () => {
        const ids = known()
        return ids.length > 0 && rng.chance(0.9) ? rng.pick(ids) : rng.chance(0.5) ? 1 + 2 * rng.int(nextOdd) : 2 + 2 * rng.int(8)
      }
      let steps = 0
      while (!client.isClosed() && Date.now() < options.deadline) {
        steps++
        // A careful connection breaks a rule about once in 200 steps; otherwise it stays within every window.
        const reckless = !careful || rng.chance(0.005)
        const roll = rng.int(100)
        if (roll < 14) {
          const stream = !reckless || rng.chance(0.85)
            ? nextOdd
            : rng.chance(0.5)
            ? someStream()
            : rng.pick(Fuzzer.hostileNumbers.filter((n) => Number.isInteger(n) && n > 0 && n < 2 ** 32))
          if (stream === nextOdd) nextOdd += 2
          const service = !reckless || rng.chance(0.8) ? names[rng.int(2)]! : Fuzzer.randomString(rng, false)
          if (!streams.has(stream)) streams.set(stream, { received: 0, sent: 0 })
          send(new Protocol.Open({ stream, service }))
        } else if (roll < 44) {
          // Bursts: one chunk, a handful, a whole stream window, or past it.
          const stream = someStream()
          const size = rng.pick([1, 100, 4096, Protocol.MAX_CHUNK, Protocol.MAX_CHUNK])
          const burst = rng.pick([1, 1, 4, 16, Protocol.STREAM_WINDOW / Protocol.MAX_CHUNK, Protocol.STREAM_WINDOW / Protocol.MAX_CHUNK + 2])
          const payload = Buffer.alloc(size, 0x61 + (steps % 26))
          const state = streams.get(stream)
          for (let i = 0; i < burst && !client.isClosed(); i++) {
            if (!reckless) {
              // Exactly up to the windows: what an agent at full speed towards a stalled reader does.
              const room = Math.min(Protocol.STREAM_WINDOW - (state?.sent ?? Infinity), Protocol.CONNECTION_WINDOW - sentTotal)
              if (!state || room <= 0) break
              const n = Math.min(room, size)
              state.sent += n
              sentTotal += n
              send(Protocol.Data.make({ stream, payload: payload.subarray(0, n) }))
            } else {
              if (state) {
                state.sent += size
                sentTotal += size
              }
              send(Protocol.Data.make({ stream, payload }))
            }
            // The fuzzer must not become the process that holds the memory: wait while its own buffer is full.
            while (client.ws.bufferedAmount > 8 * 1024 * 1024 && !client.isClosed()) await sleep(2)
          }
        } else if (roll < 64) {
          const stream = someStream()
          const state = streams.get(stream)
          const honest = state !== undefined && state.received > 0 && (!reckless || rng.chance(0.7))
          if (honest || reckless) {
            const bytes = honest ? Math.min(state!.received, Protocol.STREAM_WINDOW) : 1 + rng.int(Protocol.STREAM_WINDOW)
            if (honest) state!.received -= bytes
            send(Protocol.Credit.make({ stream, bytes }))
          }
        } else if (roll < 70) {
          send(Protocol.End.make({ stream: someStream() }))
        } else if (roll < 75) {
          const stream = someStream()
          forget(stream)
          send(Protocol.Reset.make({ stream, reason: Fuzzer.randomString(rng, false) }))
        } else if (roll < 79) {
          send(Protocol.Opened.make({ stream: someStream() }))
        } else if (roll < 81) {
          send(new Protocol.Error({ code: "ECONNREFUSED", message: "fuzz", stream: someStream() }))
        } else if (roll < 91 && !reckless) {
          send(new Protocol.Ping({ nonce: steps }))
        } else if (roll < 88) {
          const tag = rng.pick(["Expose", "Unexpose", "Reach", "Check", "Ping", "Pong", "ProbeResult"])
          const frame = Fuzzer.randomFrame(rng, codec, { tag, stream: someStream })
          client.send(frame, binaryFor(rng, codec, frame))
        } else if (roll < 91) {
          const frame = Fuzzer.randomFrame(rng, codec, { stream: someStream })
          client.send(frame, binaryFor(rng, codec, frame))
        } else if (roll < 94) {
          // Stop reading for a while; now and then for good (the hub must cut it, not feed it).
          setReading(client, false)
          if (rng.chance(0.8)) {
            await sleep(20 + rng.int(careful ? 800 : 300))
            setReading(client, true)
          }
        } else {
          await sleep(rng.int(20))
        }
        if (steps % 8 === 0) await sleep(1)
      }
      await Promise.race([client.closed, sleep(50)])
      if (hubClosed) judgeClose(findings, client, hubClosed, who)
      else client.close()
      await sleep(20)
    }
  }
  await Promise.all([run(0), run(1)])
}

/**
 * Raw bytes after a WebSocket upgrade: mutated WebSocket frames (unmasked, reserved bits and opcodes, 2^63 lengths,
 * fragments without a start) and plain garbage. The hub must cut or close these; nothing else is asserted here.
 */
export const rawUpgrades = async (options: CampaignOptions & { readonly port: number; readonly path: string }) => {
  const { rng } = options
  while (Date.now() < options.deadline) {
    await new Promise<void>((resolve) => {
      const socket = Net.connect({ port: options.port, host: "127.0.0.1" })
      const timer = setTimeout(() => socket.destroy(), 300)
      socket.on("error", () => {})
      socket.on("close", () => {
        clearTimeout(timer)
        resolve()
      })
      socket.once("data", () => {
        for (let i = 0, n = 1 + rng.int(4); i < n; i++) socket.write(rawWsFrame(rng))
      })
      socket.write(
        `GET ${options.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${rng.bytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n` +
          `Sec-WebSocket-Protocol: ${rng.pick(["connect.ws.v1", "connect.msgpack.v1"])}\r\n\r\n`
      )
      options.findings.connections++
    })
  }
}

/** One WebSocket frame as the wire has it, mostly broken. */
const rawWsFrame = (rng: Rng): Buffer => {
  const payload = rng.bytes(rng.int(64))
  const first = rng.chance(0.5) ? 0x80 | rng.pick([0x1, 0x2, 0x0, 0x8, 0x9, 0xa]) : rng.int(256)
  const masked = rng.chance(0.8)
  const lengthForm = rng.int(4)
  const header = lengthForm === 0
    ? Buffer.from([first, (masked ? 0x80 : 0) | payload.length])
    : lengthForm === 1
    ? Buffer.from([first, (masked ? 0x80 : 0) | 126, payload.length >> 8, payload.length & 0xff])
    : lengthForm === 2
    ? Buffer.from([first, (masked ? 0x80 : 0) | 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    : rng.bytes(2 + rng.int(10))
  return Buffer.concat([header, masked ? rng.bytes(4) : Buffer.alloc(0), payload])
}

/**
 * Time a well-formed request has to be answered: above the hub's own 10 s request deadline, so that no answer means
 * none was coming (a busy 2-core machine answered some requests only after 3 s).
 */
const AnswerWithinMs = 15_000

/** What a raw HTTP exchange produced. */
interface HttpAnswer {
  readonly status: number
  readonly headers: string
  readonly body: string
}

/** Sends `raw` and reads until the server closes; status 0 when it closed without an answer, -1 after `ms`. */
const exchange = (port: number, raw: Buffer, ms: number) =>
  new Promise<HttpAnswer>((resolve) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    const chunks: Array<Buffer> = []
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      socket.destroy()
    }, ms)
    socket.on("data", (c: Buffer) => chunks.push(c))
    socket.on("error", () => {})
    socket.on("close", () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString("latin1")
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(text)
      if (!match) return resolve({ status: timedOut ? -1 : 0, headers: "", body: "" })
      const split = text.indexOf("\r\n\r\n")
      const headers = split < 0 ? text : text.slice(0, split)
      let body = split < 0 ? "" : text.slice(split + 4)
      if (/\r\ntransfer-encoding:\s*chunked/i.test(headers)) body = dechunk(body)
      resolve({ status: Number(match[1]), headers, body: Buffer.from(body, "latin1").toString("utf8") })
    })
    socket.write(raw)
  })

const dechunk = (text: string): string => {
  let out = ""
  let i = 0
  while (i < text.length) {
    const end = text.indexOf("\r\n", i)
    if (end < 0) break
    const size = parseInt(text.slice(i, end), 16)
    if (!(size > 0)) break
    out += text.slice(end + 2, end + 2 + size)
    i = end + 2 + size + 2
  }
  return out
}

/** True for the API's JSON error shape, `{"error":{"code","message"}}` (or the health check's `{"status"}`). */
const isJsonError = (body: string): boolean => {
  try {
    const value = JSON.parse(body) as { error?: { code?: unknown; message?: unknown }; status?: unknown }
    return (typeof value.error?.code === "string" && typeof value.error.message === "string") || typeof value.status === "string"
  } catch {
    return false
  }
}

/**
 * Random HTTP requests, `concurrency` at a time: every answer must be below 500 (503 only as the documented JSON
 * "Unavailable"), a 4xx must carry a JSON error body, and a well-formed request must get an answer.
 */
export const httpRequests = async (
  options: Omit<CampaignOptions, "url"> & { readonly port: number; readonly keys: HttpKeys; readonly concurrency: number }
) => {
  const { findings } = options
  const worker = async (index: number) => {
    const rng = options.rng.fork(`http-${index}`)
    let n = 0
    while (Date.now() < options.deadline) {
      const request = Fuzzer.httpCase(rng, options.keys)
      // A malformed request may hang until the hub's own deadline (10 s): give up on it sooner.
      const started = Date.now()
      const answer = await exchange(options.port, request.raw, request.malformed ? 3_000 : AnswerWithinMs)
      if (!request.malformed && answer.status > 0) findings.slowestAnswerMs = Math.max(findings.slowestAnswerMs, Date.now() - started)
      findings.requests++
      count(findings.httpStatuses, answer.status)
      const who = `seed ${options.rng.root} http-${index} #${n++}: ${request.method} ${request.path.slice(0, 80)}${request.malformed ? " (malformed)" : ""}`
      const problem = judgeHttp(request, answer)
      if (problem) findings.problems.push(`${who}: ${problem}\n    request: ${JSON.stringify(request.raw.subarray(0, 400).toString("latin1"))}`)
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, (_, i) => worker(i)))
}

const judgeHttp = (request: Fuzzer.HttpCase, answer: HttpAnswer): string | undefined => {
  if (answer.status <= 0) {
    return request.malformed ? undefined : answer.status === 0 ? "cut without an answer" : `no answer within ${AnswerWithinMs / 1000} s`
  }
  if (answer.status === 503) return isJsonError(answer.body) ? undefined : `503 without a JSON body: ${answer.body.slice(0, 200)}`
  if (answer.status >= 500) return `${answer.status}: ${answer.body.slice(0, 300)}`
  if (answer.status >= 400 && request.method !== "HEAD" && !isJsonError(answer.body)) {
    return `${answer.status} without a JSON error body: ${JSON.stringify(answer.headers.slice(0, 200))} ${JSON.stringify(answer.body.slice(0, 200))}`
  }
  return undefined
}

/** A summary line of the findings, for the test's output. */
export const summary = (findings: Findings): string => {
  const codes = [...findings.closeCodes].sort((a, b) => a[0] - b[0]).map(([c, n]) => `${c}×${n}`).join(" ")
  const statuses = [...findings.httpStatuses].sort((a, b) => a[0] - b[0]).map(([c, n]) => `${c}×${n}`).join(" ")
  return `${findings.connections} connections, ${findings.frames} frames (closes: ${codes || "none"}), ` +
    `${findings.requests} HTTP requests (${statuses || "none"}; slowest answer ${findings.slowestAnswerMs} ms), ` +
    `${findings.problems.length} problems`
}
