/**
 * What several groups' bodies share: timestamps and labels.
 * Part of the hub API declared in core/HubApi.ts.
 */
import { Schema } from "effect"
import { isRecordable } from "../Text.ts"

/** A timestamp as ISO 8601 text in UTC (`2026-05-01T12:00:00.000Z`). */
export const Timestamp = Schema.String.annotations({ description: "ISO 8601, UTC" })

const labelRule = "label must be a non-empty string of at most 200 characters"

/** An agent's label (a host name, say): 1–200 characters, not blank, without U+0000 or a lone surrogate (logged). */
export const Label = Schema.String.annotations({ message: () => labelRule }).pipe(
  Schema.filter((label) => label.trim() !== "" && label.length <= 200, { message: () => labelRule }),
  Schema.filter(isRecordable, { message: () => "label must not contain U+0000 or an unpaired surrogate" })
)
