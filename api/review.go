package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/audit"
	"poi/internal/erasure"
	"poi/internal/review"
	"poi/internal/store"
	"poi/streams"
)

// maxNoteLen bounds a review note, as a POI's notes are bounded.
const maxNoteLen = 4096

// reviewRequest is the body of PATCH /api/v1/alerts/{alert_id}.
type reviewRequest struct {
	Status string `json:"status"`
	Note   string `json:"note"`
	// Pin keeps a dismissal's negative beyond pipeline.retention.
	Pin bool `json:"pin"`
	// AddReference makes a confirmed sighting's face a reference of the POI.
	AddReference bool `json:"add_reference"`
}

// reviewAnswer is the reviewed alert plus what the review changed.
type reviewAnswer struct {
	streams.Alert
	PreviousStatus string `json:"previous_status"`
	NegativeStored bool   `json:"negative_stored,omitempty"`
	ReferenceAdded string `json:"reference_added,omitempty"`
}

func (s *Server) reviewAlert(c *gin.Context) {
	ctx := c.Request.Context()
	id := c.Param("alert_id")
	if !alertIDForm(id) {
		fail(c, http.StatusNotFound, "alert not found", fmt.Sprintf("no alert %q", id))
		return
	}
	var req reviewRequest
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(c, http.StatusBadRequest, "bad review", "the body must be a JSON object {status, note, pin, add_reference}: "+err.Error())
		return
	}
	if !review.Valid(req.Status) {
		fail(c, http.StatusBadRequest, "bad status", fmt.Sprintf("status %q: want %s, %s or %s", req.Status, review.Acknowledged, review.Confirmed, review.Dismissed))
		return
	}
	if len(req.Note) > maxNoteLen {
		fail(c, http.StatusBadRequest, "bad note", fmt.Sprintf("note: over %d characters", maxNoteLen))
		return
	}
	if req.Pin && req.Status != review.Dismissed {
		fail(c, http.StatusBadRequest, "bad review", "pin applies to a Dismissed review only")
		return
	}
	if req.AddReference && req.Status != review.Confirmed {
		fail(c, http.StatusBadRequest, "bad review", "add_reference applies to a Confirmed review only")
		return
	}
	raw, err := s.deps.Store.Alert(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "alert not found", fmt.Sprintf("no alert %q", id))
		return
	}
	if err != nil {
		s.internal(c, "review "+id, err)
		return
	}
	var cur streams.Alert
	if err := json.Unmarshal(raw, &cur); err != nil {
		s.internal(c, "review "+id, fmt.Errorf("alert record: %w", err))
		return
	}
	if err := review.Check(cur.Status, req.Status); err != nil {
		fail(c, http.StatusConflict, "invalid transition", fmt.Sprintf("alert %s is %s: %v", id, cur.Status, err))
		return
	}
	ans := reviewAnswer{PreviousStatus: cur.Status}
	// What the review teaches is written before the review itself, so a
	// failure here leaves the alert reviewable again; should the review
	// then lose a race to another one, the lesson is taken back.
	undo := func() {}
	switch {
	case req.Status == review.Dismissed:
		stored, err := s.storeNegative(c, cur, req.Pin)
		if err != nil {
			s.internal(c, "review "+id+": negative", err)
			return
		}
		ans.NegativeStored = stored
		undo = func() {
			if err := s.deps.Store.RemoveNegative(ctx, cur.POIID, id); err != nil {
				s.deps.Log.Error("take back negative of a lost review", "alert_id", id, "error", err)
			}
		}
	case req.AddReference:
		eid, code, err := s.learnReference(c, cur)
		if err != nil {
			if code != 0 {
				fail(c, code, "reference not added", err.Error())
				return
			}
			s.internal(c, "review "+id+": reference", err)
			return
		}
		ans.ReferenceAdded = eid
		undo = func() {
			if _, err := s.removeRef(c, cur.POIID, eid); err != nil {
				s.deps.Log.Error("take back reference of a lost review", "alert_id", id, "error", err)
			}
		}
	}
	p, _ := s.caller(c)
	who := p.actor()
	now := time.Now().UTC().Format(time.RFC3339)
	var prev string
	updated, err := s.deps.Store.UpdateAlert(ctx, id, func(old []byte) ([]byte, error) {
		var a streams.Alert
		if err := json.Unmarshal(old, &a); err != nil {
			return nil, fmt.Errorf("alert record: %w", err)
		}
		if err := review.Check(a.Status, req.Status); err != nil {
			return nil, err
		}
		prev = a.Status
		a.Status, a.ReviewedBy, a.ReviewedAt, a.ReviewNote = req.Status, &who, now, req.Note
		return json.Marshal(a)
	})
	switch {
	case errors.Is(err, review.ErrTransition):
		undo()
		fail(c, http.StatusConflict, "invalid transition", fmt.Sprintf("alert %s: %v", id, err))
		return
	case errors.Is(err, store.ErrNotFound):
		undo()
		fail(c, http.StatusNotFound, "alert not found", fmt.Sprintf("no alert %q", id))
		return
	case err != nil:
		undo()
		s.internal(c, "review "+id, err)
		return
	}
	if err := json.Unmarshal(updated, &ans.Alert); err != nil {
		s.internal(c, "review "+id, err)
		return
	}
	ans.PreviousStatus = prev
	s.audit(c, audit.AlertReview, map[string]any{"alert_id": id, "poi_id": cur.POIID, "camera_id": cur.Match.CameraID,
		"status": req.Status, "previous": prev, "pinned": req.Pin, "reference_added": ans.ReferenceAdded})
	s.publishReview(c, ans, who, now)
	c.JSON(http.StatusOK, ans)
}

// storeNegative keeps the dismissed alert's face as a negative of its POI.
// An alert whose face is gone (raised before faces were kept beside
// alerts) is reviewed all the same, and says it taught nothing.
func (s *Server) storeNegative(c *gin.Context, a streams.Alert, pin bool) (bool, error) {
	ctx := c.Request.Context()
	vec, err := s.deps.Store.AlertVector(ctx, a.AlertID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = s.deps.Store.AddNegative(ctx, a.POIID, a.AlertID, vec, s.deps.Config.Pipeline.Retention, pin, time.Now())
	if errors.Is(err, store.ErrErased) {
		return false, nil
	}
	return err == nil, err
}

// learnReference adds a confirmed alert's face to its POI's references; a
// client-side failure comes with its status code.
func (s *Server) learnReference(c *gin.Context, a streams.Alert) (string, int, error) {
	ctx := c.Request.Context()
	vec, err := s.deps.Store.AlertVector(ctx, a.AlertID)
	if errors.Is(err, store.ErrNotFound) {
		return "", http.StatusConflict, fmt.Errorf("alert %s: its face is no longer kept, so it cannot become a reference", a.AlertID)
	}
	if err != nil {
		return "", 0, err
	}
	var photo []byte
	// The track's thumbnail, named by the seed's thumbnail_path, is the
	// face's picture while it lives.
	if track, ok := strings.CutPrefix(a.Match.ThumbnailPath, "/api/v1/thumbnail/"); ok && track != "" {
		if b, err := s.deps.Store.Thumbnail(ctx, track); err == nil {
			photo = b
		}
	}
	p, ids, err := s.deps.Store.AddRefs(ctx, a.POIID, []store.Ref{{Vector: vec, Photo: photo}}, true, s.deps.Config.Review.MaxLearned)
	switch {
	case errors.Is(err, store.ErrTooMany):
		return "", http.StatusConflict, err
	case errors.Is(err, store.ErrNotFound):
		return "", http.StatusNotFound, fmt.Errorf("the POI of alert %s is gone", a.AlertID)
	case err != nil:
		return "", 0, err
	}
	if err := s.refsChanged(c, p); err != nil {
		return "", 0, err
	}
	return ids[0], 0, nil
}

// publishReview tells integrators on POI_ALERTS. The review is already
// committed, so a failed publish is logged, not answered as a failure.
func (s *Server) publishReview(c *gin.Context, a reviewAnswer, who streams.AuditActor, at string) {
	ctx := c.Request.Context()
	ev := streams.Review{Header: streams.Current(), AlertID: a.AlertID, POIID: a.POIID, CameraID: a.Match.CameraID, Status: a.Status,
		Previous: a.PreviousStatus, ReviewedBy: who, ReviewedAt: at, Similarity: a.Match.SimilarityScore, ReferenceAdded: a.ReferenceAdded}
	body, err := json.Marshal(ev)
	if err != nil {
		s.deps.Log.Error("encode review event", "alert_id", a.AlertID, "error", err)
		return
	}
	msg := nats.NewMsg(streams.ReviewSubject(a.Status, a.POIID))
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, "review:"+a.AlertID+":"+a.Status)
	ack, err := s.deps.JS.PublishMsg(ctx, msg)
	if err != nil {
		s.deps.Log.Warn("review not published on "+streams.Alerts, "alert_id", a.AlertID, "error", err)
		return
	}
	// As the alert stage does: a purge that swept the stream before this
	// landed would leave it there.
	erased, err := s.deps.Store.Erased(ctx, a.POIID)
	if err != nil {
		s.deps.Log.Warn("review published; erasure re-check failed", "alert_id", a.AlertID, "error", err)
		return
	}
	if erased {
		if err := erasure.EraseMessage(ctx, s.deps.JS, streams.Alerts, ack.Sequence); err != nil {
			s.deps.Log.Error("unpublish review of an erased poi", "alert_id", a.AlertID, "error", err)
		}
	}
}

// alertFilter is the query of GET /api/v1/alerts.
type alertFilter struct {
	status, poi, camera string
	since               time.Time
	limit               int
	any                 bool
}

func parseAlertFilter(c *gin.Context) (alertFilter, string) {
	f := alertFilter{limit: maxAlertsListed}
	if v, ok := c.GetQuery("status"); ok {
		if v != review.New && !review.Valid(v) {
			return f, fmt.Sprintf("status %q: want New, Acknowledged, Confirmed or Dismissed", v)
		}
		f.status, f.any = v, true
	}
	if v, ok := c.GetQuery("poi_id"); ok {
		if !isPOIID(v) {
			return f, fmt.Sprintf("poi_id %q is not a POI id", v)
		}
		f.poi, f.any = v, true
	}
	if v, ok := c.GetQuery("camera_id"); ok {
		if v == "" {
			return f, "camera_id is empty"
		}
		f.camera, f.any = v, true
	}
	if v, ok := c.GetQuery("since"); ok {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, fmt.Sprintf("since %q is not an RFC 3339 time", v)
		}
		f.since, f.any = t, true
	}
	if v, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxRecentAlerts {
			return f, fmt.Sprintf("limit %q: want 1 to %d", v, store.MaxRecentAlerts)
		}
		f.limit = n
	}
	return f, ""
}

// match reports whether an alert passes the filter.
func (f alertFilter) match(a streams.Alert) bool {
	if f.status != "" && a.Status != f.status || f.poi != "" && a.POIID != f.poi || f.camera != "" && a.Match.CameraID != f.camera {
		return false
	}
	if !f.since.IsZero() {
		t, err := time.Parse(time.RFC3339, a.Timestamp)
		if err != nil || t.Before(f.since) {
			return false
		}
	}
	return true
}

func (s *Server) listAlerts(c *gin.Context) {
	f, bad := parseAlertFilter(c)
	if bad != "" {
		fail(c, http.StatusBadRequest, "bad query", bad)
		return
	}
	n := f.limit
	if f.any {
		n = store.MaxRecentAlerts // filter over everything the list keeps
	}
	alerts, err := s.deps.Store.RecentAlerts(c.Request.Context(), n)
	if err != nil {
		s.internal(c, "list alerts", err)
		return
	}
	out := make([]json.RawMessage, 0, min(len(alerts), f.limit))
	for _, raw := range alerts {
		if len(out) == f.limit {
			break
		}
		if f.any {
			var a streams.Alert
			if err := json.Unmarshal(raw, &a); err != nil || !f.match(a) {
				continue
			}
		}
		out = append(out, raw)
	}
	c.JSON(http.StatusOK, out)
}

// alertIDForm: alert ids are the seed's alert-... form; used only to
// answer 404 early without touching Redis.
func alertIDForm(id string) bool { return strings.HasPrefix(id, "alert-") && len(id) < 200 }
