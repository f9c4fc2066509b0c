import { describe, it } from "@effect/vitest"
import * as ApiKeyDecider from "../../core/ApiKeyDecider.ts"
import * as E from "../../core/Events.ts"
import { ApiKeyId, uuidv7, WorkspaceId } from "../../core/Ids.ts"
import { sha256Hex } from "../../core/Secrets.ts"
import { spec } from "../support/DeciderSpec.ts"

const workspaceId = WorkspaceId.make(uuidv7())
const apiKeyId = ApiKeyId.make(uuidv7())
const keyHash = E.Sha256Hex.make(sha256Hex("pc_x"))
const create = (name: string) => ({ _tag: "CreateApiKey", apiKeyId, workspaceId, name, prefix: "pc_AbC123", keyHash }) as const
const created = new E.ApiKeyCreated({ apiKeyId, workspaceId, name: "ci", prefix: "pc_AbC123", keyHash, scope: "workspace" })
const revoked = new E.ApiKeyRevoked({ apiKeyId })
const { given } = spec(ApiKeyDecider.decider)

describe("ApiKeyDecider", () => {
  it("creates a key as prefix and hash, its name trimmed and not empty", () => {
    given([]).when(create("ci")).then([created])
    given([]).when(create("  ci ")).then([created])
    given([]).when(create(" ")).thenFails("Invalid")
  })

  it("creates a workspace key unless told to make an operator key", () => {
    given([]).when({ ...create("ops"), scope: "operator" }).then([
      new E.ApiKeyCreated({ apiKeyId, workspaceId, name: "ops", prefix: "pc_AbC123", keyHash, scope: "operator" })
    ])
  })

  it("creates a key once, also after it was revoked", () => {
    given([created]).when(create("again")).thenFails("AlreadyExists")
    given([created, revoked]).when(create("again")).thenFails("AlreadyExists")
  })

  it("revokes a key once; an unknown key is not found", () => {
    given([created]).when({ _tag: "RevokeApiKey", apiKeyId }).then([revoked])
    given([created, revoked]).when({ _tag: "RevokeApiKey", apiKeyId }).then([])
    given([]).when({ _tag: "RevokeApiKey", apiKeyId }).thenFails("NotFound")
  })
})
