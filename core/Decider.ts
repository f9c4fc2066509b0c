/**
 * The decider contract (emmett style): a command handler is a pure `decide(command, state)` returning the events to
 * append or a domain error, over a state folded from the stream's events by `evolve`.
 */
import { Either } from "effect"
import type { Event } from "./Events.ts"

/** Pure business rules of one aggregate kind. */
export interface Decider<Command, State, Error> {
  /** State of a stream that has no events yet. */
  readonly initialState: State
  /** Folds one event into the state; events of other aggregates leave it unchanged. */
  readonly evolve: (state: State, event: Event) => State
  /** The events a command produces in a state (possibly none: an idempotent no-op), or why it is refused. */
  readonly decide: (command: Command, state: State) => Either.Either<ReadonlyArray<Event>, Error>
}

/** Folds events into a decider's state from its initial state. */
export const fold = <C, S, E>(decider: Decider<C, S, E>, events: Iterable<Event>, from: S = decider.initialState): S => {
  let state = from
  for (const event of events) state = decider.evolve(state, event)
  return state
}
