// Live alerts: the feed's alerts, newest first, updated as they arrive.
import { h, img, fmtTime, ago, pct, severity, loading, empty, errorState } from './ui.js';

/** alertCard is one alert: the face seen beside the POI's reference. */
export function alertCard(a, app, { fresh = false } = {}) {
  const m = a.match || {};
  return h('article', { class: `card alert-card sev-border-${a.severity}${fresh ? ' fresh' : ''}`, dataset: { alertId: a.alert_id, poiId: a.poi_id }, 'aria-label': `${a.severity} alert for ${a.poi_id}` },
    h('div', { class: 'faces' },
      h('figure', {}, img(m.thumbnail_path, `Face seen on ${m.camera_id}`, 'face'), h('figcaption', {}, 'Seen')),
      h('figure', {}, img(`/api/v1/poi/${a.poi_id}/photo`, `Reference photo of ${a.poi_id}`, 'face'), h('figcaption', {}, 'Reference'))),
    h('div', { class: 'alert-body' },
      h('div', { class: 'row' }, severity(a.severity), h('span', { class: `status status-${(a.status || 'New').toLowerCase()}` }, a.status || 'New')),
      h('a', { href: `#/poi/${a.poi_id}`, class: 'poi-link' }, a.poi_id),
      a.poi_metadata?.notes && h('p', { class: 'notes' }, a.poi_metadata.notes),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Camera'), h('dd', {}, m.camera_id || '—'),
        h('dt', {}, 'Time'), h('dd', {}, h('time', { datetime: a.timestamp, title: ago(a.timestamp) }, fmtTime(a.timestamp))),
        h('dt', {}, 'Similarity'), h('dd', { class: 'similarity' }, pct(m.similarity_score)),
        h('dt', {}, 'Earlier matches'), h('dd', {}, String(a.poi_metadata?.total_previous_matches ?? 0))),
      app.reviewActions ? app.reviewActions(a) : null));
}

export function mount(root, app) {
  const list = h('div', { class: 'alert-list', id: 'alert-list', 'aria-live': 'polite' });
  const filter = h('select', { id: 'alert-sev', onchange: () => render() },
    h('option', { value: '' }, 'All severities'), h('option', { value: 'high' }, 'High'), h('option', { value: 'medium' }, 'Medium'), h('option', { value: 'low' }, 'Low'));
  root.append(h('div', { class: 'view-head' },
    h('h1', {}, 'Live alerts'),
    h('div', { class: 'filters' }, h('label', { for: 'alert-sev' }, 'Severity'), filter)),
  h('p', { class: 'muted lead' }, 'Matches against the watchlist appear here as they happen, without reloading.'), list);
  const fresh = new Set();
  function render() {
    const f = app.feed;
    if (!f.loaded && !f.alerts.length) { list.replaceChildren(loading('Loading alerts')); return; }
    if (f.error && !f.alerts.length) { list.replaceChildren(errorState(f.error)); return; }
    const shown = f.alerts.filter((a) => !filter.value || a.severity === filter.value);
    if (!shown.length) {
      list.replaceChildren(empty('No alerts', filter.value ? `No ${filter.value}-severity alert yet.` : 'No one on the watchlist has been seen yet. New matches appear here live.'));
      return;
    }
    list.replaceChildren(...shown.map((a) => alertCard(a, app, { fresh: fresh.has(a.alert_id) })));
  }
  const off = app.feed.subscribe((a, live) => { if (a && live) fresh.add(a.alert_id); render(); });
  render();
  return off;
}
