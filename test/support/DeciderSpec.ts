/**
 * given(events).when(command).then(events) specs for deciders, emmett style.
 */
import { Either } from "effect"
import { expect } from "vitest"
import { type Decider, fold } from "../../core/Decider.ts"
import type { DomainError } from "../../core/DomainError.ts"
import type { Event } from "../../core/Events.ts"

/** A spec builder for one decider. */
export const spec = <C, S>(decider: Decider<C, S, DomainError>) => ({
  given: (events: ReadonlyArray<Event>) => ({
    when: (command: C) => {
      const result = decider.decide(command, fold(decider, events))
      return {
        then: (expected: ReadonlyArray<Event>) => {
          expect(Either.isRight(result) ? result.right : result.left).toEqual(expected)
        },
        thenFails: (reason: DomainError["reason"]) => {
          expect(Either.isLeft(result) ? result.left.reason : "no error").toBe(reason)
        }
      }
    }
  })
})
