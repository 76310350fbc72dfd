// Small DOM helpers shared by the views: no framework, just elements.
import { ApiError, health } from './api.js';

/** h builds an element: attributes (on* are listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    // CSSOM, not a style attribute: the page's CSP allows no inline style.
    else if (k === 'style') Object.assign(e.style, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** fmtTime is a timestamp in the viewer's time zone, seconds included. */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** ago is a short relative time ("12 s ago"). */
export function ago(iso) {
  const s = Math.round((Date.now() - new Date(iso)) / 1000);
  if (!isFinite(s)) return '';
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function pct(x) { return typeof x === 'number' ? `${(x * 100).toFixed(1)} %` : '—'; }

const sevIcon = { high: '▲', medium: '◆', low: '▼' };
/** severity is a badge that says its level in words, not colour alone. */
export function severity(level) {
  const l = level || 'medium';
  return h('span', { class: `sev sev-${l}` }, h('span', { 'aria-hidden': 'true' }, sevIcon[l] || '•'), ' ', l);
}

export function loading(what = 'Loading') {
  return h('div', { class: 'state state-loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), `${what}…`);
}

export function empty(title, text, ...actions) {
  return h('div', { class: 'state state-empty' }, h('h3', {}, title), text && h('p', { class: 'muted' }, text), ...actions);
}

/** errorState explains a failure; a 503 names the dependency that is down. */
export function errorState(err, retry) {
  const box = h('div', { class: 'state state-error', role: 'alert' },
    h('h3', {}, h('span', { 'aria-hidden': 'true' }, '⚠ '), title(err)),
    h('p', {}, err.detail || err.message || String(err)));
  if (err instanceof ApiError && err.status === 503) {
    const p = h('p', { class: 'down' }, 'Checking which dependency is down…');
    box.append(p);
    health().then(({ status, down }) => {
      if (down.length) p.textContent = `Down: ${down.join(', ')}. Retry once it is back.`;
      else if (status === 'running') p.textContent = 'Every dependency answers again: retry.';
      else p.textContent = `The service reports itself ${status}; the message above names what failed.`;
    });
  }
  if (retry) box.append(h('button', { type: 'button', class: 'btn', onclick: retry }, 'Retry'));
  return box;
}

function title(err) {
  if (!(err instanceof ApiError)) return 'Something went wrong';
  if (err.status === 0) return 'The service is unreachable';
  if (err.status === 403) return 'Not allowed for your role';
  if (err.status === 503) return 'A dependency is unavailable';
  if (err.status === 404) return 'Not found';
  return err.error ? err.error[0].toUpperCase() + err.error.slice(1) : `Request failed (${err.status})`;
}

/** toast shows a short message in the corner. */
export function toast(node, { level = 'info', ms = 6000 } = {}) {
  const t = h('div', { class: `toast toast-${level}`, role: level === 'error' ? 'alert' : 'status' }, node);
  document.getElementById('toasts').append(t);
  setTimeout(() => t.remove(), ms);
}

/** confirmDialog asks a yes/no question in a modal; it resolves to the answer. */
export function confirmDialog(heading, text, confirmLabel) {
  return new Promise((resolve) => {
    const d = h('dialog', { class: 'dialog', 'aria-labelledby': 'dlg-title' },
      h('h2', { id: 'dlg-title' }, heading), h('p', {}, text),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn', onclick: () => d.close('no') }, 'Cancel'),
        h('button', { type: 'button', class: 'btn btn-danger', id: 'dlg-confirm', onclick: () => d.close('yes') }, confirmLabel)));
    d.addEventListener('close', () => { d.remove(); resolve(d.returnValue === 'yes'); });
    document.body.append(d);
    d.showModal();
  });
}

/** img is a lazy image with a text fallback when it cannot be loaded. */
export function img(src, alt, cls = '') {
  const i = h('img', { src, alt, class: cls, loading: 'lazy', decoding: 'async' });
  i.addEventListener('error', () => i.replaceWith(h('div', { class: `noimg ${cls}`, role: 'img', 'aria-label': alt }, 'no image')));
  return i;
}

/** timeline draws spans on a shared time axis, one lane per key. */
export function timeline(lanes, { from, to, label = (x) => x.label, onpick } = {}) {
  const all = lanes.flatMap((l) => l.items);
  const t0 = from ?? Math.min(...all.map((x) => x.start));
  let t1 = to ?? Math.max(...all.map((x) => x.end));
  if (!(t1 > t0)) t1 = t0 + 60000;
  const pos = (t) => `${(100 * (t - t0)) / (t1 - t0)}%`;
  return h('div', { class: 'timeline' },
    h('div', { class: 'tl-axis', 'aria-hidden': 'true' }, h('span', {}, fmtTime(new Date(t0).toISOString())), h('span', {}, fmtTime(new Date(t1).toISOString()))),
    lanes.map((l) => h('div', { class: 'tl-lane' },
      h('div', { class: 'tl-name' }, l.name),
      h('div', { class: 'tl-track' }, l.items.map((x) => h('button', {
        type: 'button', class: `tl-span ${x.cls || ''}`, title: label(x), 'aria-label': label(x),
        style: { left: pos(x.start), width: `max(6px, calc(${pos(x.end)} - ${pos(x.start)}))` },
        onclick: () => onpick && onpick(x),
      }))))));
}
