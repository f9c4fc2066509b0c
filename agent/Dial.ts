/**
 * How the agent dials its hub from its state: the hub's agent gateway, with the transport plugin it chose (ws when
 * the name is unknown), its token and its label.
 */
import type { Transport } from "../core/Transport.ts"
import * as Msgpack from "../transports/Msgpack.ts"
import * as Ws from "../transports/Ws.ts"
import * as HubApi from "./HubApi.ts"
import * as HubClient from "./HubClient.ts"
import type * as State from "./State.ts"

/** Transport plugins the agent can dial with, by `--transport` name. */
export const transports: ReadonlyMap<string, Transport> = new Map([
  [Ws.transport.name, Ws.transport],
  [Msgpack.transport.name, Msgpack.transport]
])

/** Dials and authenticates to the hub of `state`; the connection closes with the scope. */
export const dial = (
  state: Pick<State.AgentState, "hubUrl" | "transport" | "token" | "label">,
  agentVersion: string
) =>
  HubClient.connect({
    url: HubApi.gatewayUrl(state.hubUrl),
    transport: transports.get(state.transport) ?? Ws.transport,
    token: state.token,
    ...(state.label === undefined ? {} : { label: state.label }),
    agentVersion
  })
