// The console's building blocks: formatting, masking, loading state, charts and tables (views.js builds its pages
// from them). Every string from the log is rendered as a text node or an attribute value by Preact, never as markup.
import { html, useEffect, useState } from "/ui/vendor/preact-htm.js"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

const isIPv4 = (a) => /^\d{1,3}(\.\d{1,3}){3}$/.test(a)

/** An address masked already: the hub masks every address a workspace key reads (audit/Reveal.ts). */
const MASKED = /^(?:(?:::ffff:)?\d{1,3}\.\d{1,3}\.\d{1,3}\.x|[0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/48|\(not an address\))$/

/**
 * An address masked as the CLI masks it (core/Mask.ts): IPv4 to its /24, IPv6 to its /48. Only for display of what an
 * operator key receives in full: a workspace key never receives an address unmasked.
 */
export const maskIp = (a) => {
  if (typeof a !== "string" || MASKED.test(a)) return a
  if (isIPv4(a)) return a.replace(/\.\d+$/, ".x")
  const mapped = /^::ffff:(\d+\.\d+\.\d+)\.\d+$/i.exec(a)
  if (mapped) return `::ffff:${mapped[1]}.x`
  if (!a.includes(":")) return "(not an address)"
  const [head, tail] = a.split("::")
  const left = head === "" ? [] : head.split(":")
  const right = tail === undefined || tail === "" ? [] : tail.split(":")
  const groups = tail === undefined ? left : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right]
  return `${groups.slice(0, 3).map((g) => parseInt(g, 16).toString(16)).join(":")}::/48`
}

export const maskEvent = (e) => {
  const data = { ...(e.data ?? {}) }
  for (const k of ["ip", "previousIp", "newIp"]) if (typeof data[k] === "string") data[k] = maskIp(data[k])
  const meta = { ...(e.meta ?? {}) }
  if (typeof meta.sourceIp === "string") meta.sourceIp = maskIp(meta.sourceIp)
  return { ...e, data, meta }
}

export const time = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—")
export const ago = (iso) => {
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000)
  if (s < 120) return `${s} s ago`
  if (s < 7200) return `${Math.round(s / 60)} min ago`
  if (s < 172800) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} days ago`
}
export const bytes = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`)

/** A short line about an event, from the fields most types have. */
export const summary = (e) => {
  const d = e.data ?? {}
  const parts = []
  if (d.label) parts.push(`agent ${d.label}`)
  if (d.name) parts.push(`service ${d.name}`)
  if (d.serviceName) parts.push(`service ${d.serviceName}`)
  if (d.requestedName) parts.push(`asked for ${d.requestedName}`)
  if (d.reason) parts.push(`reason ${d.reason}`)
  if (d.kind) parts.push(String(d.kind))
  if (d.count !== undefined) parts.push(`×${d.count}`)
  return parts.join(" · ")
}

export const outcomeOf = (e) => {
  const d = e.data ?? {}
  if (["AgentAuthFailed", "ApiKeyAuthFailed", "ReachDenied", "ConsoleSignInFailed"].includes(e.type)) return "denied"
  if ((e.type === "ShareAccessed" || e.type === "LinkAccessed") && d.outcome === "denied") return "denied"
  if (e.type === "TunnelClosed" && d.reason === "connect_failed") return "denied"
  return "allowed"
}

export const useLoad = (load, deps) => {
  const [state, setState] = useState({ loading: true })
  useEffect(() => {
    let live = true
    setState({ loading: true })
    load().then((value) => live && setState({ value }), (error) => live && setState({ error: error.message }))
    return () => {
      live = false
    }
  }, deps)
  return state
}

export const Loading = ({ state, children }) =>
  state.loading ? html`<p class="muted">Loading…</p>` : state.error ? html`<p class="error" role="alert">${state.error}</p>` : children()

/** A horizontal bar chart as SVG (no script of its own, no inline style): one bar per row. */
export const BarChart = ({ rows, format = String, id }) => {
  const max = Math.max(1, ...rows.map((r) => r.value))
  const h = 18
  return html`<svg class="chart" id=${id} viewBox=${`0 0 600 ${Math.max(1, rows.length) * h + 4}`} role="img">
    ${rows.map((r, i) => html`<g>
      <text x="0" y=${i * h + 13} class="chart-label">${String(r.label).slice(0, 28)}</text>
      <rect x="190" y=${i * h + 2} height=${h - 5} width=${Math.max(1, (r.value / max) * 330)} class="bar" />
      <text x=${195 + (r.value / max) * 330} y=${i * h + 13} class="chart-value">${format(r.value)}</text>
    </g>`)}
  </svg>`
}

/** A column chart as SVG: one column per value, left to right, the first and last labels under it. */
export const ColumnChart = ({ rows, id }) => {
  const max = Math.max(1, ...rows.map((r) => r.value))
  const w = Math.max(2, Math.floor(900 / Math.max(1, rows.length)))
  const h = 120
  return html`<svg class="chart" id=${id} viewBox=${`0 0 ${Math.max(1, rows.length) * w} ${h + 16}`} role="img">
    ${rows.map((r, i) => html`<rect x=${i * w} y=${h - Math.max(r.value > 0 ? 1 : 0, (r.value / max) * h)} width=${Math.max(1, w - 1)}
      height=${Math.max(r.value > 0 ? 1 : 0, (r.value / max) * h)} class="bar"><title>${r.label}: ${r.value}</title></rect>`)}
    ${rows.length > 0 && html`<text x="0" y=${h + 13} class="chart-label">${rows[0].label}</text>
      <text x=${rows.length * w} y=${h + 13} class="chart-label end">${rows[rows.length - 1].label}</text>`}
  </svg>`
}

export const Table = ({ head, rows, id }) => html`<table id=${id}>
  <thead><tr>${head.map((h) => html`<th>${h}</th>`)}</tr></thead>
  <tbody>${rows.length === 0
    ? html`<tr><td colspan=${head.length} class="muted">nothing</td></tr>`
    : rows.map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody>
</table>`
