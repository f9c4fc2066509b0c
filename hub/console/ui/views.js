// The console's pages. Everything they show comes from the declared API (api.js); every string from the log is
// rendered as a text node or an attribute value by Preact, never as markup.
import { html, useEffect, useRef, useState } from "/ui/vendor/preact-htm.js"
import * as Api from "/ui/api.js"
import { BarChart, ColumnChart, Loading, Table, ago, bytes, maskEvent, maskIp, outcomeOf, summary, time, useLoad } from "/ui/parts.js"

// ---------------------------------------------------------------------------------------------------------------------
// Overview

/** The last verify run, as its `AuditRead` records it. */
const verifyLine = (e) => {
  const d = e.data ?? {}
  const range = `positions ${d.fromPosition ?? "?"}–${d.toPosition ?? "?"}`
  return d.verified === "broken"
    ? `BROKEN at position ${d.firstBreak} (${d.breaks} break${d.breaks === 1 ? "" : "s"}; ${range})`
    : `intact: ${d.count} events (${range})`
}

export const OverviewPage = ({ me, workspace, workspaces }) => {
  const ws = workspace || undefined
  const state = useLoad(async () => {
    const [{ agents, services }, week, day, all, integrity] = await Promise.all([
      inventory(me, ws, workspaces),
      Api.stats({ since: "7d", by: "hour", workspace: ws }),
      Api.stats({ since: "24h", workspace: ws }),
      Api.stats({ workspace: ws }),
      Api.integrity()
    ])
    return { agents, services, week, day, all, integrity }
  }, [workspace])
  return html`<h1>Overview</h1><${Loading} state=${state}>${() => {
    const { agents, services, week, day, all, integrity } = state.value
    const count = (type) => all.byType.filter((r) => r.type === type).reduce((n, r) => n + r.count, 0)
    const open = Math.max(0, count("TunnelOpened") - count("TunnelClosed"))
    const hours = week.hours ?? []
    const { verify, checkpoint } = integrity
    const hubLevel = me.scope === "operator" ? " (none on the log yet)" : " (hub-level: operator keys)"
    const whose = me.scope === "operator" && !ws ? "every workspace" : "workspace"
    return html`
      <div class="cards">
        <div class="card"><span class="big" id="agents-online">${agents.filter((a) => a.online).length} / ${agents.length}</span>agents online (${whose})</div>
        <div class="card"><span class="big" id="services-count">${services.length}</span>services</div>
        <div class="card"><span class="big" id="open-tunnels">${open}</span>open tunnels (opened − closed)</div>
        <div class="card"><span class="big">${day.denials.reduce((n, d) => n + d.count, 0)}</span>denials in 24 h</div>
        <div class="card" id="last-checkpoint"><span class="big">${checkpoint ? ago(checkpoint.recordedAt) : "—"}</span>last signed checkpoint${checkpoint ? html` (position ${checkpoint.data.position})` : hubLevel}</div>
        <div class=${`card ${verify?.data?.verified === "broken" ? "broken" : ""}`} id="last-verify"><span class="big">${verify ? ago(verify.recordedAt) : "—"}</span>last verify${verify ? html`: ${verifyLine(verify)}` : hubLevel}</div>
      </div>
      <h2>Events per hour, last 7 days (UTC)</h2>
      <${ColumnChart} id="chart-week" rows=${hours.map((h) => ({ label: `${h.hour}:00`, value: h.events }))} />
      <details><summary>table</summary>
        <${Table} id="table-week" head=${["hour (UTC)", "events"]} rows=${hours.filter((h) => h.events > 0).map((h) => [`${h.hour}:00`, h.events])} />
      </details>
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

  // Live tail: newer events that pass the filters, put on top as they commit (first page only). One long poll at a
  // time (GET /v1/audit/tail): the hub answers as soon as an event commits, or after 25 s with none; the tail is one
  // read on the log when it opens, not one per answer.
  const top = useRef(0)
  useEffect(() => {
    top.current = page?.events[0]?.position ?? top.current
  }, [page])
  useEffect(() => {
    if (!live || before !== undefined || page === undefined) return
    const stop = new AbortController()
    const pause = (ms) => new Promise((r) => setTimeout(r, ms))
    const filters = { type: applied.type, agent: applied.agent, service: applied.service, outcome: applied.outcome, ip: applied.ip, workspace: workspace || undefined }
    const run = async () => {
      let tail
      // From the newest event shown; an empty page starts at the hub's head.
      let after = top.current > 0 ? top.current : undefined
      while (!stop.signal.aborted) {
        try {
          const r = await Api.tail(tail === undefined ? { ...filters, after } : { tail, after }, stop.signal)
          tail = r.tail
          after = r.position
          if (r.events.length > 0) {
            const newer = [...r.events].reverse()
            top.current = newer[0].position
            // Everything that arrived live stays marked (a tunnel's close may come in the answer after its open).
            setFresh((old) => new Set([...old, ...newer.map((e) => e.position)].slice(-500)))
            setPage((old) => ({ ...old, events: [...newer, ...(old?.events ?? [])].slice(0, 500) }))
          }
          setError("")
        } catch (e) {
          if (stop.signal.aborted) return
          // The tail ended on the hub (a restart, a minute unasked): open another from where this one was.
          if (e.status === 404) tail = undefined
          else {
            setError(`live tail: ${e.message}; retrying`)
            await pause(5000)
          }
        }
      }
    }
    run()
    return () => stop.abort()
  }, [live, applied, before, workspace, page === undefined])

  const submit = (e) => {
    e.preventDefault()
    setFresh(new Set())
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

/** Workspaces an operator's "all workspaces" reads the agents and services of (a request each), at most. */
const MAX_WORKSPACES = 50

/**
 * The agents and services a page shows, each with its workspace: a workspace key's own; an operator's picked workspace,
 * or with none picked every workspace the log has seen created (four at a time).
 */
export const inventory = async (me, workspace, workspaces) => {
  if (me.scope !== "operator") {
    const [a, s] = await Promise.all([Api.agents(), Api.services()])
    const own = (x) => ({ ...x, workspaceId: me.workspaceId })
    return { agents: a.agents.map(own), services: s.services.map(own), truncated: false }
  }
  const ids = workspace ? [workspace] : workspaces.map((w) => w.id)
  const out = { agents: [], services: [], truncated: ids.length > MAX_WORKSPACES }
  const shown = ids.slice(0, MAX_WORKSPACES)
  for (let i = 0; i < shown.length; i += 4) {
    const chunk = shown.slice(i, i + 4)
    const got = await Promise.all(chunk.map((id) => Promise.all([Api.workspaceAgents(id), Api.workspaceServices(id)])))
    got.forEach(([a, s], j) => {
      out.agents.push(...a.agents.map((x) => ({ ...x, workspaceId: chunk[j] })))
      out.services.push(...s.services.map((x) => ({ ...x, workspaceId: chunk[j] })))
    })
  }
  return out
}

/** Each agent's latest connection and disconnection among `events` (newest first): last seen and transport. */
const sessionsOf = (events) => {
  const out = new Map()
  for (const e of events) {
    const id = e.data?.agentId
    if (typeof id !== "string") continue
    const seen = out.get(id) ?? {}
    if (e.type === "AgentConnected" && seen.connected === undefined) seen.connected = e
    if (seen.last === undefined) seen.last = e
    out.set(id, seen)
  }
  return out
}

const AgentRow = ({ a, seen, names, showWorkspace }) => {
  const [open, setOpen] = useState(false)
  const [history, setHistory] = useState(undefined)
  useEffect(() => {
    if (!open || history) return
    Api.events({ agent: a.agentId, type: "AgentConnected,AgentIpChanged,AgentDisconnected", limit: 50 })
      .then((p) => setHistory(p.events), (e) => setHistory(e.message))
  }, [open])
  const expires = new Date(a.tokenExpiresAt).getTime()
  const warn = !a.revoked && expires - Date.now() < WEEK
  const status = a.revoked ? "revoked" : a.online ? "online" : "offline"
  const lastSeen = a.online ? "now" : seen?.last ? time(seen.last.recordedAt) : "—"
  const cols = showWorkspace ? 9 : 8
  return html`<tr class="agent" onClick=${() => setOpen(!open)}>
      <td class="label">${a.label}</td>
      ${showWorkspace && html`<td>${names.get(a.workspaceId) ?? a.workspaceId.slice(0, 8)}</td>`}
      <td class=${status}>${status}</td><td class="last-seen">${lastSeen}</td>
      <td>${a.lastIp ? maskIp(a.lastIp) : "—"}</td><td class="transport">${seen?.connected?.data?.transport ?? "—"}</td>
      <td class=${warn ? "warn" : ""}>${time(a.tokenExpiresAt)}${warn ? (expires < Date.now() ? " (expired)" : " (expires within 7 days)") : ""}</td>
      <td>${time(a.createdAt)}</td><td class="muted">${open ? "▾" : "▸"}</td>
    </tr>
    ${open && html`<tr class="raw"><td colspan=${cols}>${history === undefined ? "Loading…" : typeof history === "string" ? history : html`
      <h3>Address history</h3>
      <${Table} id="address-history" head=${["when", "event", "address", "transport"]} rows=${history.map((e) => [
        time(e.recordedAt), e.type, maskIp(e.data?.newIp ?? e.data?.ip ?? e.meta?.sourceIp ?? "—"), e.data?.transport ?? ""
      ])} />`}</td></tr>`}`
}

export const AgentsPage = ({ me, workspace, workspaces }) => {
  const state = useLoad(async () => {
    const [inv, recent] = await Promise.all([
      inventory(me, workspace, workspaces),
      // One read for every agent's last seen and transport: their recent connections and disconnections.
      Api.events({ type: "AgentConnected,AgentDisconnected", since: "30d", limit: 1000, workspace: workspace || undefined })
    ])
    return { ...inv, seen: sessionsOf(recent.events) }
  }, [workspace])
  const names = new Map(workspaces.map((w) => [w.id, w.name]))
  const showWorkspace = me.scope === "operator" && !workspace
  return html`<h1>Agents and services</h1>
    <p class="muted">${me.scope === "operator" ? (workspace ? "The workspace picked. " : "Every workspace. ") : "The key's own workspace. "}
      Click an agent for its address history. Last seen and transport from the last 30 days of the log.</p>
    <${Loading} state=${state}>${() => {
      const { agents, services, seen, truncated } = state.value
      return html`
        ${truncated && html`<p class="warn">The first ${MAX_WORKSPACES} workspaces; pick one for the others.</p>`}
        <table id="agents"><thead><tr><th>agent</th>${showWorkspace && html`<th>workspace</th>`}<th>status</th><th>last seen</th>
          <th>last address</th><th>transport</th><th>token expires</th><th>provisioned</th><th></th></tr></thead>
          <tbody>${agents.length === 0
            ? html`<tr><td colspan="9" class="muted">no agents</td></tr>`
            : agents.map((a) => html`<${AgentRow} key=${a.agentId} a=${a} seen=${seen.get(a.agentId)} names=${names} showWorkspace=${showWorkspace} />`)}</tbody></table>
        <h2>Services</h2>
        <${Table} id="services" head=${[...(showWorkspace ? ["workspace"] : []), "service", "agent", "status"]}
          rows=${services.map((s) => [...(showWorkspace ? [names.get(s.workspaceId) ?? s.workspaceId.slice(0, 8)] : []),
            s.shared ? `${s.name} (shared by ${s.shared.workspaceName})` : s.name, s.agentLabel || "—", s.online ? "online" : "offline"])} />`
    }}<//>`
}
