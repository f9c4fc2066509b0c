/**
 * The field schemas events are built from: digests and prefixes of secrets, instants, ports, counts, addresses,
 * service names, and the small vocabularies shared by several aggregates.
 */
import { Schema } from "effect"

/** A SHA-256 digest as 64 lowercase hex characters: how every token, key, code and link secret is recorded. */
export const Sha256Hex = Schema.String.pipe(
  Schema.pattern(/^[0-9a-f]{64}$/, { message: () => "expected a SHA-256 digest as 64 lowercase hex characters" }),
  Schema.brand("Sha256Hex")
).annotations({ identifier: "Sha256Hex" })
/** A SHA-256 digest as 64 lowercase hex characters. */
export type Sha256Hex = typeof Sha256Hex.Type

/** The displayable head of an API key, `pc_` plus 5 to 8 characters (e.g. `pc_AbC123`), never the whole key. */
export const ApiKeyPrefix = Schema.String.pipe(
  Schema.pattern(/^pc_[A-Za-z0-9_-]{5,8}$/, { message: () => "expected an API key prefix: pc_ and 5 to 8 characters" })
).annotations({ identifier: "ApiKeyPrefix" })

/** At most the first 11 characters of a presented credential: enough to correlate, too short to replay. */
export const SecretPrefix = Schema.String.pipe(Schema.maxLength(11)).annotations({ identifier: "SecretPrefix" })

/** An instant, encoded as an ISO 8601 string. */
export const Timestamp = Schema.Date

/** A TCP port, 1 to 65535. */
export const Port = Schema.Int.pipe(Schema.between(1, 65535)).annotations({ identifier: "Port" })

/** A byte count or a duration in milliseconds: a non-negative integer. */
export const Count = Schema.NonNegativeInt

/** An IP address as the hub saw it (v4 or v6 text form). */
export const Ip = Schema.String.annotations({ identifier: "Ip" })

/** A service name, unique per workspace: a letter or digit, then up to 62 letters, digits, `.`, `_` or `-`. */
export const ServiceName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, {
    message: () => "expected a service name: a letter or digit, then up to 62 letters, digits, '.', '_' or '-'"
  })
).annotations({ identifier: "ServiceName" })

/** An HTTP method a public link may allow. */
export const HttpMethod = Schema.Literal("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
/** An HTTP method a public link may allow. */
export type HttpMethod = typeof HttpMethod.Type

/** What a share lets the other workspace do with the shared services; `reach` opens tunnels to them. */
export const SharePermission = Schema.Literal("reach")
/** What a share lets the other workspace do with the shared services. */
export type SharePermission = typeof SharePermission.Type

/** Whether an access attempt was let through. */
export const AccessOutcome = Schema.Literal("allowed", "denied")

/** An optional field, exact (absent, never `undefined`) so that the encoded data is plain JSON and round-trips. */
export const optional = <S extends Schema.Schema.Any>(schema: S) => Schema.optionalWith(schema, { exact: true })
