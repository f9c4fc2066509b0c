// The console's only ways to the hub: its session (/ui/session) and the declared HTTP API (/v1/...), which takes the
// session cookie as it takes an API key. Every answer is JSON; an error is {"error":{"code","message"}}.

/** A refused or failed request, with the hub's status and message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

let onSignedOut = () => {}

/** Called when the hub answers 401: the session ended (signed out elsewhere, expired, key revoked). */
export const whenSignedOut = (f) => {
  onSignedOut = f
}

const request = async (method, path, body, signal) => {
  const response = await fetch(path, {
    method,
    signal,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await response.text()
  let json
  try {
    json = text === "" ? {} : JSON.parse(text)
  } catch {
    json = { error: { message: text.slice(0, 200) } }
  }
  if (!response.ok) {
    if (response.status === 401 && path.startsWith("/v1/")) onSignedOut()
    throw new ApiError(response.status, json?.error?.message ?? `HTTP ${response.status}`)
  }
  return json
}

/** The query string of `params`, without empty values. */
export const query = (params) => {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v))
  const s = q.toString()
  return s === "" ? "" : `?${s}`
}

export const session = () => request("GET", "/ui/session")
export const signIn = (apiKey) => request("POST", "/ui/session", { apiKey })
export const signOut = () => request("DELETE", "/ui/session")
export const events = (params) => request("GET", `/v1/audit/events${query(params)}`)
/** One long poll of a live tail (the hub answers when an event commits, or after 25 s); `signal` abandons it. */
export const tail = (params, signal) => request("GET", `/v1/audit/tail${query(params)}`, undefined, signal)
export const integrity = () => request("GET", "/v1/audit/integrity")
export const stats = (params) => request("GET", `/v1/audit/stats${query(params)}`)
export const access = (params) => request("GET", `/v1/audit/access${query(params)}`)
export const agents = () => request("GET", "/v1/agents")
export const services = () => request("GET", "/v1/services")
export const workspaceAgents = (id) => request("GET", `/v1/workspaces/${encodeURIComponent(id)}/agents`)
export const workspaceServices = (id) => request("GET", `/v1/workspaces/${encodeURIComponent(id)}/services`)
