package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"poi/internal/audit"
	"poi/internal/store"
	"poi/streams"
	"poi/workers/embed"
)

// Search limits of the seed.
const (
	defaultTopK = 20
	maxTopK     = 200
)

type queryRange struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type zoneBody struct {
	Zone          string  `json:"zone"`
	SceneID       string  `json:"scene_id"`
	EntryTime     string  `json:"entry_time"`
	ExitTime      string  `json:"exit_time"`
	DwellSeconds  float64 `json:"dwell_seconds"`
	EntryFrameURL string  `json:"entry_frame_url"`
	ExitFrameURL  string  `json:"exit_frame_url"`
}

type poiAppearance struct {
	TrackID          string     `json:"track_id"`
	CameraID         string     `json:"camera_id"`
	Similarity       float64    `json:"similarity"`
	BestMatchTime    string     `json:"best_match_time"`
	EntryFrameURL    string     `json:"entry_frame_url"`
	LastSeenFrameURL string     `json:"last_seen_frame_url"`
	ZoneAppearances  []zoneBody `json:"zone_appearances"`
	ThumbnailURL     string     `json:"thumbnail_url"`
}

type detectionAppearance struct {
	FaissID         int64      `json:"faiss_id"`
	TrackID         string     `json:"track_id"`
	CameraID        string     `json:"camera_id"`
	Similarity      float64    `json:"similarity"`
	EntrySimilarity float64    `json:"entry_similarity"`
	ExitSimilarity  float64    `json:"exit_similarity"`
	EntryTimestamp  string     `json:"entry_timestamp"`
	ExitTimestamp   string     `json:"exit_timestamp"`
	EntryFrameURL   string     `json:"entry_frame_url"`
	ExitFrameURL    string     `json:"exit_frame_url"`
	BBox            []int      `json:"bbox"`
	ZoneAppearances []zoneBody `json:"zone_appearances"`
}

type searchBody struct {
	EventType        string     `json:"event_type"`
	QueryRange       queryRange `json:"query_range"`
	QueryTimestamp   string     `json:"query_timestamp"`
	MatchedPOIID     string     `json:"matched_poi_id,omitempty"`
	TotalAppearances int        `json:"total_appearances"`
	Appearances      any        `json:"appearances"`
	SearchStats      any        `json:"search_stats"`
}

type poiStats struct {
	SearchStage    string  `json:"search_stage"`
	POISimilarity  float64 `json:"poi_similarity"`
	QueryLatencyMS float64 `json:"query_latency_ms"`
}

type detectionStats struct {
	SearchStage     string  `json:"search_stage"`
	VectorsSearched int     `json:"vectors_searched"`
	RawHits         int     `json:"raw_hits"`
	UniqueTracks    int     `json:"unique_tracks"`
	QueryLatencyMS  float64 `json:"query_latency_ms"`
}

// FrameURL is the API path serving a frame key.
func FrameURL(key string) string {
	return "/api/v1/frames/" + base64.RawURLEncoding.EncodeToString([]byte(key))
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func round4(x float64) float64 { return float64(int64(x*10000+0.5)) / 10000 }

func sinceMS(t time.Time) float64 { return round4(float64(time.Since(t).Microseconds()) / 1000) }

// parseRange reads start_time and end_time (ISO 8601); the defaults cover
// the whole retention period up to now.
func (s *Server) parseRange(c *gin.Context, now time.Time) (from, to time.Time, ok bool) {
	from, to = now.Add(-s.deps.Config.Pipeline.Retention), now
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"start_time", &from}, {"end_time", &to}} {
		v := strings.TrimSpace(formValue(c, f.name))
		if v == "" {
			continue
		}
		t, err := parseISO(v)
		if err != nil {
			fail(c, http.StatusUnprocessableEntity, "invalid "+f.name, fmt.Sprintf("%s: %q is not an ISO 8601 timestamp", f.name, v))
			return from, to, false
		}
		*f.dst = t
	}
	if !from.Before(to) {
		fail(c, http.StatusUnprocessableEntity, "invalid time range", fmt.Sprintf("start_time %s is not before end_time %s", rfc3339(from), rfc3339(to)))
		return from, to, false
	}
	return from, to, true
}

// parseISO accepts RFC 3339 and the common ISO 8601 forms without a zone
// (read as UTC).
func parseISO(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not ISO 8601: %q", v)
}

func (s *Server) search(c *gin.Context) {
	start := time.Now()
	if !s.parseMultipart(c, 1) {
		return
	}
	topK := defaultTopK
	if v := strings.TrimSpace(formValue(c, "top_k")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxTopK {
			fail(c, http.StatusUnprocessableEntity, "invalid top_k", fmt.Sprintf("top_k: %q, want an integer in 1..%d", v, maxTopK))
			return
		}
		topK = n
	}
	now := time.Now().UTC()
	from, to, ok := s.parseRange(c, now)
	if !ok {
		return
	}
	reason := strings.TrimSpace(formValue(c, "reason"))
	if len(reason) > maxReason {
		fail(c, http.StatusUnprocessableEntity, "invalid reason", fmt.Sprintf("reason: over %d characters", maxReason))
		return
	}
	files := c.Request.MultipartForm.File["image"]
	if len(files) != 1 {
		fail(c, http.StatusUnprocessableEntity, "invalid image", fmt.Sprintf("image: %d files given, want 1", len(files)))
		return
	}
	data, err := s.readUpload(files[0])
	if err != nil {
		fail(c, http.StatusRequestEntityTooLarge, "image too large", "image: "+err.Error())
		return
	}
	ctx := c.Request.Context()
	rep, err := s.deps.Embed.Do(ctx, data, embed.Params{Mode: embed.ModeLargest})
	if err != nil {
		code, msg := uploadError(err)
		fail(c, code, msg, "image: "+err.Error())
		return
	}
	q := rep.Faces[rep.Used].Embedding
	body := searchBody{
		EventType:      "offline_search_result",
		QueryRange:     queryRange{Start: rfc3339(from), End: rfc3339(to)},
		QueryTimestamp: rfc3339(now),
	}

	hits, err := s.deps.POI.Index().Search(q, 1)
	if err != nil {
		s.internal(c, "search poi index", err)
		return
	}
	if len(hits) > 0 && float64(hits[0].Similarity) >= s.deps.Config.Face.MatchThreshold {
		apps, err := s.poiAppearances(ctx, hits[0].POIID, from, to, topK)
		if err != nil {
			s.internal(c, "search poi appearances", err)
			return
		}
		body.MatchedPOIID = hits[0].POIID
		body.TotalAppearances, body.Appearances = len(apps), apps
		body.SearchStats = poiStats{SearchStage: "poi_index", POISimilarity: round4(float64(hits[0].Similarity)), QueryLatencyMS: sinceMS(start)}
		if !s.auditSearch(c, "poi_index", from, to, len(apps), reason, map[string]any{"matched_poi_id": body.MatchedPOIID}) {
			return
		}
		c.JSON(http.StatusOK, body)
		return
	}

	// Stage 2 looks through every face seen, not just the watchlist.
	if reason == "" && s.deps.Config.Search.RequireReason {
		s.auditSearch(c, "detection_index", from, to, 0, "", map[string]any{"refused": "reason required"})
		fail(c, http.StatusUnprocessableEntity, "reason required",
			"reason: a search of every face seen (stage 2) needs a reason, such as a case number (search.require_reason)")
		return
	}
	apps, stats, err := s.detectionAppearances(ctx, q, from, to, topK)
	if err != nil {
		s.internal(c, "search detection index", err)
		return
	}
	stats.QueryLatencyMS = sinceMS(start)
	body.TotalAppearances, body.Appearances, body.SearchStats = len(apps), apps, stats
	if !s.auditSearch(c, "detection_index", from, to, len(apps), reason, nil) {
		return
	}
	c.JSON(http.StatusOK, body)
}

// maxReason bounds a search's reason.
const maxReason = 256

// auditSearch records a search. No result leaves the service unrecorded:
// when the record cannot be stored the answer is a 503.
func (s *Server) auditSearch(c *gin.Context, stage string, from, to time.Time, results int, reason string, extra map[string]any) bool {
	d := map[string]any{"stage": stage, "start_time": rfc3339(from), "end_time": rfc3339(to), "results": results, "reason": reason}
	for k, v := range extra {
		d[k] = v
	}
	if s.audit(c, audit.Search, d) {
		return true
	}
	fail(c, http.StatusServiceUnavailable, "audit unavailable", "the search was not answered: its audit record could not be stored (request "+c.GetString(requestIDHeader)+")")
	return false
}

func (s *Server) zones(ctx context.Context, track string) ([]zoneBody, error) {
	zs, err := s.deps.Store.ZoneAppearances(ctx, track)
	if err != nil {
		return nil, err
	}
	out := make([]zoneBody, 0, len(zs))
	for _, z := range zs {
		zb := zoneBody{Zone: z.Zone, SceneID: z.SceneID, EntryTime: rfc3339(z.Entry), ExitTime: rfc3339(z.Exit), DwellSeconds: round4(z.Dwell)}
		if z.EntryFrame != "" {
			zb.EntryFrameURL = FrameURL(z.EntryFrame)
		}
		if z.ExitFrame != "" {
			zb.ExitFrameURL = FrameURL(z.ExitFrame)
		}
		out = append(out, zb)
	}
	return out, nil
}

// overlaps reports whether a track's time span meets [from, to].
func overlaps(t store.Track, from, to time.Time) bool {
	end := t.LastSeen
	if !t.Exit.IsZero() {
		end = t.Exit
	}
	return !t.Entry.After(to) && !end.Before(from)
}

func (s *Server) poiAppearances(ctx context.Context, poi string, from, to time.Time, topK int) ([]poiAppearance, error) {
	apps, err := s.deps.Store.Appearances(ctx, poi)
	if err != nil {
		return nil, err
	}
	k := s.deps.Store.Keys()
	out := []poiAppearance{}
	for _, a := range apps {
		t, err := s.deps.Store.GetTrack(ctx, a.TrackID)
		if errors.Is(err, store.ErrNotFound) {
			continue // expired
		}
		if err != nil {
			return nil, err
		}
		if !overlaps(t, from, to) {
			continue
		}
		zs, err := s.zones(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, poiAppearance{
			TrackID: t.ID, CameraID: t.CameraID, Similarity: round4(a.Similarity), BestMatchTime: rfc3339(a.BestTime),
			EntryFrameURL: FrameURL(k.TrackFrame(t.ID, "entry")), LastSeenFrameURL: FrameURL(k.TrackFrame(t.ID, "last")),
			ZoneAppearances: zs, ThumbnailURL: "/api/v1/thumbnail/" + t.ID,
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].BestMatchTime > out[j].BestMatchTime })
	if len(out) > topK {
		out = out[:topK]
	}
	return out, nil
}

func (s *Server) detectionAppearances(ctx context.Context, q []float32, from, to time.Time, topK int) ([]detectionAppearance, detectionStats, error) {
	stats := detectionStats{SearchStage: "detection_index"}
	hits, st, err := s.deps.Detections.Index().Search(q, from, to, topK)
	if err != nil {
		return nil, stats, err
	}
	stats.VectorsSearched = st.VectorsSearched
	ids := make([]int64, 0, len(hits))
	for _, h := range hits {
		if float64(h.Similarity) >= s.deps.Config.Face.SearchThreshold {
			ids = append(ids, h.ID)
		}
	}
	stats.RawHits = len(ids)
	samples, err := s.deps.Store.GetSamples(ctx, ids)
	if err != nil {
		return nil, stats, err
	}
	type group struct {
		best, first, last struct {
			sim float64
			at  time.Time
			s   store.Sample
		}
	}
	groups := map[string]*group{}
	var order []string
	for _, h := range hits {
		sm, ok := samples[h.ID]
		if !ok {
			continue
		}
		sim := float64(h.Similarity)
		g, ok := groups[sm.TrackID]
		if !ok {
			g = &group{}
			groups[sm.TrackID] = g
			order = append(order, sm.TrackID)
			g.best.sim, g.first.sim, g.last.sim = -2, -2, -2
		}
		if sim > g.best.sim {
			g.best.sim, g.best.at, g.best.s = sim, sm.Time, sm
		}
		if g.first.sim == -2 || sm.Time.Before(g.first.at) {
			g.first.sim, g.first.at = sim, sm.Time
		}
		if g.last.sim == -2 || sm.Time.After(g.last.at) {
			g.last.sim, g.last.at = sim, sm.Time
		}
	}
	k := s.deps.Store.Keys()
	out := []detectionAppearance{}
	for _, id := range order {
		g := groups[id]
		t, err := s.deps.Store.GetTrack(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, stats, err
		}
		zs, err := s.zones(ctx, id)
		if err != nil {
			return nil, stats, err
		}
		exitTS, exitKey := t.Exit, k.TrackExitFrame(id)
		if exitTS.IsZero() {
			exitTS, exitKey = t.LastSeen, k.TrackFrame(id, "last")
		}
		out = append(out, detectionAppearance{
			FaissID: g.best.s.ID, TrackID: id, CameraID: t.CameraID,
			Similarity: round4(g.best.sim), EntrySimilarity: round4(g.first.sim), ExitSimilarity: round4(g.last.sim),
			EntryTimestamp: rfc3339(t.Entry), ExitTimestamp: rfc3339(exitTS),
			EntryFrameURL: FrameURL(k.TrackFrame(id, "entry")), ExitFrameURL: FrameURL(exitKey),
			BBox: boxSlice(g.best.s.Box), ZoneAppearances: zs,
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Similarity > out[j].Similarity })
	stats.UniqueTracks = len(out)
	return out, stats, nil
}

func boxSlice(b streams.Box) []int { return []int{b[0], b[1], b[2], b[3]} }
