// The live alert feed: one server-sent-events connection for the whole
// console. The stream's sequence is each event's id, so a reconnect (the
// browser's own, or ours after the stream closed) resumes after the last
// alert seen, and alert ids de-duplicate the list fetched at the start.
import { api } from './api.js';

export function alertFeed(app) {
  const feed = { alerts: [], state: 'connecting', loaded: false, error: null };
  const seen = new Set();
  const subs = new Set(), stateSubs = new Set();
  let es = null, lastId = '', closed = false, retry = null;

  function add(a, live) {
    if (!a || !a.alert_id || seen.has(a.alert_id)) return;
    seen.add(a.alert_id);
    feed.alerts.push(a);
    feed.alerts.sort((x, y) => (y.timestamp || '').localeCompare(x.timestamp || ''));
    subs.forEach((fn) => fn(a, live));
  }
  function setState(s) { feed.state = s; stateSubs.forEach((fn) => fn(s)); }

  async function loadRecent() {
    try {
      const list = await api('/api/v1/alerts');
      list.forEach((a) => add(a, false));
      feed.error = null;
    } catch (err) { feed.error = err; }
    feed.loaded = true;
    subs.forEach((fn) => fn(null, false));
  }

  function connect() {
    if (closed) return;
    const url = '/api/v1/alerts/stream' + (lastId ? `?last_event_id=${encodeURIComponent(lastId)}` : '');
    es = new EventSource(url, { withCredentials: true });
    es.addEventListener('open', () => {
      setState('open');
      if (!feed.loaded) loadRecent();
    });
    es.addEventListener('alert', (e) => {
      lastId = e.lastEventId || lastId;
      try { add(JSON.parse(e.data), true); } catch { /* not an alert: skip it */ }
    });
    es.addEventListener('error', () => {
      setState('reconnecting');
      // The browser retries by itself while it can; once it gives up (the
      // answer was not a stream, a 401 for one) we check the session and
      // open a new stream from the last id.
      if (es.readyState === EventSource.CLOSED && !retry) {
        retry = setTimeout(async () => {
          retry = null;
          try { await api('/api/v1/session'); connect(); } catch { /* a 401 shows the login */ }
        }, 2000);
      }
    });
  }

  feed.subscribe = (fn) => { subs.add(fn); return () => subs.delete(fn); };
  feed.onstate = (fn) => { stateSubs.add(fn); return () => stateSubs.delete(fn); };
  feed.remove = (poiID) => {
    feed.alerts = feed.alerts.filter((a) => a.poi_id !== poiID);
    subs.forEach((fn) => fn(null, false));
  };
  feed.close = () => { closed = true; clearTimeout(retry); if (es) es.close(); };
  connect();
  return feed;
}
