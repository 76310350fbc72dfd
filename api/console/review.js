// Alert review: an operator acknowledges, confirms or dismisses an alert
// (PATCH /api/v1/alerts/{alert_id}), with an optional note.
import { api } from './api.js';
import { h } from './ui.js';

const actions = [
  { status: 'Acknowledged', label: 'Acknowledge', icon: '✓' },
  { status: 'Confirmed', label: 'Confirm', icon: '‼' },
  { status: 'Dismissed', label: 'Dismiss', icon: '✕' },
];

/** reviewActions returns what app.reviewActions(alert) draws on a card. */
export function reviewActions(app) {
  return (a) => {
    if (!app.can('operator')) return null;
    const id = `note-${a.alert_id}`;
    const note = h('input', { id, type: 'text', maxlength: '1024', placeholder: 'Note (optional)', class: 'review-note' });
    const msg = h('p', { class: 'form-error small', role: 'alert', hidden: true });
    const buttons = actions.map((x) => h('button', {
      type: 'button', class: `btn btn-sm review-${x.status.toLowerCase()}`, 'aria-pressed': String(a.status === x.status),
      onclick: async (e) => {
        const card = e.target.closest('.alert-card');
        buttons.forEach((b) => { b.disabled = true; });
        msg.hidden = true;
        try {
          const updated = await api(`/api/v1/alerts/${encodeURIComponent(a.alert_id)}`, { method: 'PATCH', json: { status: x.status, note: note.value.trim() } });
          a.status = updated?.status || x.status;
          buttons.forEach((b, i) => b.setAttribute('aria-pressed', String(actions[i].status === a.status)));
          const badge = card?.querySelector('.status');
          if (badge) { badge.textContent = a.status; badge.className = `status status-${a.status.toLowerCase()}`; }
          note.value = '';
        } catch (err) {
          msg.hidden = false;
          msg.textContent = err.status === 404 || err.status === 405 ? 'Review is not available on this server.' : err.message;
        } finally { buttons.forEach((b) => { b.disabled = false; }); }
      },
    }, h('span', { 'aria-hidden': 'true' }, x.icon + ' '), x.label));
    return h('div', { class: 'review', role: 'group', 'aria-label': `Review alert ${a.alert_id}` },
      h('label', { for: id, class: 'visually-hidden' }, 'Review note'), note, h('div', { class: 'review-buttons' }, buttons), msg);
  };
}
