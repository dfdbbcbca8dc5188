// Calls to the service's own API, with the token of this browser session (sessionStorage only:
// it is gone when the tab closes, and never written to a cookie or to localStorage).

const KEY = 'executor-console-token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

/** Raised when the service wants a (different) token; the app shows the sign-in form. */
export class SignInNeeded extends Error {
  constructor(message) {
    super(message);
    this.name = 'SignInNeeded';
  }
}

/**
 * `fetch` of a path of this origin with the token; answers `{status, body}` (the JSON body, or
 * `{error}` with the text of a body that is not JSON). A 401 throws `SignInNeeded`.
 */
export async function call(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: text };
  }
  if (r.status === 401) {
    throw new SignInNeeded(parsed?.error ?? 'a token is needed');
  }
  return { status: r.status, body: parsed };
}

/** Like `call`, for a GET that must succeed: another status throws with the API's message. */
export async function get(path) {
  const r = await call(path);
  if (r.status !== 200) {
    throw new Error(`${path}: ${r.status} ${r.body?.error ?? ''}`.trim());
  }
  return r.body;
}
