// The console's entry: sign-in, the caller's role, routing between the runs page and a run's
// page (in the URL's fragment, so that /ui is the only address the service serves), and the
// live refresh every two seconds while the tab is visible.

import { SignInNeeded, call, setToken, token } from './api.js';
import { renderRuns } from './runs.js';
import { renderRun } from './run.js';

export const REFRESH_MS = 2000;

const main = document.getElementById('main');
const whoEl = document.getElementById('who');
const signOut = document.getElementById('sign-out');
const liveEl = document.getElementById('live');

/** What the views share: the caller, and helpers to reach the app. */
const ctx = {
  caller: null,
  navigate(hash) {
    window.location.hash = hash;
  },
};

let view = null; // {refresh(), destroy()?}
let timer = null;
let refreshing = false;

function showCaller() {
  if (!ctx.caller) {
    whoEl.textContent = '';
    signOut.hidden = true;
    return;
  }
  whoEl.textContent = `Signed in as ${ctx.caller.name} \u00b7 role: ${ctx.caller.role}`;
  whoEl.dataset.role = ctx.caller.role;
  signOut.hidden = !token();
}

async function whoami() {
  const r = await call('/api/v1/whoami');
  if (r.status !== 200) throw new Error(`whoami: ${r.status} ${r.body?.error ?? ''}`);
  ctx.caller = r.body;
  document.body.dataset.role = r.body.role;
  showCaller();
}

function showSignIn(message) {
  stop();
  ctx.caller = null;
  showCaller();
  main.replaceChildren(document.getElementById('sign-in-template').content.cloneNode(true));
  const form = main.querySelector('form');
  const note = main.querySelector('.sign-in-note');
  note.textContent = token()
    ? `The service did not accept that token (${message}). Enter another.`
    : 'The service needs a token. It is kept for this browser tab only.';
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = form.elements.token.value.trim();
    if (!t) return;
    setToken(t);
    route();
  });
  form.elements.token.focus();
}

function showError(e) {
  const p = document.createElement('p');
  p.className = 'error-banner';
  p.setAttribute('role', 'alert');
  p.textContent = `Could not load: ${e.message}`;
  main.replaceChildren(p);
}

async function refresh() {
  if (!view || refreshing || document.hidden) return;
  refreshing = true;
  try {
    await view.refresh();
    liveEl.textContent = `Live \u00b7 updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof SignInNeeded) showSignIn(e.message);
    else liveEl.textContent = `Live \u00b7 last update failed: ${e.message}`;
  } finally {
    refreshing = false;
  }
}

function stop() {
  if (timer) clearInterval(timer);
  timer = null;
  view?.destroy?.();
  view = null;
}

async function route(ev) {
  stop();
  const hash = window.location.hash.replace(/^#/, '') || '/runs';
  const [path, query = ''] = hash.split('?');
  try {
    if (!ctx.caller) await whoami();
    const run = /^\/runs\/([0-9a-fA-F-]{36})$/.exec(path);
    if (run) {
      view = await renderRun(main, run[1], ctx);
    } else {
      view = await renderRuns(main, new URLSearchParams(query), ctx);
    }
    liveEl.textContent = `Live \u00b7 updated ${new Date().toLocaleTimeString()}`;
    timer = setInterval(refresh, REFRESH_MS);
    // After a link to another page, the keyboard and a screen reader start at the new page.
    if (ev?.type === 'hashchange') main.focus({ preventScroll: false });
  } catch (e) {
    if (e instanceof SignInNeeded) showSignIn(e.message);
    else showError(e);
  }
}

document.addEventListener('visibilitychange', () => {
  if (!view) return;
  if (document.hidden) {
    liveEl.textContent = 'Paused while this tab is hidden';
  } else {
    refresh();
  }
});

signOut.addEventListener('click', () => {
  setToken(null);
  ctx.caller = null;
  showSignIn('signed out');
});

window.addEventListener('hashchange', route);
route();
