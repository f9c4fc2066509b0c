/**
 * The core read models as inline projections, one table each (`workspaces`, `api_keys`, `agents`, `services`; each
 * file holds its projection and its queries). They run inside the append transaction (the API reads its own writes),
 * take every timestamp from the event's `recorded_at` (so a rebuild reproduces them exactly), and sit behind
 * row-level security (see `Scoped.ts`).
 */
import type { Projection } from "../../core/Projection.ts"
import type { ProjectionSql } from "../../core/ProjectionSql.ts"
import * as Agents from "./Agents.ts"
import * as ApiKeys from "./ApiKeys.ts"
import * as Links from "./Links.ts"
import * as Services from "./Services.ts"
import * as Shares from "./Shares.ts"
import * as Workspaces from "./Workspaces.ts"

/** Every core read model, in the order they are applied. */
export const projections: ReadonlyArray<Projection<ProjectionSql>> = [
  Workspaces.projection,
  ApiKeys.projection,
  Agents.projection,
  Services.projection,
  Shares.projection,
  Links.projection
]
