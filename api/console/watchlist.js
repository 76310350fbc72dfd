// The watchlist: the list of POIs, enrolment and one POI's page.
import { api } from './api.js';
import { h, img, fmtTime, ago, pct, severity, loading, empty, errorState, toast, confirmDialog, timeline } from './ui.js';
import { alertCard } from './alerts.js';

const maxPhotos = 5;

export function mount(root, app, rest, signal) {
  if (rest[0] === 'poi' && rest[1]) return detail(root, app, decodeURIComponent(rest[1]), signal);
  return list(root, app, signal);
}

function list(root, app, signal) {
  const q = h('input', { id: 'poi-filter', type: 'search', placeholder: 'Id or notes', oninput: () => render() });
  const sev = h('select', { id: 'poi-sev', onchange: () => render() },
    h('option', { value: '' }, 'All'), h('option', { value: 'high' }, 'High'), h('option', { value: 'medium' }, 'Medium'), h('option', { value: 'low' }, 'Low'));
  const grid = h('div', { class: 'poi-grid', id: 'poi-grid' });
  const panel = h('div', { id: 'enroll-panel' });
  const enrollBtn = app.can('operator') && h('button', { type: 'button', class: 'btn btn-primary', id: 'enroll-open', 'aria-expanded': 'false',
    onclick: () => {
      const open = !panel.firstChild;
      panel.replaceChildren(...(open ? [enrollForm(app, () => load())] : []));
      enrollBtn.setAttribute('aria-expanded', String(open));
      if (open) panel.querySelector('input,select,textarea')?.focus();
    } }, '+ Enroll a person');
  root.append(
    h('div', { class: 'view-head' }, h('h1', {}, 'Watchlist'),
      h('div', { class: 'filters' }, h('label', { for: 'poi-filter' }, 'Filter'), q, h('label', { for: 'poi-sev' }, 'Severity'), sev),
      enrollBtn || h('span', { class: 'pill readonly', role: 'note' }, 'Read-only: enrolling needs the operator role')),
    panel, grid);
  let pois = null, failure = null;
  function render() {
    if (failure) { grid.replaceChildren(errorState(failure, load)); return; }
    if (!pois) { grid.replaceChildren(loading('Loading the watchlist')); return; }
    const text = q.value.trim().toLowerCase();
    const shown = pois.filter((p) => (!sev.value || p.severity === sev.value) && (!text || p.poi_id.toLowerCase().includes(text) || (p.notes || '').toLowerCase().includes(text)));
    if (!pois.length) { grid.replaceChildren(empty('The watchlist is empty', app.can('operator') ? 'Enroll a person with one to five photos of their face.' : 'An operator enrolls people; nobody is on the list yet.')); return; }
    if (!shown.length) { grid.replaceChildren(empty('No match for these filters', 'Clear the filter or pick another severity.')); return; }
    grid.replaceChildren(...shown.map((p) => h('a', { class: 'card poi-card', href: `#/poi/${p.poi_id}`, dataset: { poiId: p.poi_id } },
      img(`/api/v1/poi/${p.poi_id}/photo`, `Reference photo of ${p.poi_id}`, 'face face-lg'),
      h('div', { class: 'poi-card-body' },
        h('div', { class: 'row' }, severity(p.severity), h('span', { class: 'muted small', title: fmtTime(p.created_at) }, `enrolled ${ago(p.created_at)}`)),
        h('div', { class: 'poi-id' }, p.poi_id),
        h('p', { class: 'notes' }, p.notes || h('span', { class: 'muted' }, 'No notes'))))));
  }
  async function load() {
    failure = null;
    render();
    try { pois = await api('/api/v1/poi', { signal }); } catch (err) { if (err.name !== 'AbortError') failure = err; }
    render();
  }
  load();
}

function enrollForm(app, done) {
  let files = [];
  const input = h('input', { id: 'enroll-files', type: 'file', accept: 'image/jpeg,image/png,image/webp', multiple: true, class: 'visually-hidden',
    onchange: () => { addFiles(input.files); input.value = ''; } });
  const previews = h('ul', { class: 'previews', id: 'enroll-previews', 'aria-label': 'Selected photos' });
  const msg = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const drop = h('div', { class: 'dropzone', id: 'enroll-drop' },
    h('p', {}, h('strong', {}, 'Drop 1 to 5 photos here')),
    h('p', { class: 'muted' }, 'or ', h('label', { for: 'enroll-files', class: 'link' }, 'choose files'), ' (JPEG, PNG or WebP; one face each)'), input);
  for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); addFiles(e.dataTransfer.files); });
  const sev = h('select', { id: 'enroll-severity', name: 'severity' },
    h('option', { value: 'low' }, 'Low'), h('option', { value: 'medium', selected: true }, 'Medium'), h('option', { value: 'high' }, 'High'));
  const notes = h('textarea', { id: 'enroll-notes', name: 'description', rows: '3', maxlength: '4096', placeholder: 'Why this person is on the list; case number' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'enroll-submit', disabled: true }, 'Enroll');
  const result = h('div', { id: 'enroll-result', 'aria-live': 'polite' });

  function addFiles(list) {
    const imgs = [...list].filter((f) => f.type.startsWith('image/'));
    if (files.length + imgs.length > maxPhotos) { msg.hidden = false; msg.textContent = `At most ${maxPhotos} photos per person.`; }
    else msg.hidden = true;
    files = files.concat(imgs).slice(0, maxPhotos);
    renderPreviews();
  }
  function renderPreviews() {
    previews.replaceChildren(...files.map((f, i) => h('li', {},
      h('img', { src: URL.createObjectURL(f), alt: `Selected photo ${i + 1}: ${f.name}`, class: 'thumb' }),
      h('span', { class: 'small' }, f.name),
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm', 'aria-label': `Remove ${f.name}`, onclick: () => { files.splice(i, 1); renderPreviews(); } }, '✕'))));
    submit.disabled = files.length === 0;
  }
  const form = h('form', { class: 'panel enroll', id: 'enroll-form', 'aria-labelledby': 'enroll-title' },
    h('h2', { id: 'enroll-title' }, 'Enroll a person'),
    h('div', { class: 'enroll-grid' },
      h('div', {}, drop, previews),
      h('div', { class: 'fields' },
        h('label', { for: 'enroll-severity' }, 'Severity'), sev,
        h('label', { for: 'enroll-notes' }, 'Notes'), notes,
        msg, h('div', { class: 'actions' }, submit))),
    result);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const fd = new FormData();
    files.forEach((f) => fd.append('images', f, f.name));
    fd.append('severity', sev.value);
    fd.append('description', notes.value);
    submit.disabled = true; submit.textContent = 'Enrolling…';
    result.replaceChildren(loading('Finding the face in each photo'));
    try {
      const poi = await api('/api/v1/poi', { method: 'POST', form: fd });
      result.replaceChildren(enrolled(poi, files));
      files = []; renderPreviews(); notes.value = '';
      done();
    } catch (err) {
      result.replaceChildren(errorState(err));
    } finally { submit.textContent = 'Enroll'; submit.disabled = files.length === 0; }
  });
  return form;
}

// enrolled shows, per photo, the box of the face the engine used over the
// photo and the aligned face it stored, or why the photo was not used.
function enrolled(poi, files) {
  return h('div', { class: 'enrolled', id: 'enroll-done', dataset: { poiId: poi.poi_id } },
    h('h3', {}, h('span', { 'aria-hidden': 'true' }, '✔ '), 'Enrolled ', h('a', { href: `#/poi/${poi.poi_id}`, id: 'enrolled-link' }, poi.poi_id), ' ', severity(poi.severity)),
    h('ul', { class: 'face-results' }, (poi.images || []).map((im) => {
      const f = files[im.index];
      const src = f ? URL.createObjectURL(f) : '';
      const fig = h('div', { class: 'boxed' }, h('img', { src, alt: `Uploaded photo ${im.filename}` }));
      if (im.face_bbox) {
        const box = h('div', { class: 'bbox', 'aria-hidden': 'true' });
        fig.append(box);
        const photo = fig.querySelector('img');
        photo.addEventListener('load', () => {
          const [x1, y1, x2, y2] = im.face_bbox, W = photo.naturalWidth, H = photo.naturalHeight;
          Object.assign(box.style, { left: `${(100 * x1) / W}%`, top: `${(100 * y1) / H}%`, width: `${(100 * (x2 - x1)) / W}%`, height: `${(100 * (y2 - y1)) / H}%` });
        });
      }
      return h('li', { class: `face-result ${im.rejected ? 'rejected' : 'used'}` }, fig,
        im.rejected
          ? h('div', { class: 'why' }, h('strong', {}, h('span', { 'aria-hidden': 'true' }, '✖ '), 'Not used'), h('p', {}, `${im.filename}: ${im.rejected}.`))
          : h('div', { class: 'why' }, img(im.photo_url, `Face the engine used from ${im.filename}`, 'face engine-face'),
            h('p', { class: 'small' }, h('span', { 'aria-hidden': 'true' }, '✔ '), `Face used (${im.faces_detected} found; the largest)`)));
    })));
}

function detail(root, app, id, signal) {
  const body = h('div', {}, loading('Loading the POI'));
  root.append(h('p', {}, h('a', { href: '#/watchlist' }, '← Watchlist')), body);
  (async () => {
    let poi, act;
    try {
      [poi, act] = await Promise.all([api(`/api/v1/poi/${encodeURIComponent(id)}`, { signal }), api(`/api/v1/poi/${encodeURIComponent(id)}/activity`, { signal })]);
    } catch (err) {
      if (err.name !== 'AbortError') body.replaceChildren(errorState(err));
      return;
    }
    const del = app.can('admin') && h('button', { type: 'button', class: 'btn btn-danger', id: 'poi-delete', onclick: async () => {
      if (!await confirmDialog(`Delete ${poi.poi_id}?`, 'Their photos, vectors, appearances and alerts are erased from every store. This cannot be undone.', 'Delete for good')) return;
      del.disabled = true; del.textContent = 'Deleting…';
      try {
        await api(`/api/v1/poi/${encodeURIComponent(poi.poi_id)}`, { method: 'DELETE' });
        app.feed.remove(poi.poi_id);
        toast(`${poi.poi_id} deleted.`);
        location.hash = '#/watchlist';
      } catch (err) { del.disabled = false; del.textContent = 'Delete'; body.prepend(errorState(err)); }
    } }, 'Delete');
    const apps = act.appearances || [];
    const byCam = {};
    for (const a of apps) (byCam[a.camera_id] ||= []).push(a);
    body.replaceChildren(
      h('div', { class: 'view-head' }, h('h1', { id: 'poi-title' }, poi.poi_id), severity(poi.severity), del),
      h('div', { class: 'detail-grid' },
        h('section', { class: 'panel', 'aria-labelledby': 'refs-h' }, h('h2', { id: 'refs-h' }, 'References'),
          h('div', { class: 'refs' }, (poi.reference_images || []).map((r, i) => img(`/api/v1/poi/${poi.poi_id}/photos/${r.embedding_id}`, `Reference ${i + 1} of ${poi.poi_id}`, 'face face-lg'))),
          h('dl', { class: 'facts' }, h('dt', {}, 'Status'), h('dd', {}, poi.status), h('dt', {}, 'Enrolled'), h('dd', {}, fmtTime(poi.created_at)),
            h('dt', {}, 'Notes'), h('dd', {}, poi.notes || '—'))),
        h('section', { class: 'panel', 'aria-labelledby': 'tl-h' }, h('h2', { id: 'tl-h' }, 'Appearances'),
          apps.length ? [timeline(Object.entries(byCam).map(([cam, xs]) => ({ name: cam, items: xs.map((a) => ({ start: +new Date(a.best_match_time), end: +new Date(a.best_match_time), label: `${cam} at ${fmtTime(a.best_match_time)}, ${pct(a.similarity)}` })) }))),
            h('ul', { class: 'appearances' }, apps.map((a) => h('li', { class: 'appearance' },
              img(a.thumbnail_url, `Face on ${a.camera_id}`, 'face'),
              h('div', {}, h('strong', {}, a.camera_id), h('div', { class: 'small' }, fmtTime(a.best_match_time)), h('div', { class: 'small' }, `similarity ${pct(a.similarity)}`)),
              h('figure', {}, img(a.entry_frame_url, `Entry frame on ${a.camera_id}`, 'frame'), h('figcaption', {}, 'Entry')),
              h('figure', {}, img(a.last_seen_frame_url, `Last frame on ${a.camera_id}`, 'frame'), h('figcaption', {}, 'Last seen')))))]
            : empty('Not seen yet', 'No camera has matched this person within the retention period.'))),
      h('section', { class: 'panel', 'aria-labelledby': 'hist-h' }, h('h2', { id: 'hist-h' }, 'Alert history'),
        act.alerts.length ? h('div', { class: 'alert-list' }, act.alerts.map((a) => alertCard(a, app))) : empty('No alerts', 'This person has raised no alert.')));
  })();
}
