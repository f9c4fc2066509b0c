/**
 * When a connection's corked frames leave: the first time in a turn of the event loop, at the end of the I/O callback
 * that sent them (nextTick), so a lone request — the latency path — is never held; after that, in the same turn, at
 * the turn's end (setImmediate, the check phase right after the poll phase's callbacks), so that the frames sent from
 * the turn's other callbacks leave together in one write (and one batch message where the peer reads batches).
 *
 * Why both: each write on loopback also runs the receiver's TCP stack, and flushing at the end of every callback gave
 * every local socket read its own message and syscall — 8 pgbench clients' queries readable together at a reaching
 * agent cost 8 writes there and 8 reads at the hub (2 messages to the hub per round trip at 16 streams). Deferring
 * every flush to setImmediate instead held each frame back while the process handled the rest of its turn, and on a
 * loaded 2-core machine a preemption in between: pgbench -S through the relay fell from 302 to 61 tps (median of 3
 * interleaved rounds, same run, load average ~28).
 */

/** Returns `schedule`: call it when the connection corks, and `uncork` (which flushes and uncorks) runs as above. */
export const flusher = (uncork: () => void, corked: () => boolean): (() => void) => {
  let wroteThisTurn = false
  const endTurn = () => {
    wroteThisTurn = false
    if (corked()) uncork()
  }
  const tick = () => {
    if (wroteThisTurn) return
    wroteThisTurn = true
    setImmediate(endTurn)
    uncork()
  }
  return () => process.nextTick(tick)
}
