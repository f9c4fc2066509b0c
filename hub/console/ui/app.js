// The console's shell: sign-in, the navigation between pages (by URL hash), the workspace picker of an operator key
// and sign-out. Views render every string from the log as text (Preact escapes it); none is ever parsed as HTML.
import { html, render, useEffect, useState } from "/ui/vendor/preact-htm.js"
import * as Api from "/ui/api.js"
import { AccessPage, AgentsPage, LogPage, OverviewPage, StatsPage } from "/ui/views.js"

const PAGES = [
  ["overview", "Overview", OverviewPage],
  ["log", "Audit log", LogPage],
  ["stats", "Stats", StatsPage],
  ["access", "Access at a time", AccessPage],
  ["agents", "Agents and services", AgentsPage]
]

const pageOf = () => {
  const name = location.hash.replace(/^#\/?/, "").split("?")[0]
  return PAGES.find(([n]) => n === name) ?? PAGES[0]
}

const SignIn = ({ notice, onSignedIn }) => {
  const [key, setKey] = useState("")
  const [error, setError] = useState(notice ?? "")
  const [busy, setBusy] = useState(false)
  const submit = async (e) => {
    e.preventDefault()
    setBusy(true)
    try {
      await Api.signIn(key)
      setKey("")
      onSignedIn()
    } catch (err) {
      setError(err.message)
    } finally {
      setBusy(false)
    }
  }
  return html`<main class="signin">
    <h1>connect console</h1>
    <p class="muted">Read-only. Sign in with an API key: a workspace key sees its workspace, an operator key every one.</p>
    <form onSubmit=${submit}>
      <label>API key <input id="api-key" type="password" autocomplete="off" value=${key}
        onInput=${(e) => setKey(e.currentTarget.value)} placeholder="pc_…" /></label>
      <button id="sign-in" type="submit" disabled=${busy || key === ""}>Sign in</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </main>`
}

const App = () => {
  const [me, setMe] = useState(undefined)
  const [notice, setNotice] = useState("")
  const [page, setPage] = useState(pageOf())
  const [workspace, setWorkspace] = useState("")
  const [known, setKnown] = useState([])

  const load = () =>
    Api.session().then(setMe, () => setMe(null))
  useEffect(() => {
    load()
    Api.whenSignedOut(() => {
      setNotice("Your session has ended (expired, signed out or key revoked). Sign in again.")
      setMe(null)
    })
    const onHash = () => setPage(pageOf())
    addEventListener("hashchange", onHash)
    return () => removeEventListener("hashchange", onHash)
  }, [])
  // An operator picks among every workspace the log has seen created (one read: their WorkspaceCreated events).
  useEffect(() => {
    if (me?.scope !== "operator") return
    Api.events({ type: "WorkspaceCreated", limit: 1000 }).then((p) => {
      const byId = new Map()
      for (const e of p.events) {
        const id = e.data?.workspaceId ?? e.workspaceId
        if (typeof id === "string" && !byId.has(id)) byId.set(id, String(e.data?.name ?? ""))
      }
      setKnown([...byId].map(([id, name]) => ({ id, name })).sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id)))
    }, () => {})
  }, [me])

  if (me === undefined) return html`<p class="muted">Loading…</p>`
  if (me === null) return html`<${SignIn} notice=${notice} onSignedIn=${() => { setNotice(""); load() }} />`

  const signOut = async () => {
    try {
      await Api.signOut()
    } finally {
      setNotice("Signed out.")
      setMe(null)
    }
  }
  const [name, , Page] = page
  const scope = me.scope === "operator" ? workspace : me.workspaceId
  return html`<div class="shell">
    <header>
      <strong>connect</strong>
      <nav>${PAGES.map(([n, title]) => html`<a href=${`#/${n}`} class=${n === name ? "active" : ""} id=${`nav-${n}`}>${title}</a>`)}</nav>
      <span class="who">
        ${me.scope === "operator"
          ? html`<label>Workspace <select id="workspace" value=${workspace} onChange=${(e) => setWorkspace(e.currentTarget.value)}>
              <option value="">all workspaces</option>
              ${known.map((w) => html`<option value=${w.id}>${w.name} (${w.id.slice(0, 8)})</option>`)}
            </select></label>`
          : html`<span class="muted">workspace ${me.workspaceId}</span>`}
        <span class="muted">${me.scope} key · until ${new Date(me.expiresAt).toLocaleTimeString()}</span>
        <button id="sign-out" onClick=${signOut}>Sign out</button>
      </span>
    </header>
    <main><${Page} key=${`${name}:${scope}:${known.length}`} me=${me} workspace=${scope} workspaces=${known} /></main>
  </div>`
}

render(html`<${App} />`, document.getElementById("app"))
