import { describe, it } from "@effect/vitest"
import * as ApiKeyDecider from "../../core/ApiKeyDecider.ts"
import * as E from "../../core/Events.ts"
import { ApiKeyId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import { sha256Hex } from "../../core/Secrets.ts"
import * as WorkspaceDecider from "../../core/WorkspaceDecider.ts"
import { spec } from "../support/DeciderSpec.ts"

const workspaceId = WorkspaceId.make(uuidv7())
const apiKeyId = ApiKeyId.make(uuidv7())
const keyHash = E.Sha256Hex.make(sha256Hex("pc_x"))

describe("WorkspaceDecider", () => {
  it("creates a workspace once, with a non-empty name", () => {
    const { given } = spec(WorkspaceDecider.decider)
    const created = new E.WorkspaceCreated({ workspaceId, name: "acme" })
    given([]).when({ _tag: "CreateWorkspace", workspaceId, name: "acme" }).then([created])
    given([created]).when({ _tag: "CreateWorkspace", workspaceId, name: "acme" }).thenFails("AlreadyExists")
    given([]).when({ _tag: "CreateWorkspace", workspaceId, name: "  " }).thenFails("Invalid")
  })
})

describe("ApiKeyDecider", () => {
  const { given } = spec(ApiKeyDecider.decider)
  const created = new E.ApiKeyCreated({ apiKeyId, workspaceId, name: "ci", prefix: "pc_AbC123", keyHash })
  it("creates a key as prefix and hash", () => {
    given([]).when({ _tag: "CreateApiKey", apiKeyId, workspaceId, name: "ci", prefix: "pc_AbC123", keyHash }).then([created])
  })
  it("revokes a key once; an unknown key is not found", () => {
    given([created]).when({ _tag: "RevokeApiKey", apiKeyId }).then([new E.ApiKeyRevoked({ apiKeyId })])
    given([created, new E.ApiKeyRevoked({ apiKeyId })]).when({ _tag: "RevokeApiKey", apiKeyId }).then([])
    given([]).when({ _tag: "RevokeApiKey", apiKeyId }).thenFails("NotFound")
  })
})
