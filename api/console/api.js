// The console's one way to the API: same-origin requests with the session
// cookie, the CSRF token on every change, and errors as ApiError.

const csrfKey = 'poi.csrf';
let unauthorized = () => {};

/** An API failure: status 0 when the service did not answer. */
export class ApiError extends Error {
  constructor(status, body) {
    const b = body && typeof body === 'object' ? body : {};
    super(b.detail || b.error || (status ? `HTTP ${status}` : 'the service did not answer'));
    this.status = status;
    this.error = b.error || '';
    this.detail = b.detail || '';
  }
}

/** onUnauthorized sets what a 401 does (show the login). */
export function onUnauthorized(fn) { unauthorized = fn; }

// The CSRF token is not a credential on its own (the HttpOnly cookie is);
// it lives for the tab only, so a reload in the tab keeps the session.
export function setCSRF(token) {
  if (token) sessionStorage.setItem(csrfKey, token); else sessionStorage.removeItem(csrfKey);
}
export function hasCSRF() { return !!sessionStorage.getItem(csrfKey); }

/** api calls path; json or form is the body. It returns the decoded answer. */
export async function api(path, { method = 'GET', json, form, signal } = {}) {
  const headers = {};
  let body;
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = sessionStorage.getItem(csrfKey) || '';
  if (json !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(json); }
  if (form) body = form;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body, signal, credentials: 'same-origin' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { error: 'service unreachable', detail: 'The service did not answer. Check that it is running and the network is up.' });
  }
  const ct = resp.headers.get('Content-Type') || '';
  const data = ct.includes('json') ? await resp.json().catch(() => null) : await resp.text();
  if (resp.status === 401 && path !== '/api/v1/session') unauthorized();
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** health is GET /status: {status, down}; down is named only to a caller
 * the service can authenticate, which it cannot while Redis is down. */
export async function health() {
  try {
    const r = await fetch('/api/v1/status', { credentials: 'same-origin' });
    const s = await r.json();
    return { status: s.status, down: s.down || [] };
  } catch { return { status: 'unreachable', down: ['the API itself'] }; }
}

/** Roles in order: each allows what the ones before it do. */
const ranks = { viewer: 1, operator: 2, admin: 3 };
export function allows(role, need) { return (ranks[role] || 0) >= ranks[need]; }
