import { describe, it } from "@effect/vitest"
import * as E from "../../core/Events.ts"
import { uuidv7, WorkspaceId } from "../../core/Ids.ts"
import * as WorkspaceDecider from "../../core/WorkspaceDecider.ts"
import { spec } from "../support/DeciderSpec.ts"

const workspaceId = WorkspaceId.make(uuidv7())

describe("WorkspaceDecider", () => {
  it("creates a workspace once, with a non-empty name", () => {
    const { given } = spec(WorkspaceDecider.decider)
    const created = new E.WorkspaceCreated({ workspaceId, name: "acme" })
    given([]).when({ _tag: "CreateWorkspace", workspaceId, name: "acme" }).then([created])
    given([created]).when({ _tag: "CreateWorkspace", workspaceId, name: "acme" }).thenFails("AlreadyExists")
    given([]).when({ _tag: "CreateWorkspace", workspaceId, name: "  " }).thenFails("Invalid")
  })
})
