/**
 * Checks (`connect reach --check`): a `Check` is rate-limited by a bucket of its own, far lower than `Open`'s since
 * each one makes the exposing agent probe its target (DNS, TCP, TLS, HTTP), then resolved and audited like a `Reach`
 * and sent to the exposing agent as a `Probe`. Its `ProbeResult` goes back to the checker as `CheckResult`; an
 * exposer that does not answer within `checkTimeoutMs`, or disconnects first, fails the check instead.
 */
import { Effect, Exit } from "effect"
import type { Fiber } from "effect"
import * as Protocol from "../../core/Protocol.ts"
import { RelayDenied } from "../../core/RelayPolicy.ts"
import type { RelayPolicyService } from "../../core/RelayPolicy.ts"
import * as TokenBucket from "../../core/TokenBucket.ts"
import { type Decisions, denial, type Link, stop } from "./RelayLink.ts"

/** A check waiting for the exposing agent's `ProbeResult`. */
interface Probe {
  /** The checker, and its request id. */
  readonly from: Link
  readonly request: number
  /** The exposing agent asked to probe. */
  readonly to: Link
  readonly timer: Fiber.RuntimeFiber<void>
}

/** Options of `make`. */
export interface ProbesOptions {
  /** Time the exposing agent has to answer, in ms. */
  readonly checkTimeoutMs: number
  /** `Check` per agent. */
  readonly checkRate: { readonly perSecond: number; readonly burst: number }
  /** The clock in ms. */
  readonly now: () => number
}

/** The checks of one relay. */
export interface Probes {
  readonly policy: RelayPolicyService
  readonly decisions: Decisions
  /** Authenticated links by agent: the exposers a check can go to. */
  readonly agents: ReadonlyMap<string, Link>
  readonly checkTimeoutMs: number
  readonly checks: TokenBucket.TokenBuckets
  /** Checks waiting, by the hub's probe request id. */
  readonly waiting: Map<number, Probe>
  next: number
}

/** Makes the (empty) checks of a relay. */
export const make = (
  policy: RelayPolicyService,
  decisions: Decisions,
  agents: ReadonlyMap<string, Link>,
  options: ProbesOptions
): Probes => ({
  policy,
  decisions,
  agents,
  checkTimeoutMs: options.checkTimeoutMs,
  checks: TokenBucket.make({ ...options.checkRate, now: options.now }),
  waiting: new Map(),
  next: 1
})

/** A `Check` from `link`: rate-limited, resolved (and audited) like a `Reach`, then probed by the exposing agent. */
export const check = (probes: Probes, link: Link, message: Protocol.Check) => {
  if (!probes.checks.take(link.session!.agentId)) {
    probes.policy.refused(link.session!, message.name, "rate_limited")
    return link.connection.send(
      new Protocol.Error({ code: "RateLimited", message: "too many checks; slow down", request: message.request })
    )
  }
  if (!probes.decisions.admitRequest(link, message.request, message.name)) return
  const offline = (service: string) =>
    new RelayDenied({ code: "AgentOffline", message: `the agent exposing ${service} is offline` })
  const route = probes.policy.resolveReach(link.session!, message.name).pipe(
    Effect.flatMap((to) => {
      const target = probes.agents.get(to.agentId)
      return !target || target.state !== "ready"
        ? Effect.fail(offline(to.service))
        : Effect.succeed({ target, service: to.service })
    })
  )
  probes.decisions.decide(link, route, (exit) => {
    probes.decisions.charge(link, exit)
    if (link.state === "closed") return
    if (Exit.isFailure(exit) || exit.value.target.state !== "ready") {
      const { code, message: text } = Exit.isFailure(exit) ? denial(exit) : offline(message.name)
      return link.connection.send(new Protocol.Error({ code, message: text, request: message.request }))
    }
    probe(probes, link, message.request, exit.value.target, exit.value.service)
  })
}

/** Asks `target` to probe `service` for `from`'s check `request`, failing the check if no answer comes in time. */
const probe = (probes: Probes, from: Link, request: number, target: Link, service: string) => {
  const id = probes.next++
  const timer = probes.decisions.after(probes.checkTimeoutMs, () => {
    if (!probes.waiting.delete(id) || from.state === "closed") return
    from.connection.send(
      new Protocol.Error({
        code: "Unavailable",
        message: `the agent exposing ${service} did not answer the check within ${probes.checkTimeoutMs / 1000} s`,
        request
      })
    )
  })
  probes.waiting.set(id, { from, request, to: target, timer })
  target.connection.send(new Protocol.Probe({ request: id, service }))
}

/** A `ProbeResult` from `link`, passed back to the checker as its `CheckResult`. */
export const result = (probes: Probes, link: Link, message: Protocol.ProbeResult) => {
  const pending = probes.waiting.get(message.request)
  // A late answer (after the timeout) or one from another agent is dropped.
  if (!pending || pending.to !== link) return
  probes.waiting.delete(message.request)
  stop(pending.timer)
  if (pending.from.state !== "closed") {
    pending.from.connection.send(new Protocol.CheckResult({ request: pending.request, report: message.report }))
  }
}

/** `link` disconnected: its checks are dropped, and the checks it was probing for fail. */
export const closed = (probes: Probes, link: Link) => {
  for (const [id, p] of probes.waiting) {
    if (p.from !== link && p.to !== link) continue
    probes.waiting.delete(id)
    stop(p.timer)
    if (p.to === link && p.from.state !== "closed") {
      const message = "the exposing agent disconnected during the check"
      p.from.connection.send(new Protocol.Error({ code: "AgentOffline", message, request: p.request }))
    }
  }
}

/** The relay stops: every check waiting is dropped. */
export const stopAll = (probes: Probes) => {
  for (const p of probes.waiting.values()) stop(p.timer)
  probes.waiting.clear()
}
