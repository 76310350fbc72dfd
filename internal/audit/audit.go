// Package audit writes and reads the audit trail: one record per action that
// changes state or looks for someone (enrolments, deletions, searches, alert
// clearing, key changes, logins, failed authentication), kept in the
// append-only JetStream stream POI_AUDIT.
package audit

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"poi/streams"
)

// Actions. Their names are dotted lower-case words: each word is a subject
// token (streams.AuditSubj + "." + action), so a reader filters by action on
// the server.
const (
	POIEnroll     = "poi.enroll"
	POIDelete     = "poi.delete"
	Search        = "search"
	AlertsClear   = "alerts.clear"
	AlertReview   = "alert.review"
	POIUpdate     = "poi.update"
	POIImageAdd   = "poi.image.add"
	POIImageDel   = "poi.image.remove"
	POIExpire     = "poi.expire"
	KeyCreate     = "key.create"
	KeyRevoke     = "key.revoke"
	SessionLogin  = "session.login"
	SessionLogout = "session.logout"
	// AuthFailed is a request refused with 401: no, a malformed, an
	// unknown, a revoked or an expired key, or a dead session.
	AuthFailed = "auth.failed"
	// AuthDenied is a request refused with 403: a role too low, or a
	// cookie-authenticated change without its CSRF token.
	AuthDenied = "auth.denied"
)

var actionRE = regexp.MustCompile(`^[a-z][a-z_]*(\.[a-z][a-z_]*)*$`)

// ValidAction reports whether s can name an action (it need not be one of
// the constants: other parts of the service add their own).
func ValidAction(s string) bool { return actionRE.MatchString(s) && len(s) <= 64 }

// Subject is the subject an action's records are stored under.
func Subject(action string) string { return streams.AuditSubj + "." + action }

// Recorder appends records to the trail.
type Recorder struct {
	js jetstream.JetStream
}

// NewRecorder records through js.
func NewRecorder(js jetstream.JetStream) *Recorder { return &Recorder{js: js} }

// Record appends ev and waits for JetStream to store it: a record that is
// not stored is an error the caller must act on.
func (r *Recorder) Record(ctx context.Context, ev streams.AuditEvent) error {
	if !ValidAction(ev.Action) {
		return fmt.Errorf("audit %q: not an action name", ev.Action)
	}
	ev.Header = streams.Current()
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	msg, err := streams.NewMsg(Subject(ev.Action), &ev)
	if err != nil {
		return fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	if _, err := r.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	return nil
}

// Query selects records: those stored in [Since, Until] (zero: open), of
// one action and one actor name when set, at most Limit.
type Query struct {
	Since, Until time.Time
	Action       string
	Actor        string
	Limit        int
}

// Entry is a record with its place in the stream.
type Entry struct {
	Seq uint64 `json:"seq"`
	streams.AuditEvent
}

// Result is a page of records, oldest first. More says the limit cut it
// short: ask again with Since after the last record's time.
type Result struct {
	Records []Entry `json:"records"`
	More    bool    `json:"more"`
}

// fetchBatch is how many records one fetch asks for.
const fetchBatch = 256

// Read returns the records q selects. It reads through a short-lived
// consumer that starts at q.Since and is filtered by action on the server;
// the actor is matched here.
func Read(ctx context.Context, js jetstream.JetStream, q Query) (Result, error) {
	res := Result{Records: []Entry{}}
	if q.Action != "" && !ValidAction(q.Action) {
		return res, nil // no record can have it
	}
	st, err := js.Stream(ctx, streams.Audit)
	if err != nil {
		return res, fmt.Errorf("audit read: %w", err)
	}
	cfg := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	}
	if !q.Since.IsZero() {
		since := q.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	if q.Action != "" {
		cfg.FilterSubject = Subject(q.Action)
	}
	cons, err := st.CreateConsumer(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("audit read: %w", err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, name) // it expires by itself after InactiveThreshold anyway
	}()
	pending := cons.CachedInfo().NumPending
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, fetchBatch)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return res, fmt.Errorf("audit read: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return res, fmt.Errorf("audit read: %w", err)
			}
			pending = meta.NumPending
			var ev streams.AuditEvent
			if err := streams.DecodeMsg(m.Headers(), m.Data(), &ev); err != nil {
				return res, fmt.Errorf("audit read seq %d: %w", meta.Sequence.Stream, err)
			}
			if !q.Until.IsZero() && ev.Time.After(q.Until) {
				return res, nil
			}
			if q.Actor != "" && !strings.EqualFold(ev.Actor.Name, q.Actor) {
				continue
			}
			if q.Limit > 0 && len(res.Records) == q.Limit {
				res.More = true
				return res, nil
			}
			res.Records = append(res.Records, Entry{Seq: meta.Sequence.Stream, AuditEvent: ev})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return res, fmt.Errorf("audit read: %w", err)
		}
		if got == 0 {
			return res, nil
		}
	}
	return res, nil
}
