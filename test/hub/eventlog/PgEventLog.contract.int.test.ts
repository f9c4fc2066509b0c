/**
 * The EventLog contract against the Postgres log as the hub runs it: a fresh migrated database, the hub's inline
 * projections.
 */
import * as HubLog from "../../support/HubLog.ts"
import { eventLogContract } from "../../support/EventLogContract.ts"

eventLogContract("PgEventLog", HubLog.layer)
