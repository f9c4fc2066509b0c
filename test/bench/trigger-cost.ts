/**
 * The insert cost of the chain check trigger (migration 0006): the writer's multi-row insert of the same rows into two
 * fresh databases, one with `events_check_chain` enabled and one with it disabled, batches interleaved so both see the
 * same machine load. Usage: tsx test/bench/trigger-cost.ts ADMIN_URL [rows]
 */
import { Effect, Redacted } from "effect"
import * as PgClient from "@effect/sql-pg/PgClient"
import Pg from "pg"
import { hashEnvelope, jsonbText, type Envelope } from "../../core/HashChain.ts"
import { uuidv7 } from "../../core/Ids.ts"
import * as Migrations from "../../hub/db/Migrations.ts"

const admin = process.argv[2] ?? "postgres://postgres@127.0.0.1:5432/postgres"
const total = Number(process.argv[3] ?? 20_000)

const dbUrl = (name: string) => {
  const u = new URL(admin)
  u.pathname = `/${name}`
  return u.toString()
}

const main = async () => {
  const a = new Pg.Client({ connectionString: admin })
  await a.connect()
  const names = [`trig_on_${Date.now()}`, `trig_off_${Date.now()}`]
  for (const n of names) await a.query(`create database ${n}`)
  try {
    for (const n of names) {
      await Effect.runPromise(Migrations.run.pipe(Effect.provide(PgClient.layer({ url: Redacted.make(dbUrl(n)) })), Effect.scoped))
    }
    const on = new Pg.Client({ connectionString: dbUrl(names[0]!) })
    const off = new Pg.Client({ connectionString: dbUrl(names[1]!) })
    await on.connect()
    await off.connect()
    await off.query(`alter table events disable trigger events_check_chain`)
    const data = jsonbText({ tunnelId: uuidv7(), bytesIn: 123456, bytesOut: 654321, durationMs: 4242, reason: "closed" })
    const meta = jsonbText({ actor: { kind: "agent", id: uuidv7() }, sourceIp: "203.0.113.7", hubId: uuidv7() })
    const results: Array<string> = []
    let position = 0
    let prev: Uint8Array = new Uint8Array(32)
    for (const batch of [1, 16, 64]) {
      const times = { on: 0, off: 0 }
      let rows = 0
      while (rows < total / (batch === 1 ? 10 : 1)) {
        const envs: Array<Envelope & { hash: Buffer }> = []
        const recordedAt = new Date(Math.floor(Date.now()))
        for (let i = 0; i < batch; i++) {
          position += 1
          const e: Envelope = {
            position, id: uuidv7(), stream: `s-${position % 100}`, version: Math.floor(position / 100) + 1, workspaceId: null,
            type: "TunnelClosed", dataJson: data, metaJson: meta, recordedAt, prevHash: prev
          }
          const hash = hashEnvelope(e)
          envs.push({ ...e, hash })
          prev = hash
        }
        const params = [
          envs.map((e) => e.position), envs.map((e) => e.id), envs.map((e) => e.stream), envs.map((e) => e.version),
          envs.map(() => null), envs.map((e) => e.type), envs.map((e) => e.dataJson).join("\n"),
          envs.map((e) => e.metaJson).join("\n"), recordedAt.toISOString(),
          envs.map((e) => Buffer.from(e.prevHash)), envs.map((e) => e.hash)
        ]
        const text = `insert into events (position, id, stream, version, workspace_id, type, data, meta, recorded_at, prev_hash, hash)
          select p, i, s, v, w, t, d::jsonb, m::jsonb, $9::timestamptz, ph, h
            from unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[], $5::uuid[], $6::text[],
                        string_to_array($7::text, E'\\n'), string_to_array($8::text, E'\\n'), $10::bytea[], $11::bytea[])
                 as u(p, i, s, v, w, t, d, m, ph, h)`
        // Alternate which database goes first, so neither always meets a warmer cache.
        const order = rows % 2 === 0 ? (["on", "off"] as const) : (["off", "on"] as const)
        for (const which of order) {
          const c = which === "on" ? on : off
          const t0 = performance.now()
          await c.query("begin")
          await c.query({ text, values: params })
          await c.query("commit")
          times[which] += performance.now() - t0
        }
        rows += batch
      }
      const per = (ms: number) => ((ms * 1000) / rows).toFixed(1)
      results.push(
        `rows per insert ${String(batch).padStart(2)}: ${rows} rows; without trigger ${per(times.off)} µs/row, with ${per(times.on)} µs/row ` +
          `(+${per(times.on - times.off)} µs/row, ${(((times.on - times.off) / times.off) * 100).toFixed(0)}%)`
      )
    }
    console.log((await on.query("select version()")).rows[0].version.split(" on ")[0])
    for (const r of results) console.log(r)
    await on.end()
    await off.end()
  } finally {
    for (const n of names) await a.query(`drop database if exists ${n} with (force)`)
    await a.end()
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
