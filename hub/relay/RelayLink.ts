/**
 * What the relay keeps for each agent connection (`Link`) and each tunnel (`Tunnel`), and how it runs the policy for a
 * connection (`Decisions`): at most `maxDecisions` decisions at once per connection (the rest wait in line),
 * `Open`/`Reach`/`Check` rate-limited per agent and a refusal charged ten times a grant, facts recorded in the
 * background, and every callback guarded so that an exception closes its connection, never the process.
 */
import { Cause, Effect, Exit, FiberId } from "effect"
import type { Fiber } from "effect"
import * as Protocol from "../../core/Protocol.ts"
import type { Message } from "../../core/Protocol.ts"
import { maskPeer } from "../../core/Mask.ts"
import type { RelayDenied, RelayPolicyService, RelayRefusal, Session, TunnelInfo } from "../../core/RelayPolicy.ts"
import * as TokenBucket from "../../core/TokenBucket.ts"
import { CLOSE_CODES } from "../../core/Transport.ts"
import type { Connection } from "../../core/Transport.ts"
import * as RelayWindow from "./RelayWindow.ts"

/** One agent connection. */
export interface Link {
  readonly connection: Connection
  readonly connectedAt: number
  state: "hello" | "auth" | "ready" | "closed"
  session: Session | undefined
  /** Stream id on this connection → the tunnel end it belongs to (odd: opened by the agent, even: by the hub). */
  readonly routes: Map<number, Tunnel>
  nextId: number
  /** Its connection window: the bytes it sent that the hub holds, and the frames the hub writes to it for others. */
  readonly ledger: RelayWindow.Ledger
  /** Tunnels it reaches through, and tunnels towards it (each capped at `maxStreams`). */
  reaching: number
  serving: number
  /** Tunnels it reaches through, by exposing link (capped at half of `maxStreams`, so one reacher cannot take all). */
  readonly pairs: Map<Link, number>
  /** When its outgoing buffer stopped draining (see `stallTimeout`), and its size at the last sample. */
  stalledSince: number | undefined
  lastBuffered: number
  /** Policy decisions running for this connection, and those waiting for one of its `maxDecisions` slots. */
  deciding: number
  readonly waiting: Array<() => void>
  /** Its timer fiber: the `Hello` deadline until `Welcome`, the heartbeat from then on. */
  timer: Fiber.RuntimeFiber<unknown, unknown> | undefined
}

/** One tunnel: a stream of the reaching link joined to a stream of the exposing link. */
export interface Tunnel {
  info: TunnelInfo | undefined
  readonly service: string
  readonly from: Link
  readonly fromStream: number
  to: Link | undefined
  /** The exposing link whose stream slots this tunnel holds, from the moment the policy picked it. */
  reserved: Link | undefined
  toStream: number
  state: "pending" | "open" | "closed"
  /** Frames from the reacher that arrived while the policy decided (bounded by the window and `MAX_PENDING`). */
  pending: Array<Message>
  pendingBytes: number
  bytesUp: number
  bytesDown: number
  /** Bytes received and not yet credited, per direction (counted on arrival, so pending data counts too). */
  inflightUp: number
  inflightDown: number
  endedUp: boolean
  endedDown: boolean
  /** The exposer confirmed its target connected (`Opened` is accepted once). */
  confirmed: boolean
  readonly openedAt: number
}

/** The link of a freshly accepted connection, whose connection window is `window` bytes. */
export const makeLink = (connection: Connection, window: number, connectedAt: number): Link => ({
  connection,
  connectedAt,
  state: "hello",
  session: undefined,
  routes: new Map(),
  nextId: 2,
  ledger: RelayWindow.make(connection, window),
  reaching: 0,
  serving: 0,
  pairs: new Map(),
  stalledSince: undefined,
  lastBuffered: 0,
  deciding: 0,
  waiting: [],
  timer: undefined
})

/** `link` broke the protocol: it is told why and closed (1002). */
export const violation = (link: Link, message: string) => {
  link.connection.send(new Protocol.Error({ code: "Protocol", message }))
  link.connection.close(CLOSE_CODES.Protocol, message)
}

/** Stops one of the relay's timer fibers without waiting for it. */
export const stop = (fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined) =>
  fiber?.unsafeInterruptAsFork(FiberId.none)

/** The code and message a denial is answered with; a policy that died rather than refused is `Unavailable`. */
export const denial = (exit: Exit.Exit<unknown, RelayDenied>): { readonly code: string; readonly message: string } => {
  if (Exit.isSuccess(exit)) return { code: "Unavailable", message: "ok" }
  const failure = Cause.failureOption(exit.cause)
  return failure._tag === "Some"
    ? { code: failure.value.code, message: failure.value.message }
    : { code: "Unavailable", message: "policy failed" }
}

/** Tokens a refused `Open`, `Reach` or `Check` costs its agent (see `charge`). */
const REFUSAL_COST = 10

/** The outcome of a policy decision. */
export type Decided<A> = Exit.Exit<A, RelayDenied>

/** Runs an effect in the relay's fiber set, which the relay's scope interrupts. */
export type RunFork = <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>

/** Options of `makeDecisions`. */
export interface DecisionsOptions {
  /** Decisions running at once per connection. */
  readonly maxDecisions: number
  /** Decisions one connection may have waiting. */
  readonly maxWaiting: number
  /** `Open`, `Reach` and `Check` per agent. */
  readonly openRate: { readonly perSecond: number; readonly burst: number }
  /** The clock in ms (the relay's Effect clock). */
  readonly now: () => number
}

/** How the relay runs work off the hot path for its connections. */
export interface Decisions {
  /** Runs an effect in the relay's fiber set. */
  readonly runFork: RunFork
  /** Calls `body` after `ms` on the clock, in a fiber of the relay (one per connection or check, never per frame). */
  readonly after: (ms: number, body: () => void) => Fiber.RuntimeFiber<void>
  /** Runs `body` for `link`; an exception closes that link (1011) and is logged, never reaching the event loop. */
  readonly guard: (link: Link, body: () => void) => void
  /**
   * Runs a policy effect and calls back with its outcome, at most `maxDecisions` at once per link: a flood of
   * requests waits in line instead of holding every database connection of the hub.
   */
  readonly decide: <A>(link: Link, effect: Effect.Effect<A, RelayDenied>, done: (exit: Decided<A>) => void) => void
  /** True when `link` has `maxWaiting` decisions waiting already. */
  readonly busy: (link: Link) => boolean
  /** Whether `link` may start one more `Open`/`Reach`/`Check` for `name`; a refusal is recorded by the policy. */
  readonly admit: (link: Link, name: string) => RelayRefusal | undefined
  /** Like `admit` for a `Reach` or `Check`, answering `request` with `RateLimited` when refused; true when admitted. */
  readonly admitRequest: (link: Link, request: number, name: string) => boolean
  /**
   * A refused `Open`/`Reach`/`Check` costs its agent `REFUSAL_COST` tokens instead of one: honest agents are rarely
   * refused, while one asking for names that do not exist (each refusal a database lookup) slows to a tenth of the
   * rate after its burst.
   */
  readonly charge: (link: Link, exit: Exit.Exit<unknown, RelayDenied>) => void
  /**
   * Records a fact in the background. Not retried here: the policy retries and spools what already happened itself
   * (PgRelayPolicy.ts, FactRecorder.ts), so a failure reaching this point is final and only logged.
   */
  readonly record: (name: string, effect: Effect.Effect<void, RelayDenied>) => void
}

/** Makes the decisions of a relay deciding through `policy`, its fibers forked by `runFork`. */
export const makeDecisions = (policy: RelayPolicyService, runFork: RunFork, options: DecisionsOptions): Decisions => {
  const opens = TokenBucket.make({ ...options.openRate, now: options.now })
  const guard = (link: Link, body: () => void) => {
    try {
      body()
    } catch (error) {
      runFork(Effect.logError(`relay: internal error on a connection from ${maskPeer(link.connection.remoteAddress)}`, error))
      link.connection.close(CLOSE_CODES.Internal, "internal error")
    }
  }
  const decide = <A>(link: Link, effect: Effect.Effect<A, RelayDenied>, done: (exit: Decided<A>) => void) => {
    const start = () => {
      link.deciding++
      runFork(effect).addObserver((exit) => {
        link.deciding--
        guard(link, () => done(exit))
        const next = link.waiting.shift()
        if (next) next()
      })
    }
    if (link.deciding < options.maxDecisions) start()
    else link.waiting.push(start)
  }
  const busy = (link: Link) => link.waiting.length >= options.maxWaiting
  const admit = (link: Link, name: string): RelayRefusal | undefined => {
    const refusal = busy(link) || !opens.take(link.session!.agentId) ? "rate_limited" : undefined
    if (refusal) policy.refused(link.session!, name, refusal)
    return refusal
  }
  return {
    runFork,
    after: (ms, body) => runFork(Effect.delay(Effect.sync(body), ms)),
    guard,
    decide,
    busy,
    admit,
    admitRequest: (link, request, name) => {
      if (!admit(link, name)) return true
      const error = new Protocol.Error({ code: "RateLimited", message: "too many requests; slow down", request })
      link.connection.send(error)
      return false
    },
    charge: (link, exit) => {
      if (Exit.isFailure(exit) && link.session) opens.take(link.session.agentId, REFUSAL_COST - 1)
    },
    record: (name, effect) => {
      runFork(effect.pipe(Effect.catchAllCause((cause) => Effect.logError(`relay: ${name} was not recorded`, cause))))
    }
  }
}
