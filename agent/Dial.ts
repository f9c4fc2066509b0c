/**
 * How the agent dials its hub from its state: the hub's agent gateway, with the transport plugin it chose (ws when
 * the name is unknown), its token and its label, verifying a `wss://` hub with the CAs of the command's `HubTls.Trust`.
 */
import { Effect } from "effect"
import { TransportError } from "../core/Transport.ts"
import type { Transport } from "../core/Transport.ts"
import * as HubTls from "../transports/HubTls.ts"
import * as Msgpack from "../transports/Msgpack.ts"
import * as Tcp from "../transports/Tcp.ts"
import * as Ws from "../transports/Ws.ts"
import * as HubApi from "./HubApi.ts"
import * as HubClient from "./HubClient.ts"
import type * as State from "./State.ts"

/** Transport plugins the agent can dial with, by `--transport` name. */
export const transports: ReadonlyMap<string, Transport> = new Map([
  [Ws.transport.name, Ws.transport],
  [Msgpack.transport.name, Msgpack.transport],
  [Tcp.transport.name, Tcp.transport]
])

/** `transport` dialling with the trusted CAs; a connection it cannot open says why in words the user acts on. */
const trusting = (transport: Transport, trust: HubTls.TrustShape): Transport => ({
  name: transport.name,
  dial: (url) =>
    transport.dial(url, HubTls.caOption(trust)).pipe(
      Effect.mapError((e) =>
        e.reason === "Open" && e.cause !== undefined
          ? new TransportError({ reason: "Open", message: `cannot open ${url}: ${HubTls.describe(e.cause, trust)}`, cause: e.cause })
          : e
      )
    )
})

/** Dials and authenticates to the hub of `state`; the connection closes with the scope. */
export const dial = (
  state: Pick<State.AgentState, "hubUrl" | "transport" | "token" | "label">,
  agentVersion: string
) =>
  Effect.flatMap(HubTls.Trust, (trust) =>
    HubClient.connect({
      url: HubApi.gatewayUrl(state.hubUrl),
      transport: trusting(transports.get(state.transport) ?? Ws.transport, trust),
      token: state.token,
      ...(state.label === undefined ? {} : { label: state.label }),
      agentVersion
    }))
