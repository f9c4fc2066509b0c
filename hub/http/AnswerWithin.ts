/**
 * The bound on how long an API change waits for the event log before the hub answers 503. An agent's CLI gives up
 * after 15 s (agent/HubApi.ts), saying only that the request may have reached the hub; under a stalled log (another
 * session holding the append lock, a Postgres that stopped answering) the hub answers first, and says why. The writer commits an append it has taken
 * into a batch even when its caller gave up, so the answer says the change may still be recorded, and how to know.
 */
import { Duration, Effect } from "effect"
import * as HubApi from "../../core/HubApi.ts"

/** How long a change may wait for the log: under the 15 s an agent's CLI waits, with room for the request's transit. */
export const ANSWER_WITHIN = Duration.seconds(10)

/** Answers 503 when `effect` has not ended within {@link ANSWER_WITHIN}; `after` says what may still be recorded. */
export const answerWithin = (after: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, {
    duration: ANSWER_WITHIN,
    onTimeout: () =>
      new HubApi.Unavailable({
        message: `the hub's event log did not answer within ${Duration.format(ANSWER_WITHIN)}; ${after}`
      })
  })
