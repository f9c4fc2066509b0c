#!/usr/bin/env node
// The `connect` executable: runs the TypeScript sources, compiled into one module when it can be (bin/Bundle.js),
// else through tsx's loader (no build step either way).
import { bundle } from "./Bundle.js"

const compiled = await bundle()
if (compiled) {
  // As under tsx: stack traces name the TypeScript sources.
  process.setSourceMapsEnabled(true)
  await import(compiled)
} else {
  const { register } = await import("tsx/esm/api")
  register()
  await import("./connect.ts")
}
