/**
 * The `tcp` transport plugin: the msgpack codec's frames straight on the TCP (or TLS) stream, each behind its length,
 * after an HTTP upgrade on the hub's agent path (the carrier: TcpCarrier.ts). For deployments with no HTTP proxy in
 * front of the hub: a proxy that only passes WebSocket upgrades will refuse it.
 */
import type { Transport } from "../core/Transport.ts"
import { codec } from "./Msgpack.ts"
import { dial, TRANSPORT } from "./TcpCarrier.ts"

/** The `tcp` transport: dials a hub and upgrades to raw msgpack frames. */
export const transport: Transport = { name: TRANSPORT, dial: dial(codec) }
