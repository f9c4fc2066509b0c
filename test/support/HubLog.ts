/**
 * The hub's event log on a fresh test database: migrations applied, the same inline projections as the hub.
 */
import * as Layer from "effect/Layer"
import * as Main from "../../hub/Main.ts"
import * as Migrations from "../../hub/Migrations.ts"
import * as PgEventLog from "../../hub/PgEventLog.ts"
import * as TestDatabase from "./TestDatabase.ts"

/** EventLog + SqlClient + PgClient on a fresh migrated database with the hub's inline projections. */
export const layer = PgEventLog.layer({ inline: Main.InlineProjections }).pipe(
  Layer.provideMerge(Migrations.layer),
  Layer.provideMerge(TestDatabase.layer),
  Layer.orDie
)
