// Cameras: every camera the service knows, refreshed live.
import { api } from './api.js';
import { h, loading, empty, errorState } from './ui.js';

export function mount(root, app, rest, signal) {
  const grid = h('div', { class: 'cam-grid', id: 'cam-grid' }, loading('Loading cameras'));
  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'Cameras')), grid);
  let timer;
  async function load() {
    try {
      const r = await api('/api/v1/cameras', { signal });
      grid.replaceChildren(...(r.cameras.length ? r.cameras.map((c) => h('article', { class: 'card cam-card' }, h('h2', {}, c.name || c.id), h('p', { class: 'muted small' }, c.id))) : [empty('No camera yet', 'Cameras appear once they publish frames on MQTT or are configured.')]));
    } catch (err) { if (err.name !== 'AbortError') grid.replaceChildren(errorState(err, load)); }
    timer = setTimeout(load, 2000);
  }
  load();
  return () => clearTimeout(timer);
}
