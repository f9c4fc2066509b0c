/**
 * Secrets the hub hands out (API keys, agent tokens, share codes, link tokens) and the only forms in which it keeps
 * them: a SHA-256 and a short prefix. No I/O beyond the system's random source.
 */
import { createHash, randomBytes } from "node:crypto"

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/** `n` random base62 characters, by rejection sampling so every character is equally likely. */
export const randomBase62 = (n: number): string => {
  let out = ""
  while (out.length < n) {
    for (const byte of randomBytes(n * 2)) {
      // 248 = 4 × 62: bytes above it would favour the first characters.
      if (byte < 248 && out.length < n) out += BASE62[byte % 62]
    }
  }
  return out
}

/** Lowercase hex SHA-256 of a UTF-8 string. */
export const sha256Hex = (secret: string): string => createHash("sha256").update(secret, "utf8").digest("hex")

/** A new API key: `pc_` and 40 base62 characters (≈238 bits). */
export const generateApiKey = (): string => `pc_${randomBase62(40)}`

/** The part of an API key that may be shown and stored: `pc_` and its next 6 characters. */
export const apiKeyPrefix = (key: string): string => key.slice(0, 9)

/** Whether a string has the shape of an API key (says nothing of whether it is valid). */
export const looksLikeApiKey = (s: string): boolean => /^pc_[0-9A-Za-z]{32,}$/.test(s)

/** A new agent token: 32 random bytes as 64 hex characters. */
export const generateAgentToken = (): string => randomBytes(32).toString("hex")
