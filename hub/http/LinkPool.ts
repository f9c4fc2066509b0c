/**
 * Keep-alive connections from the hub to the services behind public links: one node `http.Agent` per link (a link is
 * onto one service, so this is the service's pool for that link) whose connections are relay streams (RelayLocal.ts),
 * each one a tunnel on the log that names the link. Connections are reused across requests and clients, closed after
 * `idleMs` unused; a link's pool is dropped when it is revoked or expires.
 */
import * as Http from "node:http"
import type * as Net from "node:net"
import type { RelayService } from "../relay/Relay.ts"
import * as RelayLocal from "../relay/RelayLocal.ts"

/** The pool of one link. */
export interface Pool {
  readonly agent: Http.Agent
  /** Opens a stream to the link's service outside the pool (an upgrade keeps its connection for itself). */
  readonly open: () => Net.Socket
}

/** Options of `make`. */
export interface PoolOptions {
  /** Connections one link keeps to its service at most (default 128; requests beyond wait for one). */
  readonly maxSockets?: number
  /** Idle connections kept per link (default 32). */
  readonly maxFree?: number
  /** A kept connection unused this long is closed (default 30 s). */
  readonly idleMs?: number
}

/** The pools of every link. */
export interface Pools {
  /** The pool of link `linkId` onto `service` of `workspaceId`, made on first use. */
  readonly get: (link: { readonly linkId: string; readonly workspaceId: string; readonly service: string }) => Pool
  /** Closes link `linkId`'s pool, if it has one (revoked, expired). */
  readonly drop: (linkId: string) => void
  /** Closes every pool. */
  readonly closeAll: () => void
}

/** Makes the pools over `relay`. */
export const make = (relay: RelayService, options: PoolOptions = {}): Pools => {
  const pools = new Map<string, Pool & { readonly reach: RelayLocal.LocalReach }>()
  const drop = (linkId: string) => {
    const pool = pools.get(linkId)
    if (!pool) return
    pools.delete(linkId)
    pool.agent.destroy()
    pool.reach.close()
  }
  return {
    get: (link) => {
      const existing = pools.get(link.linkId)
      if (existing) return existing
      const reach = RelayLocal.attach(relay, {
        agentId: link.linkId,
        workspaceId: link.workspaceId,
        link: { linkId: link.linkId }
      })
      const open = () => reach.open(link.service, link.service) as unknown as Net.Socket
      const agent = new Http.Agent({
        keepAlive: true,
        maxSockets: options.maxSockets ?? 128,
        maxFreeSockets: options.maxFree ?? 32,
        timeout: options.idleMs ?? 30_000,
        scheduling: "lifo"
      })
      // Every connection of the pool is a relay stream to the service: node's client speaks HTTP/1.1 over it.
      ;(agent as unknown as { createConnection: () => Net.Socket }).createConnection = open
      const pool = { agent, open, reach }
      pools.set(link.linkId, pool)
      return pool
    },
    drop,
    closeAll: () => {
      for (const linkId of [...pools.keys()]) drop(linkId)
    }
  }
}
