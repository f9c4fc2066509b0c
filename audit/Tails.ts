/**
 * The live tails of the audit API (`GET /v1/audit/tail`, audit/TailApi.ts): each open tail's filters and owner, held
 * in memory for its life only, and the log's head as it commits. One subscription to the log per hub, whatever the
 * number of browsers — started with the first tail, stopped a minute after the last one ended — wakes every waiting
 * request; each then reads only what its own key may see. Bounded: at most `perKey` tails per API key, `perWorkspace`
 * for the workspace keys of one workspace, and `total` in all, of which the last `operatorReserve` only operator keys
 * may take — so that one workspace cannot lock the others out, nor all of them the operator; a tail that no request
 * has named for `idleMs` (its browser closed, its network gone) is dropped.
 */
import { randomBytes } from "node:crypto"
import { Chunk, Deferred, Effect, Fiber, Option, Schedule, Stream, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import { EventLog } from "../core/EventLog.ts"
import type { Filters, Resolved } from "./Query.ts"

/** Tails one API key may hold open at once (several browser tabs; past it, 429 until one ends). */
export const PER_KEY = 8

/**
 * Tails the workspace keys of one workspace may hold open at once together: a tenth of `TOTAL`, so that it takes ten
 * workspaces' keys, not one's, to fill the hub for the others.
 */
export const PER_WORKSPACE = 100

/** Tails the hub holds open at once, all keys together. */
export const TOTAL = 1_000

/**
 * Of `TOTAL`, the tails only operator keys (the bootstrap key, `--scope operator`) may take: however many workspaces
 * fill the hub, the operator can still watch it (8 keys' worth of `PER_KEY`, room to spare).
 */
export const OPERATOR_RESERVE = 64

/**
 * A tail that no request named for this long is dropped. A browser asks again at once after each answer, and an
 * answer comes within 25 s (the longest wait), so a live one is never idle near this long.
 */
export const IDLE_MS = 60_000

/** One open tail. */
export interface Tail {
  /** Random: what the browser names it by. */
  readonly id: string
  readonly apiKeyId: string
  /** The workspace its key belongs to, when a workspace key's (an operator key's tails count in no workspace). */
  readonly workspaceId: string | undefined
  readonly filters: Filters
  readonly resolved: Resolved
  /** When a request last named it (ms). */
  lastAt: number
  /**
   * The position it has answered up to (or opened at): a later request may not ask from before it, so a tail reads
   * forward only and its one AuditRead (with the `after` it was opened at) says what it could read.
   */
  position: number
  /** Completed when a newer request of the same tail takes over (the older one answers at once). */
  turn: Deferred.Deferred<void>
}

/** The API key that opens a tail: as the audit API's caller has it (core/HubApi.ts `ApiKeyCaller`). */
export interface Owner {
  readonly apiKeyId: string
  readonly workspaceId: string
  readonly scope: "workspace" | "operator"
}

/** The registry of open tails and the head they wait on. */
export interface Tails {
  /** Opens a tail for the API key `owner`, or says which bound it would break. */
  readonly open: (
    owner: Owner,
    filters: Filters,
    resolved: Resolved
  ) => Effect.Effect<Tail | "key_full" | "workspace_full" | "hub_full">
  /** The open tail `id` of `apiKeyId` (another key's is not found), its turn taken by the caller. */
  readonly take: (id: string, apiKeyId: string) => Effect.Effect<Tail | "unknown" | "foreign">
  /** Ends a tail (a tail whose opening could not be recorded). */
  readonly close: (tail: Tail) => Effect.Effect<void>
  /** The log's head as last committed. */
  readonly head: Effect.Effect<number>
  /**
   * Waits until the head passes `position`, the tail's turn is taken by a newer request, or `deadline` (ms) passes;
   * true only in the first case.
   */
  readonly waitPast: (tail: Tail, position: number, deadline: number) => Effect.Effect<boolean>
  /** Tails open now. */
  readonly size: Effect.Effect<number>
}

/** Makes the registry; its sweep and its subscription end with the scope. */
export const make = (
  options: {
    readonly perKey?: number
    readonly perWorkspace?: number
    readonly total?: number
    readonly operatorReserve?: number
    readonly idleMs?: number
  } = {}
): Effect.Effect<Tails, never, EventLog | Scope.Scope> =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const scope = yield* Effect.scope
    const perKey = options.perKey ?? PER_KEY
    const perWorkspace = options.perWorkspace ?? PER_WORKSPACE
    const total = options.total ?? TOTAL
    const operatorReserve = Math.min(options.operatorReserve ?? OPERATOR_RESERVE, total)
    const idleMs = options.idleMs ?? IDLE_MS
    const tails = new Map<string, Tail>()
    const head = yield* SubscriptionRef.make(0)
    let watcher: Fiber.RuntimeFiber<void, never> | undefined
    let watching = false

    // The head as the log has it now: read at the start of each request, so that a tail never starts from a stale one.
    const refresh = Effect.orElseSucceed(Effect.map(log.head, (h) => h.position), () => 0).pipe(
      Effect.flatMap((position) => SubscriptionRef.update(head, (h) => Math.max(h, position)))
    )

    // One subscription for every tail: the log's own catch-up-then-notify, read only for its positions. Marked before
    // it starts, so that two tails opened at once start one.
    const watch = Effect.suspend(() => {
      if (watching) return Effect.void
      watching = true
      return SubscriptionRef.get(head).pipe(
        Effect.flatMap((from) =>
          log.subscribe(from).pipe(
            Stream.runForEachChunk((events) =>
              Option.match(Chunk.last(events), {
                onNone: () => Effect.void,
                onSome: (e) => SubscriptionRef.update(head, (h) => Math.max(h, e.position))
              })
            ),
            Effect.tapError((e) => Effect.logWarning("audit tail: the log's subscription failed; retrying", e)),
            Effect.retry(Schedule.spaced("1 second")),
            Effect.ignore,
            Effect.forkIn(scope)
          )
        ),
        Effect.map((fiber) => {
          watcher = fiber
        })
      )
    })

    const sweep = Effect.gen(function*() {
      const now = Date.now()
      for (const [id, t] of tails) if (now - t.lastAt > idleMs) tails.delete(id)
      if (tails.size === 0 && watcher !== undefined) {
        const fiber = watcher
        watcher = undefined
        watching = false
        yield* Fiber.interrupt(fiber)
      }
    })
    yield* Effect.repeat(sweep, Schedule.spaced(Math.min(5_000, idleMs))).pipe(Effect.forkScoped)

    const open: Tails["open"] = (owner, filters, resolved) =>
      Effect.gen(function*() {
        const turn = yield* Deferred.make<void>()
        const apiKeyId = owner.apiKeyId
        const workspaceId = owner.scope === "operator" ? undefined : owner.workspaceId
        // Checked and taken with no yield between: concurrent opens cannot both pass a bound.
        if (tails.size >= (workspaceId === undefined ? total : total - operatorReserve)) return "hub_full" as const
        let mine = 0
        let workspace = 0
        for (const t of tails.values()) {
          if (t.apiKeyId === apiKeyId) mine++
          if (workspaceId !== undefined && t.workspaceId === workspaceId) workspace++
        }
        if (mine >= perKey) return "key_full" as const
        if (workspace >= perWorkspace) return "workspace_full" as const
        const tail: Tail = {
          id: randomBytes(16).toString("hex"),
          apiKeyId,
          workspaceId,
          filters,
          resolved,
          lastAt: Date.now(),
          position: 0,
          turn
        }
        tails.set(tail.id, tail)
        yield* refresh
        yield* watch
        return tail
      })

    const take: Tails["take"] = (id, apiKeyId) =>
      Effect.gen(function*() {
        const tail = tails.get(id)
        if (tail === undefined) return "unknown" as const
        if (tail.apiKeyId !== apiKeyId) return "foreign" as const
        // The request before on this tail (a tab that asked again before its answer arrived) answers now.
        yield* Deferred.succeed(tail.turn, undefined)
        tail.turn = yield* Deferred.make<void>()
        tail.lastAt = Date.now()
        yield* refresh
        yield* watch
        return tail
      })

    const waitPast: Tails["waitPast"] = (tail, position, deadline) => {
      const turn = tail.turn
      const passed = head.changes.pipe(
        Stream.filter((h) => h > position),
        Stream.take(1),
        Stream.runDrain,
        Effect.as(true)
      )
      return Effect.raceFirst(passed, Effect.as(Deferred.await(turn), false)).pipe(
        Effect.timeoutOption(Math.max(0, deadline - Date.now())),
        Effect.map(Option.getOrElse(() => false)),
        // Whatever ends the wait, the tail was in use until now.
        Effect.ensuring(Effect.sync(() => {
          tail.lastAt = Date.now()
        }))
      )
    }

    return {
      open,
      take,
      close: (tail) => Effect.sync(() => void tails.delete(tail.id)),
      head: SubscriptionRef.get(head),
      waitPast,
      size: Effect.sync(() => tails.size)
    } satisfies Tails
  })
