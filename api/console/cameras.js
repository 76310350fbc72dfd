// Cameras: each camera's newest frame with the boxes of its open face
// tracks, its frame rate and lag, refreshed every two seconds.
import { api } from './api.js';
import { h, loading, empty, errorState, ago, fmtTime } from './ui.js';

const refresh = 2000;

export function mount(root, app, rest, signal) {
  const grid = h('div', { class: 'cam-grid', id: 'cam-grid' }, loading('Loading cameras'));
  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'Cameras')),
    h('p', { class: 'muted lead' }, 'The newest frame of each camera with the faces it is tracking; refreshed every 2 s.'), grid);
  const cards = new Map();
  let timer;
  async function load() {
    try {
      const { cameras } = await api('/api/v1/cameras', { signal });
      if (!cameras.length) {
        grid.replaceChildren(empty('No camera yet', 'Cameras appear once they publish frames on MQTT or are configured.'));
      } else {
        const lives = await Promise.all(cameras.map((c) => api(`/api/v1/cameras/${encodeURIComponent(c.id)}/live`, { signal }).catch((err) => ({ error: err }))));
        if (!cards.size) grid.replaceChildren();
        cameras.forEach((c, i) => {
          let card = cards.get(c.id);
          if (!card) { card = camCard(c); cards.set(c.id, card); grid.append(card.el); }
          card.update(lives[i]);
        });
      }
    } catch (err) {
      if (err.name === 'AbortError') return;
      cards.clear();
      grid.replaceChildren(errorState(err, load));
    }
    timer = setTimeout(load, refresh);
  }
  load();
  return () => clearTimeout(timer);
}

function camCard(cam) {
  const frame = h('div', { class: 'boxed cam-frame' });
  const facts = h('dl', { class: 'facts' });
  const el = h('article', { class: 'card cam-card', dataset: { cameraId: cam.id }, 'aria-label': `Camera ${cam.name || cam.id}` },
    h('div', { class: 'row' }, h('h2', {}, cam.name || cam.id), h('span', { class: 'muted small' }, cam.id)), frame, facts);
  let shown = '';
  function update(live) {
    if (live.error) {
      frame.replaceChildren(h('div', { class: 'noframe' }, live.error.status === 404 ? 'Nothing received from this camera yet' : live.error.message));
      facts.replaceChildren();
      shown = '';
      return;
    }
    const tracks = live.open_tracks || [];
    const url = live.latest_frame_url ? `${live.latest_frame_url}?at=${encodeURIComponent(live.last_frame)}` : '';
    if (url !== shown) {
      shown = url;
      if (!url) frame.replaceChildren(h('div', { class: 'noframe' }, 'No face in view: no open track'));
      else {
        const im = h('img', { src: url, alt: `Newest frame of ${cam.id} with ${tracks.length} face${tracks.length === 1 ? '' : 's'} tracked` });
        im.addEventListener('load', () => {
          const W = im.naturalWidth, H = im.naturalHeight;
          for (const t of tracks.filter((x) => x.last_seen === live.last_frame)) {
            const [x1, y1, x2, y2] = t.bbox;
            frame.append(h('div', { class: 'bbox', title: t.track_id, style: { left: `${(100 * x1) / W}%`, top: `${(100 * y1) / H}%`, width: `${(100 * (x2 - x1)) / W}%`, height: `${(100 * (y2 - y1)) / H}%` } },
              h('span', { class: 'bbox-label' }, t.track_id.split(':').pop())));
          }
        });
        frame.replaceChildren(im);
      }
    }
    const lag = live.lag_seconds;
    facts.replaceChildren(
      h('dt', {}, 'Frame rate'), h('dd', {}, live.fps ? `${live.fps.toFixed(1)} fps` : '—'),
      h('dt', {}, 'Lag'), h('dd', { class: lag > 10 ? 'warn-text' : '' }, lag === undefined ? '—' : `${lag.toFixed(1)} s${lag > 10 ? ' (behind)' : ''}`),
      h('dt', {}, 'Open tracks'), h('dd', {}, String(tracks.length)),
      h('dt', {}, 'Last received'), h('dd', { title: fmtTime(live.last_received) }, live.last_received ? ago(live.last_received) : '—'));
  }
  return { el, update };
}
