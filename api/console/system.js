// System: the service's health from its own status and metrics.
import { api } from './api.js';
import { h, loading, errorState } from './ui.js';

export function mount(root, app, rest, signal) {
  const box = h('div', { id: 'system' }, loading('Reading the service status'));
  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'System')), box);
  let timer;
  async function load() {
    try {
      const s = await fetch('/api/v1/status', { credentials: 'same-origin', signal }).then((r) => r.json());
      box.replaceChildren(h('dl', { class: 'facts' }, h('dt', {}, 'Status'), h('dd', {}, s.status), h('dt', {}, 'Vectors'), h('dd', {}, String(s.faiss_vectors))));
    } catch (err) { if (err.name !== 'AbortError') box.replaceChildren(errorState(err, load)); }
    timer = setTimeout(load, 2000);
  }
  load();
  return () => clearTimeout(timer);
}
