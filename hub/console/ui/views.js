// The console's pages. Everything they show comes from the declared API (api.js); every string from the log is
// rendered as a text node or an attribute value by Preact, never as markup.
import { html, useEffect, useRef, useState } from "/ui/vendor/preact-htm.js"
import * as Api from "/ui/api.js"

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

const isIPv4 = (a) => /^\d{1,3}(\.\d{1,3}){3}$/.test(a)

/** An address masked as the CLI masks it (core/Mask.ts): IPv4 to its /24, IPv6 to its /48. */
export const maskIp = (a) => {
  if (typeof a !== "string") return a
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

const maskEvent = (e) => {
  const data = { ...(e.data ?? {}) }
  for (const k of ["ip", "previousIp", "newIp"]) if (typeof data[k] === "string") data[k] = maskIp(data[k])
  const meta = { ...(e.meta ?? {}) }
  if (typeof meta.sourceIp === "string") meta.sourceIp = maskIp(meta.sourceIp)
  return { ...e, data, meta }
}

const time = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—")
const ago = (iso) => {
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000)
  if (s < 120) return `${s} s ago`
  if (s < 7200) return `${Math.round(s / 60)} min ago`
  if (s < 172800) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} days ago`
}
const bytes = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`)

/** A short line about an event, from the fields most types have. */
const summary = (e) => {
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

const outcomeOf = (e) => {
  const d = e.data ?? {}
  if (["AgentAuthFailed", "ApiKeyAuthFailed", "ReachDenied", "ConsoleSignInFailed"].includes(e.type)) return "denied"
  if ((e.type === "ShareAccessed" || e.type === "LinkAccessed") && d.outcome === "denied") return "denied"
  if (e.type === "TunnelClosed" && d.reason === "connect_failed") return "denied"
  return "allowed"
}

const useLoad = (load, deps) => {
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

const Loading = ({ state, children }) =>
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

const Table = ({ head, rows, id }) => html`<table id=${id}>
  <thead><tr>${head.map((h) => html`<th>${h}</th>`)}</tr></thead>
  <tbody>${rows.length === 0
    ? html`<tr><td colspan=${head.length} class="muted">nothing</td></tr>`
    : rows.map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody>
</table>`

// ---------------------------------------------------------------------------------------------------------------------
// Overview

export const OverviewPage = ({ me, workspace }) => {
  const ws = workspace || undefined
  const state = useLoad(async () => {
    const [agents, services, week, day, all, checkpoint] = await Promise.all([
      Api.agents(),
      Api.services(),
      Api.stats({ since: "7d", by: "day", workspace: ws }),
      Api.stats({ since: "24h", workspace: ws }),
      Api.stats({ workspace: ws }),
      me.scope === "operator" ? Api.events({ type: "CheckpointSigned", limit: 1 }) : Promise.resolve({ events: [] })
    ])
    return { agents: agents.agents, services: services.services, week, day, all, checkpoint: checkpoint.events[0] }
  }, [workspace])
  return html`<h1>Overview</h1><${Loading} state=${state}>${() => {
    const { agents, services, week, day, all, checkpoint } = state.value
    const count = (type) => all.byType.filter((r) => r.type === type).reduce((n, r) => n + r.count, 0)
    const open = Math.max(0, count("TunnelOpened") - count("TunnelClosed"))
    return html`
      <div class="cards">
        <div class="card"><span class="big" id="agents-online">${agents.filter((a) => a.online).length} / ${agents.length}</span>agents online (key's workspace)</div>
        <div class="card"><span class="big" id="services-count">${services.length}</span>services</div>
        <div class="card"><span class="big" id="open-tunnels">${open}</span>open tunnels (opened − closed)</div>
        <div class="card"><span class="big">${day.denials.reduce((n, d) => n + d.count, 0)}</span>denials in 24 h</div>
        <div class="card"><span class="big">${checkpoint ? ago(checkpoint.recordedAt) : "—"}</span>last signed checkpoint${checkpoint ? html` (position ${checkpoint.data.position})` : me.scope === "operator" ? " (none yet)" : " (hub-level: operator keys)"}</div>
        <div class="card"><span class="big">—</span>last verify: not recorded on the log (run connect audit verify)</div>
      </div>
      <h2>Events per day, last 7 days</h2>
      <${BarChart} id="chart-week" rows=${week.days.map((d) => ({ label: d.day, value: d.events }))} />
      <${Table} head=${["day", "events"]} rows=${week.days.map((d) => [d.day, d.events])} />
      <h2>Denials in the last 24 h, by reason</h2>
      <${BarChart} rows=${day.denials.map((d) => ({ label: `${d.type} ${d.reason ?? ""}`, value: d.count }))} />
      <${Table} head=${["type", "reason", "refusals", "events"]} rows=${day.denials.map((d) => [d.type, d.reason ?? "—", d.count, d.events])} />
      <p class="muted">As of position ${all.asOf} (the rollups the hub follows).</p>`
  }}<//>`
}

// ---------------------------------------------------------------------------------------------------------------------
// Audit log

const FILTERS = ["since", "until", "type", "agent", "service", "outcome", "ip"]

/** The `connect audit …` command that lists what the filters select. */
export const commandOf = (f, workspace, reveal) => {
  const quote = (v) => (/^[A-Za-z0-9._:/@+-]+$/.test(v) ? v : `'${v.replace(/'/g, "'\\''")}'`)
  const args = ["connect", "audit"]
  for (const k of FILTERS) if (f[k]) args.push(`--${k}`, quote(f[k]))
  if (workspace) args.push("--workspace", quote(workspace))
  if (reveal) args.push("--reveal-ips")
  return args.join(" ")
}

const EventRow = ({ e, reveal, fresh }) => {
  const [open, setOpen] = useState(false)
  const shown = reveal ? e : maskEvent(e)
  const raw = {
    position: shown.position, id: shown.id, prevHash: shown.prevHash, hash: shown.hash, stream: shown.stream,
    version: shown.version, workspaceId: shown.workspaceId, type: shown.type, recordedAt: shown.recordedAt,
    data: shown.data, meta: shown.meta
  }
  return html`<tr class=${`event ${fresh ? "fresh" : ""} ${outcomeOf(e)}`} data-position=${e.position} onClick=${() => setOpen(!open)}>
      <td>${e.position}</td><td>${time(e.recordedAt)}</td><td>${e.type}</td><td>${outcomeOf(e)}</td>
      <td>${shown.meta?.sourceIp ?? ""}</td><td class="summary">${summary(shown)}</td>
    </tr>
    ${open && html`<tr class="raw"><td colspan="6"><pre>${JSON.stringify(raw, null, 2)}</pre></td></tr>`}`
}

export const LogPage = ({ me, workspace }) => {
  const [form, setForm] = useState({ since: "24h", until: "", type: "", agent: "", service: "", outcome: "", ip: "" })
  const [applied, setApplied] = useState(form)
  const [pages, setPages] = useState([undefined])
  const [page, setPage] = useState(undefined)
  const [error, setError] = useState("")
  const [live, setLive] = useState(false)
  const [fresh, setFresh] = useState(new Set())
  const [reveal, setReveal] = useState(false)
  const [copied, setCopied] = useState("")
  const before = pages[pages.length - 1]
  const params = (extra) => ({ ...applied, workspace: workspace || undefined, limit: 50, ...extra })

  useEffect(() => {
    setPage(undefined)
    Api.events(params({ before })).then((p) => { setPage(p); setError("") }, (e) => setError(e.message))
  }, [applied, before, workspace])

  // Live tail: newer events that pass the filters, put on top as they commit (polled; first page only).
  const top = useRef(0)
  useEffect(() => {
    top.current = page?.events[0]?.position ?? top.current
  }, [page])
  useEffect(() => {
    if (!live || before !== undefined) return
    const timer = setInterval(async () => {
      try {
        const p = await Api.events(params({ limit: 100 }))
        // The console's own reads are on the log too; the tail leaves them out so it does not feed itself.
        const newer = p.events.filter((e) => e.position > top.current && !(e.type === "AuditRead" && e.data?.apiKeyId === me.apiKeyId))
        if (newer.length > 0) {
          top.current = p.events[0].position
          setFresh(new Set(newer.map((e) => e.position)))
          setPage((old) => ({ ...old, events: [...newer, ...(old?.events ?? [])].slice(0, 500) }))
        }
      } catch (e) {
        setError(e.message)
      }
    }, 2000)
    return () => clearInterval(timer)
  }, [live, applied, before, workspace])

  const submit = (e) => {
    e.preventDefault()
    setPages([undefined])
    setApplied({ ...form })
  }
  const command = commandOf(applied, workspace, reveal)
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(command)
      setCopied("copied")
    } catch {
      setCopied("select the command and copy it")
    }
  }
  const field = (k, label, placeholder) => html`<label>${label}<input name=${k} id=${`filter-${k}`} value=${form[k]}
    placeholder=${placeholder} onInput=${(e) => setForm({ ...form, [k]: e.currentTarget.value })} /></label>`
  return html`<h1>Audit log</h1>
    <form class="filters" onSubmit=${submit}>
      ${field("since", "Since", "24h, 7d, 2026-05-01T12:00Z")}${field("until", "Until", "now")}
      ${field("type", "Type or group", "tunnel, ReachDenied")}${field("agent", "Agent", "label or id")}
      ${field("service", "Service", "name or id")}
      <label>Outcome<select id="filter-outcome" value=${form.outcome} onChange=${(e) => setForm({ ...form, outcome: e.currentTarget.value })}>
        <option value="">any</option><option value="allowed">allowed</option><option value="denied">denied</option></select></label>
      ${field("ip", "Address", "203.0.113.0/24")}
      <button type="submit" id="apply">Apply</button>
    </form>
    <div class="toolbar">
      <label><input type="checkbox" id="live" checked=${live} disabled=${before !== undefined} onChange=${(e) => setLive(e.currentTarget.checked)} /> Live tail</label>
      ${me.scope === "operator" && html`<label><input type="checkbox" id="reveal" checked=${reveal} onChange=${(e) => setReveal(e.currentTarget.checked)} /> Reveal addresses</label>`}
      <code id="command">${command}</code> <button id="copy" onClick=${copy}>Copy command</button> <span class="muted">${copied}</span>
    </div>
    ${error && html`<p class="error" role="alert" id="log-error">${error}</p>`}
    ${page === undefined ? html`<p class="muted">Loading…</p>` : html`
      <table id="events"><thead><tr><th>position</th><th>recorded (UTC)</th><th>type</th><th>outcome</th><th>source</th><th>about</th></tr></thead>
        <tbody>${page.events.length === 0
          ? html`<tr><td colspan="6" class="muted">no event matches</td></tr>`
          : page.events.map((e) => html`<${EventRow} key=${e.position} e=${e} reveal=${reveal} fresh=${fresh.has(e.position)} />`)}</tbody></table>
      <div class="pager">
        <button id="newer" disabled=${pages.length === 1} onClick=${() => setPages(pages.slice(0, -1))}>Newer</button>
        <button id="older" disabled=${page.next === null} onClick=${() => { setLive(false); setPages([...pages, page.next]) }}>Older</button>
        <span class="muted">${before === undefined ? "newest first" : `before position ${before}`}</span>
      </div>`}`
}

// ---------------------------------------------------------------------------------------------------------------------
// Stats

export const StatsPage = ({ me, workspace }) => {
  const [since, setSince] = useState("7d")
  const [reveal, setReveal] = useState(false)
  const state = useLoad(() =>
    Promise.all([
      Api.stats({ since, workspace: workspace || undefined, by: "ip", reveal: reveal ? "true" : undefined }),
      Api.stats({ since, workspace: workspace || undefined, by: "day" })
    ]), [since, workspace, reveal])
  return html`<h1>Stats</h1>
    <div class="toolbar">
      <label>Since <select id="stats-since" value=${since} onChange=${(e) => setSince(e.currentTarget.value)}>
        ${["24h", "7d", "30d", "365d"].map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
      ${me.scope === "operator" && html`<label><input type="checkbox" checked=${reveal} onChange=${(e) => setReveal(e.currentTarget.checked)} /> Reveal addresses</label>`}
    </div>
    <${Loading} state=${state}>${() => {
      const [s, d] = state.value
      const types = new Map()
      for (const r of s.byType) types.set(r.type, (types.get(r.type) ?? 0) + r.count)
      const typeRows = [...types].sort((a, b) => b[1] - a[1])
      return html`
        <p class="muted">${s.events} events as of position ${s.asOf}${s.masked ? "; addresses masked" : ""}.</p>
        <h2>Events over time (per day)</h2>
        <${BarChart} rows=${d.days.map((x) => ({ label: x.day, value: x.events }))} />
        <${Table} head=${["day", "events"]} rows=${d.days.map((x) => [x.day, x.events])} />
        <h2>Events by type</h2>
        <${BarChart} id="chart-types" rows=${typeRows.map(([label, value]) => ({ label, value }))} />
        <${Table} id="table-types" head=${["type", "outcome", "events", "count"]} rows=${s.byType.map((r) => [r.type, r.outcome, r.events, r.count])} />
        <h2>Denials by reason</h2>
        <${BarChart} rows=${s.denials.map((r) => ({ label: `${r.type} ${r.reason ?? ""}`, value: r.count }))} />
        <${Table} head=${["type", "reason", "refusals", "events"]} rows=${s.denials.map((r) => [r.type, r.reason ?? "—", r.count, r.events])} />
        <h2>Bytes relayed per service</h2>
        <${BarChart} format=${bytes} rows=${s.services.map((r) => ({ label: r.name ?? r.id, value: r.bytes }))} />
        <${Table} id="table-services" head=${["service", "tunnels", "bytes", "denied"]} rows=${s.services.map((r) => [r.name ?? r.id, r.tunnels, bytes(r.bytes), r.denied])} />
        <h2>Bytes relayed per agent</h2>
        <${BarChart} format=${bytes} rows=${s.agents.map((r) => ({ label: r.label ?? r.id, value: r.bytes }))} />
        <${Table} id="table-agents" head=${["agent", "events", "tunnels", "bytes", "denied"]} rows=${s.agents.map((r) => [r.label ?? r.id, r.events, r.tunnels, bytes(r.bytes), r.denied])} />
        <h2>Busiest addresses</h2>
        <${BarChart} rows=${s.addresses.map((r) => ({ label: r.address, value: r.count }))} />
        <${Table} head=${["address", "count", "events", "denied"]} rows=${s.addresses.map((r) => [r.address, r.count, r.events, r.denied])} />`
    }}<//>`
}

// ---------------------------------------------------------------------------------------------------------------------
// Access at a time

export const AccessPage = ({ workspace }) => {
  const [service, setService] = useState("")
  const [at, setAt] = useState("")
  const [state, setState] = useState(undefined)
  const submit = (e) => {
    e.preventDefault()
    setState({ loading: true })
    Api.access({ service, at: at || new Date().toISOString().replace(/\.\d+Z$/, "Z"), workspace: workspace || undefined })
      .then((value) => setState({ value }), (error) => setState({ error: error.message }))
  }
  return html`<h1>Access at a time</h1>
    <p class="muted">Who could reach a service at a moment: the answer of <code>connect audit access</code>.</p>
    <form class="filters" onSubmit=${submit}>
      <label>Service<input id="access-service" value=${service} onInput=${(e) => setService(e.currentTarget.value)} placeholder="prod-db" /></label>
      <label>At<input id="access-at" value=${at} onInput=${(e) => setAt(e.currentTarget.value)} placeholder="now, 2h, 2026-05-01T12:00Z" /></label>
      <button type="submit" id="access-go" disabled=${service === ""}>Show</button>
    </form>
    ${state && html`<${Loading} state=${state}>${() => html`<pre id="access-answer">${state.value.text}</pre>`}<//>`}`
}

// ---------------------------------------------------------------------------------------------------------------------
// Agents and services

const WEEK = 7 * 24 * 3600 * 1000

const AgentRow = ({ a }) => {
  const [open, setOpen] = useState(false)
  const [history, setHistory] = useState(undefined)
  useEffect(() => {
    if (!open || history) return
    Api.events({ agent: a.agentId, type: "agent", limit: 50, since: "365d" }).then((p) => setHistory(p.events), (e) => setHistory(e.message))
  }, [open])
  const expires = new Date(a.tokenExpiresAt).getTime()
  const warn = !a.revoked && expires - Date.now() < WEEK
  const status = a.revoked ? "revoked" : a.online ? "online" : "offline"
  const connected = Array.isArray(history) ? history.find((e) => e.type === "AgentConnected") : undefined
  const seen = Array.isArray(history) ? history.find((e) => e.type === "AgentConnected" || e.type === "AgentDisconnected") : undefined
  return html`<tr class="agent" onClick=${() => setOpen(!open)}>
      <td class="label">${a.label}</td><td class=${status}>${status}</td><td>${a.lastIp ? maskIp(a.lastIp) : "—"}</td>
      <td class=${warn ? "warn" : ""}>${time(a.tokenExpiresAt)}${warn ? (expires < Date.now() ? " (expired)" : " (expires within 7 days)") : ""}</td>
      <td>${time(a.createdAt)}</td>
    </tr>
    ${open && html`<tr class="raw"><td colspan="5">${history === undefined ? "Loading…" : typeof history === "string" ? history : html`
      <p>Last seen: ${a.online ? "now" : seen ? time(seen.recordedAt) : "never connected"} · transport: ${connected?.data?.transport ?? "—"}</p>
      <${Table} head=${["when", "event", "address"]} rows=${history
        .filter((e) => ["AgentConnected", "AgentIpChanged", "AgentDisconnected"].includes(e.type))
        .map((e) => [time(e.recordedAt), e.type, maskIp(e.data?.ip ?? e.data?.newIp ?? e.meta?.sourceIp ?? "") ?? "—"])} />`}</td></tr>`}`
}

export const AgentsPage = () => {
  const state = useLoad(() => Promise.all([Api.agents(), Api.services()]), [])
  return html`<h1>Agents and services</h1>
    <p class="muted">The key's own workspace. Click an agent for its address history, last seen and transport.</p>
    <${Loading} state=${state}>${() => {
      const [{ agents }, { services }] = state.value
      return html`
        <table id="agents"><thead><tr><th>agent</th><th>status</th><th>last address</th><th>token expires</th><th>provisioned</th></tr></thead>
          <tbody>${agents.map((a) => html`<${AgentRow} key=${a.agentId} a=${a} />`)}</tbody></table>
        <h2>Services</h2>
        <${Table} id="services" head=${["service", "agent", "status"]} rows=${services.map((s) => [s.name, s.agentLabel, s.online ? "online" : "offline"])} />`
    }}<//>`
}
