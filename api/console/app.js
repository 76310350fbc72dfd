// The console's shell: login, navigation, the live alert feed every view
// shares, and the router that mounts one view at a time.
import { api, allows, hasCSRF, onUnauthorized, setCSRF, ApiError } from './api.js';
import { h, toast, severity, pct } from './ui.js';
import { alertFeed } from './feed.js';
import * as watchlist from './watchlist.js';
import * as alerts from './alerts.js';
import * as search from './search.js';
import * as cameras from './cameras.js';
import * as system from './system.js';
import { reviewActions } from './review.js';

const views = { watchlist, alerts, search, cameras, system, poi: watchlist };
const $ = (id) => document.getElementById(id);
const app = { session: null, feed: null, can: (need) => !!app.session && allows(app.session.role, need) };
let current = { stop: () => {} };

function showLogin(message) {
  app.session = null;
  if (app.feed) { app.feed.close(); app.feed = null; }
  current.stop();
  $('shell').hidden = true;
  $('login-screen').hidden = false;
  const err = $('login-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('login-key').focus();
}

async function startShell(session) {
  app.session = session;
  app.reviewActions = reviewActions(app);
  $('login-screen').hidden = true;
  $('shell').hidden = false;
  $('whoami').replaceChildren(h('span', { class: 'muted' }, 'Signed in as '), h('strong', {}, session.key_name), ' ', h('span', { class: `role role-${session.role}` }, session.role));
  app.feed = alertFeed(app);
  app.feed.subscribe((a, live) => live && notify(a));
  app.feed.onstate(() => renderHealth());
  pollHealth();
  route();
}

// notify shows a new alert in the corner on any view; a high-severity one
// also flashes the screen and beeps, unless the operator switched that off.
function notify(a) {
  const sev = a.severity;
  toast(h('a', { href: `#/poi/${a.poi_id}`, class: 'toast-alert' }, severity(sev), h('strong', {}, ' Match: '), a.poi_id,
    h('span', { class: 'muted' }, ` on ${a.match?.camera_id || '?'} · ${pct(a.match?.similarity_score)}`)), { level: sev === 'high' ? 'high' : 'info' });
  const n = $('alert-badge');
  if (location.hash !== '#/alerts') { n.hidden = false; n.textContent = String((+n.textContent || 0) + 1); }
  if (sev === 'high' && cueOn()) cue();
}

const cueKey = 'poi.cue';
function cueOn() { return localStorage.getItem(cueKey) !== 'off'; }
let audio;
function cue() {
  document.body.classList.remove('flash');
  void document.body.offsetWidth; // restart the animation
  document.body.classList.add('flash');
  try {
    audio = audio || new AudioContext();
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = 880; g.gain.value = 0.08;
    o.connect(g).connect(audio.destination);
    o.start(); o.stop(audio.currentTime + 0.25);
  } catch { /* no audio device: the flash remains */ }
}

let health = { status: '', down: [] };
let healthTimer;
async function pollHealth() {
  clearTimeout(healthTimer);
  if (!app.session) return;
  try {
    const r = await fetch('/api/v1/status', { credentials: 'same-origin' });
    health = await r.json();
  } catch { health = { status: 'unreachable', down: ['api'] }; }
  renderHealth();
  healthTimer = setTimeout(pollHealth, 5000);
}
function renderHealth() {
  const live = app.feed?.state === 'open';
  const ok = health.status === 'running';
  $('health').replaceChildren(
    h('span', { class: `pill ${ok ? 'ok' : 'bad'}` }, h('span', { 'aria-hidden': 'true' }, ok ? '● ' : '✖ '),
      ok ? 'Service running' : `Service ${health.status || 'unknown'}${health.down?.length ? ': ' + health.down.join(', ') + ' down' : ''}`),
    h('span', { class: `pill ${live ? 'ok' : 'warn'}`, id: 'feed-state' }, h('span', { 'aria-hidden': 'true' }, live ? '● ' : '◌ '),
      live ? 'Live alerts connected' : 'Live alerts reconnecting'));
}

function route() {
  if (!app.session) return;
  const [, name = 'alerts', ...rest] = (location.hash || '#/alerts').split('/');
  const view = views[name] ? name : 'alerts';
  document.querySelectorAll('[data-nav]').forEach((a) => {
    const on = a.dataset.nav === (name === 'poi' ? 'watchlist' : view);
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  if (view === 'alerts') { $('alert-badge').hidden = true; $('alert-badge').textContent = ''; }
  current.stop();
  const main = $('main');
  main.replaceChildren();
  const ctl = new AbortController();
  const stop = views[view].mount(main, app, name === 'poi' ? ['poi', ...rest] : rest, ctl.signal) || (() => {});
  current = { stop: () => { ctl.abort(); stop(); } };
}

async function boot() {
  onUnauthorized(() => showLogin('Your session has ended. Sign in again.'));
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const btn = $('login-submit'), key = $('login-key');
    btn.disabled = true; btn.textContent = 'Signing in…';
    try {
      const s = await api('/api/v1/session', { method: 'POST', json: { key: key.value.trim() } });
      key.value = '';
      setCSRF(s.csrf_token);
      startShell(s);
    } catch (err) {
      showLogin(err instanceof ApiError && err.status === 401 ? 'That key was not accepted: it is unknown, revoked or expired.' : err.message);
    } finally { btn.disabled = false; btn.textContent = 'Sign in'; }
  });
  $('logout').addEventListener('click', async () => {
    try { await api('/api/v1/session', { method: 'DELETE' }); } catch { /* signed out either way */ }
    setCSRF('');
    showLogin('');
  });
  const cueBox = $('cue-toggle');
  cueBox.checked = cueOn();
  cueBox.addEventListener('change', () => localStorage.setItem(cueKey, cueBox.checked ? 'on' : 'off'));
  window.addEventListener('hashchange', route);
  // A session cookie from earlier in this tab is used again; without the
  // tab's CSRF token it could not change anything, so sign in afresh.
  if (!hasCSRF()) { showLogin(''); return; }
  try {
    startShell(await api('/api/v1/session'));
  } catch (err) {
    showLogin(err instanceof ApiError && err.status === 401 ? '' : err.message);
  }
}

boot();
