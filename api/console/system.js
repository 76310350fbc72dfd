// System: status, throughput and lag per stage as small live charts from
// the service's own Prometheus metrics, partitions owned, dead letters.
import { api, ApiError } from './api.js';
import { h, loading, errorState } from './ui.js';

const every = 2000, keep = 60;

/** parseMetrics reads Prometheus text into {name: [{labels, value}]}. */
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    (out[m[1]] ||= []).push({ labels, value: Number(m[3]) });
  }
  return out;
}

function byStage(metrics, name) {
  const r = {};
  for (const s of metrics[name] || []) r[s.labels.stage] = (r[s.labels.stage] || 0) + s.value;
  return r;
}

const svgNS = 'http://www.w3.org/2000/svg';
function spark(values, label) {
  const w = 240, hgt = 48, max = Math.max(1, ...values);
  const svg = document.createElementNS(svgNS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const pts = values.map((v, i) => `${(i * w) / (keep - 1)},${hgt - 2 - (v / max) * (hgt - 4)}`).join(' ');
  const line = document.createElementNS(svgNS, 'polyline');
  line.setAttribute('points', pts);
  svg.append(line);
  return svg;
}

export function mount(root, app, rest, signal) {
  const box = h('div', { id: 'system' }, loading('Reading the service metrics'));
  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'System')),
    h('p', { class: 'muted lead' }, 'From the service\'s own metrics, every 2 s: what this process handles and what waits.'), box);
  const hist = {};
  let last = null, timer;
  async function load() {
    try {
      const [status, text] = await Promise.all([
        fetch('/api/v1/status', { credentials: 'same-origin', signal }).then((r) => r.json()),
        api('/metrics', { signal }),
      ]);
      const m = parseMetrics(text), now = Date.now();
      const processed = byStage(m, 'poi_stage_processed_total'), pending = byStage(m, 'poi_consumer_pending');
      const owned = byStage(m, 'poi_partitions_owned'), dead = byStage(m, 'poi_stage_dead_lettered_total');
      const stages = [...new Set([...Object.keys(processed), ...Object.keys(pending)])].sort();
      for (const st of stages) {
        const rate = last && last.processed[st] !== undefined ? Math.max(0, (processed[st] - last.processed[st]) / ((now - last.at) / 1000)) : 0;
        const x = (hist[st] ||= { rate: Array(keep).fill(0), lag: Array(keep).fill(0) });
        x.rate.push(rate); x.rate.shift();
        x.lag.push(pending[st] || 0); x.lag.shift();
      }
      last = { at: now, processed };
      const deadTotal = Object.values(dead).reduce((a, b) => a + b, 0);
      const ok = status.status === 'running';
      box.replaceChildren(
        h('div', { class: 'tiles' },
          h('div', { class: `tile ${ok ? 'ok' : 'bad'}` }, h('span', { class: 'label' }, 'Status'), h('strong', { id: 'sys-status' }, ok ? '● running' : `✖ ${status.status}`),
            status.down?.length ? h('span', { class: 'small' }, `down: ${status.down.join(', ')}`) : h('span', { class: 'small muted' }, 'Redis and NATS answer')),
          h('div', { class: 'tile' }, h('span', { class: 'label' }, 'MQTT'), h('strong', {}, status.mqtt_connected ? '● connected' : '✖ disconnected')),
          h('div', { class: 'tile' }, h('span', { class: 'label' }, 'Vectors indexed'), h('strong', {}, String(status.faiss_vectors))),
          h('div', { class: `tile ${deadTotal ? 'warn' : ''}` }, h('span', { class: 'label' }, 'Dead-lettered'), h('strong', { id: 'sys-dead' }, String(deadTotal)),
            h('span', { class: 'small muted' }, deadTotal ? 'messages given up on: see POI_DLQ' : 'none'))),
        h('h2', {}, 'Stages'),
        h('div', { class: 'charts', id: 'sys-stages' }, stages.map((st) => {
          const x = hist[st], rate = x.rate[keep - 1], lag = x.lag[keep - 1];
          return h('section', { class: 'card chart', dataset: { stage: st }, 'aria-label': `Stage ${st}` },
            h('div', { class: 'row' }, h('h3', {}, st), owned[st] !== undefined && h('span', { class: 'pill' }, `${owned[st]} partition${owned[st] === 1 ? '' : 's'} owned`)),
            h('div', { class: 'chart-row' }, h('span', { class: 'label' }, 'Throughput'), h('strong', {}, `${rate.toFixed(1)}/s`)),
            spark(x.rate, `${st} throughput, now ${rate.toFixed(1)} per second`),
            h('div', { class: 'chart-row' }, h('span', { class: 'label' }, 'Lag (pending)'), h('strong', {}, String(lag))),
            spark(x.lag, `${st} lag, now ${lag} messages pending`),
            h('div', { class: 'small muted' }, `${processed[st] || 0} processed · ${dead[st] || 0} dead-lettered`));
        })));
    } catch (err) {
      if (err.name === 'AbortError') return;
      box.replaceChildren(errorState(err instanceof ApiError ? err : new ApiError(0, {}), load));
    }
    timer = setTimeout(load, every);
  }
  load();
  return () => clearTimeout(timer);
}
