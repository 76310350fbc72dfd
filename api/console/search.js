// Search: who was seen, where and when, by a photo and a time range.
import { api } from './api.js';
import { h, img, fmtTime, pct, loading, empty, errorState, timeline } from './ui.js';

const picks = [
  { id: 'hour', label: 'Last hour', range: () => [new Date(Date.now() - 3600e3), new Date()] },
  { id: 'today', label: 'Today', range: () => { const d = new Date(); d.setHours(0, 0, 0, 0); return [d, new Date()]; } },
  { id: 'week', label: '7 days', range: () => [new Date(Date.now() - 7 * 86400e3), new Date()] },
];

// local is a Date in the form a datetime-local input takes.
function local(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function mount(root, app) {
  let file = null;
  const canSearch = app.can('operator');
  const input = h('input', { id: 'search-file', type: 'file', accept: 'image/jpeg,image/png,image/webp', class: 'visually-hidden', onchange: () => pick(input.files[0]) });
  const preview = h('div', { class: 'search-preview' });
  const drop = h('div', { class: 'dropzone dropzone-sm', id: 'search-drop' },
    h('p', {}, h('strong', {}, 'Drop a photo of the face'), ' or ', h('label', { for: 'search-file', class: 'link' }, 'choose a file')), input, preview);
  for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); pick(e.dataTransfer.files[0]); });
  const from = h('input', { id: 'search-from', type: 'datetime-local', required: true });
  const to = h('input', { id: 'search-to', type: 'datetime-local', required: true });
  const quick = h('div', { class: 'quick', role: 'group', 'aria-label': 'Quick time ranges' }, picks.map((p) => h('button', {
    type: 'button', class: 'btn btn-sm', id: `range-${p.id}`, 'aria-pressed': 'false',
    onclick: () => setRange(p) }, p.label)));
  const reason = h('input', { id: 'search-reason', type: 'text', maxlength: '256', placeholder: 'Case number (needed to search every face seen)' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'search-submit', disabled: true }, 'Search');
  const out = h('div', { id: 'search-result', 'aria-live': 'polite' });
  function setRange(p) {
    const [a, b] = p.range();
    from.value = local(a); to.value = local(b);
    quick.querySelectorAll('button').forEach((x) => x.setAttribute('aria-pressed', String(x.id === `range-${p.id}`)));
  }
  function pick(f) {
    if (!f) return;
    file = f;
    preview.replaceChildren(h('img', { src: URL.createObjectURL(f), alt: `Query photo ${f.name}`, class: 'thumb' }), h('span', { class: 'small' }, f.name));
    submit.disabled = !canSearch;
  }
  setRange(picks[2]);
  const form = h('form', { class: 'panel search-form', id: 'search-form' },
    h('div', { class: 'search-grid' }, drop,
      h('div', { class: 'fields' },
        h('span', { class: 'label' }, 'Time range'), quick,
        h('div', { class: 'range' }, h('label', { for: 'search-from' }, 'From'), from, h('label', { for: 'search-to' }, 'To'), to),
        h('label', { for: 'search-reason' }, 'Reason'), reason,
        h('div', { class: 'actions' }, submit))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!file) return;
    const fd = new FormData();
    fd.append('image', file, file.name);
    fd.append('start_time', new Date(from.value).toISOString());
    fd.append('end_time', new Date(to.value).toISOString());
    if (reason.value.trim()) fd.append('reason', reason.value.trim());
    submit.disabled = true;
    out.replaceChildren(loading('Searching'));
    try { out.replaceChildren(results(await api('/api/v1/search', { method: 'POST', form: fd }))); } catch (err) { out.replaceChildren(errorState(err)); }
    submit.disabled = false;
  });
  root.append(...[h('div', { class: 'view-head' }, h('h1', {}, 'Search')),
    h('p', { class: 'muted lead' }, 'The watchlist is searched first; a photo of someone not on it is looked for among every face seen (stage 2).'),
    !canSearch && h('p', { class: 'notice', role: 'note' }, 'Searching needs the operator role; your key is a viewer.'),
    form, out].filter(Boolean));
}

function results(r) {
  const st = r.search_stats || {};
  const stage1 = st.search_stage === 'poi_index';
  const apps = (r.appearances || []).map((a) => ({
    ...a,
    start: +new Date(a.entry_timestamp || a.best_match_time),
    end: +new Date(a.exit_timestamp || a.best_match_time),
    exit_url: a.exit_frame_url || a.last_seen_frame_url,
  }));
  const byCam = {};
  for (const a of apps) (byCam[a.camera_id] ||= []).push(a);
  const head = h('div', { class: 'result-head', id: 'search-stage', dataset: { stage: st.search_stage } },
    h('span', { class: 'pill ok' }, stage1 ? 'Stage 1: watchlist match' : 'Stage 2: every face seen'),
    stage1 && r.matched_poi_id && h('span', {}, 'Matched ', h('a', { href: `#/poi/${r.matched_poi_id}` }, r.matched_poi_id), ` at ${pct(st.poi_similarity)}`),
    !stage1 && h('span', { class: 'muted' }, `${st.vectors_searched ?? 0} faces searched, ${st.unique_tracks ?? 0} tracks`),
    h('span', { class: 'muted' }, `${r.total_appearances} appearance${r.total_appearances === 1 ? '' : 's'} · ${Math.round(st.query_latency_ms || 0)} ms`));
  if (!apps.length) return h('div', {}, head, empty('No appearance in this range', 'Widen the time range, or try another photo.'));
  return h('div', {}, head,
    timeline(Object.entries(byCam).map(([cam, xs]) => ({ name: cam, items: xs.map((a) => ({ ...a, label: `${cam}: ${fmtTime(new Date(a.start).toISOString())} to ${fmtTime(new Date(a.end).toISOString())}, ${pct(a.similarity)}` })) })),
      { from: +new Date(r.query_range.start), to: +new Date(r.query_range.end), onpick: (x) => document.getElementById(`app-${x.track_id}`)?.scrollIntoView({ behavior: 'smooth' }) }),
    h('ul', { class: 'appearances' }, apps.map((a) => h('li', { class: 'appearance card', id: `app-${a.track_id}`, dataset: { trackId: a.track_id } },
      h('div', { class: 'app-meta' }, h('strong', {}, a.camera_id), h('div', { class: 'similarity' }, `similarity ${pct(a.similarity)}`),
        h('div', { class: 'small' }, `${fmtTime(new Date(a.start).toISOString())} → ${fmtTime(new Date(a.end).toISOString())}`)),
      h('figure', {}, img(a.entry_frame_url, `Entry frame on ${a.camera_id}`, 'frame entry-frame'), h('figcaption', {}, 'Entry')),
      h('figure', {}, img(a.exit_url, `Exit frame on ${a.camera_id}`, 'frame exit-frame'), h('figcaption', {}, 'Exit')),
      zones(a.zone_appearances)))));
}

function zones(zs) {
  if (!zs || !zs.length) return h('p', { class: 'muted small zones' }, 'No zone visits recorded');
  return h('table', { class: 'zones' }, h('caption', {}, 'Dwell per zone'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Zone'), h('th', { scope: 'col' }, 'Entered'), h('th', { scope: 'col' }, 'Dwell'))),
    h('tbody', {}, zs.map((z) => h('tr', {}, h('td', {}, z.zone), h('td', {}, fmtTime(z.entry_time)), h('td', {}, `${z.dwell_seconds.toFixed(1)} s`)))));
}
