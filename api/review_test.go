package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/stacktest"
	"poi/internal/testenv"
	"poi/streams"
)

// pipeline publishes frames over real MQTT and reads what the stack made
// of them through the API.
type pipeline struct {
	t *testing.T
	s *stacktest.Stack
	n int
}

func newPipeline(t *testing.T, s *stacktest.Stack) *pipeline { return &pipeline{t: t, s: s} }

// show publishes a photo as one frame of camera (a camera each time makes
// a new track, and no cooldown of another camera applies).
func (p *pipeline) show(camera, photo string) {
	p.t.Helper()
	mq := p.s.MQTT(p.t)
	p.n++
	ts := time.Now().UTC().Add(time.Duration(p.n) * time.Millisecond)
	if err := mq.Publish(context.Background(), "poi/frames/"+camera, 1, false, stacktest.FrameJSON(testenv.ReadPhoto(p.t, photo), ts)); err != nil {
		p.t.Fatal(err)
	}
}

// alerts lists GET /api/v1/alerts with query q.
func (p *pipeline) alerts(q string) []streams.Alert {
	p.t.Helper()
	code, raw := do(p.t, "GET", p.s.URL+"/api/v1/alerts"+q)
	if code != 200 {
		p.t.Fatalf("GET /alerts%s: %d %s", q, code, raw)
	}
	var out []streams.Alert
	if err := json.Unmarshal(raw, &out); err != nil {
		p.t.Fatalf("alerts: %v: %s", err, raw)
	}
	return out
}

// alertOn waits for the alert of poi on camera.
func (p *pipeline) alertOn(poi, camera string) streams.Alert {
	p.t.Helper()
	var found streams.Alert
	stacktest.Eventually(p.t, 90*time.Second, "an alert of "+poi+" on "+camera, func() bool {
		for _, a := range p.alerts("?limit=500") {
			if a.POIID == poi && a.Match.CameraID == camera {
				found = a
				return true
			}
		}
		return false
	})
	return found
}

// sightingsDone waits until every sighting published after seq was
// handled by the alert stage (its work queue is empty again).
func (p *pipeline) sightingsAfter() uint64 {
	p.t.Helper()
	st, err := p.s.JS.Stream(context.Background(), streams.Sightings)
	if err != nil {
		p.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	return info.State.LastSeq
}

func (p *pipeline) waitSightingsHandled(after uint64) {
	p.t.Helper()
	stacktest.Eventually(p.t, 90*time.Second, "the new sightings handled", func() bool {
		st, err := p.s.JS.Stream(context.Background(), streams.Sightings)
		if err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.LastSeq > after && info.State.Msgs == 0
	})
}

// send makes a JSON request and decodes the JSON object answered.
func send(t *testing.T, method, u string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

func (p *pipeline) review(id string, body any) (int, map[string]any) {
	p.t.Helper()
	return send(p.t, "PATCH", p.s.URL+"/api/v1/alerts/"+url.PathEscape(id), body)
}

// TestAlertReview raises real alerts through MQTT, the tracker and the
// alert stage, then reviews them over HTTP: every transition and error,
// the filters, the review subject, the audit trail and the statistics.
func TestAlertReview(t *testing.T) {
	// One learned reference per POI, so the second confirmation that
	// asks to teach is refused.
	s := stacktest.Start(t, stacktest.Options{Env: []string{"POI_REVIEW_MAX_LEARNED=1"}})
	p := newPipeline(t, s)
	franck := stacktest.Enroll(t, s.URL, map[string]string{"severity": "high"}, "franck_01829.jpg")
	cage := stacktest.Enroll(t, s.URL, map[string]string{"severity": "low"}, "cage.jpg")
	shown := map[string]string{"cam-a": "franck_02045.jpg", "cam-b": "franck_02159.jpg", "cam-c": "franck_02221.jpg", "cam-d": "franck_02683.jpg"}
	for cam, photo := range shown {
		p.show(cam, photo)
	}
	p.show("cam-e", "cage2_crop.jpg")
	a := map[string]streams.Alert{}
	for cam := range shown {
		a[cam] = p.alertOn(franck, cam)
	}
	a["cam-e"] = p.alertOn(cage, "cam-e")
	for cam, al := range a {
		if al.Status != "New" || al.ReviewedBy != nil {
			t.Fatalf("fresh alert on %s: %+v", cam, al)
		}
	}

	t.Run("transitions", func(t *testing.T) {
		steps := []struct {
			cam, status string
			want        int
			teach       bool
		}{
			{"cam-a", "Acknowledged", 200, false},
			{"cam-a", "Acknowledged", 409, false}, // not to itself
			{"cam-a", "Confirmed", 200, true},     // and the face becomes a reference
			{"cam-a", "Dismissed", 409, false},    // Confirmed is final
			{"cam-a", "Acknowledged", 409, false},
			{"cam-b", "Dismissed", 200, false},
			{"cam-b", "Confirmed", 409, false}, // Dismissed is final
			{"cam-c", "Confirmed", 409, true},  // over review.max_learned: nothing changes
			{"cam-c", "Confirmed", 200, false},
			{"cam-d", "Acknowledged", 200, false},
			{"cam-d", "Dismissed", 200, false},
			{"cam-e", "Dismissed", 200, false},
		}
		for _, st := range steps {
			code, m := p.review(a[st.cam].AlertID, map[string]any{"status": st.status, "note": "checked on " + st.cam, "add_reference": st.teach})
			if st.want != 200 {
				detail := a[st.cam].AlertID // the transition refused names the alert
				if st.teach {
					detail = "learned references" // the cap refused says which
				}
				wantError(t, st.cam+" to "+st.status, code, m, st.want, detail)
				continue
			}
			if st.teach && m["reference_added"] == nil {
				t.Fatalf("%s confirmed with add_reference: %v", st.cam, m)
			}
			if code != 200 || m["status"] != st.status || m["reviewed_by"].(map[string]any)["name"] != "anonymous" || m["review_note"] != "checked on "+st.cam {
				t.Fatalf("%s to %s: %d %v", st.cam, st.status, code, m)
			}
			if _, err := time.Parse(time.RFC3339, m["reviewed_at"].(string)); err != nil {
				t.Fatalf("reviewed_at %v", m["reviewed_at"])
			}
		}
		// The list and the record say the same, the seed's fields intact.
		want := map[string]string{"cam-a": "Confirmed", "cam-b": "Dismissed", "cam-c": "Confirmed", "cam-d": "Dismissed", "cam-e": "Dismissed"}
		for _, al := range p.alerts("") {
			if w, ok := want[al.Match.CameraID]; !ok || al.Status != w || al.ReviewedBy == nil || al.ReviewedAt == "" || al.POIMetadata.EnrollmentDate == "" || al.Match.SimilarityScore == 0 {
				t.Errorf("listed alert %+v, want status %s", al, w)
			}
		}
		// The confirmed face of cam-a is now a reference of the POI.
		code, m := getJSON(t, s.URL+"/api/v1/poi/"+franck)
		if refs := m["reference_images"].([]any); code != 200 || len(refs) != 2 {
			t.Fatalf("the POI after a confirmation that teaches: %d %v", code, m)
		}
		rec, err := s.Store.Alert(context.Background(), a["cam-a"].AlertID)
		var stored streams.Alert
		if err != nil || json.Unmarshal(rec, &stored) != nil || stored.Status != "Confirmed" || stored.ReviewedBy.Name != "anonymous" {
			t.Fatalf("alert record %s %v", rec, err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		id := a["cam-a"].AlertID
		for _, tc := range []struct {
			name string
			id   string
			body any
			code int
		}{
			{"unknown id", "alert-20260101-000000-poi-0000000000000000-000000", map[string]any{"status": "Dismissed"}, 404},
			{"not an alert id", "nope", map[string]any{"status": "Dismissed"}, 404},
			{"bad status", id, map[string]any{"status": "Closed"}, 400},
			{"status New", id, map[string]any{"status": "New"}, 400},
			{"lower case", id, map[string]any{"status": "dismissed"}, 400},
			{"no status", id, map[string]any{"note": "x"}, 400},
			{"unknown field", id, map[string]any{"status": "Dismissed", "colour": "red"}, 400},
			{"pin on a confirmation", id, map[string]any{"status": "Confirmed", "pin": true}, 400},
			{"add_reference on a dismissal", id, map[string]any{"status": "Dismissed", "add_reference": true}, 400},
			{"not json", id, "just text", 400},
		} {
			code, m := p.review(tc.id, tc.body)
			wantError(t, tc.name, code, m, tc.code, "")
		}
	})

	t.Run("filters", func(t *testing.T) {
		count := func(q string) int { return len(p.alerts(q)) }
		for q, want := range map[string]int{
			"":                                   5,
			"?status=Dismissed":                  3,
			"?status=Confirmed":                  2,
			"?status=New":                        0,
			"?poi_id=" + cage:                    1,
			"?poi_id=" + franck:                  4,
			"?camera_id=cam-b":                   1,
			"?camera_id=cam-zzz":                 0,
			"?status=Dismissed&poi_id=" + franck: 2,
			"?limit=2":                           2,
			"?since=2000-01-01T00:00:00Z":        5,
			"?since=" + url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)): 0,
		} {
			if got := count(q); got != want {
				t.Errorf("GET /alerts%s: %d alerts, want %d", q, got, want)
			}
		}
		// Filters keep the list's order (newest first).
		all, dismissed := p.alerts(""), p.alerts("?status=Dismissed")
		var want []string
		for _, a := range all {
			if a.Status == "Dismissed" {
				want = append(want, a.AlertID)
			}
		}
		for i, a := range dismissed {
			if a.AlertID != want[i] {
				t.Errorf("filtered order %d: %s, want %s", i, a.AlertID, want[i])
			}
		}
		for _, q := range []string{"?status=Closed", "?poi_id=nope", "?since=yesterday", "?limit=0", "?limit=501", "?limit=x", "?camera_id="} {
			code, m := getJSON(t, s.URL+"/api/v1/alerts"+q)
			wantError(t, "GET /alerts"+q, code, m, 400, "")
		}
	})

	t.Run("review subject", func(t *testing.T) {
		ctx := context.Background()
		cons, err := s.JS.OrderedConsumer(ctx, streams.Alerts, jetstream.OrderedConsumerConfig{FilterSubjects: []string{streams.ReviewsSubj + ".>"}})
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for msg := range batch.Messages() {
			var ev streams.Review
			if err := json.Unmarshal(msg.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			if want := "poi.reviews." + ev.Status + "." + ev.POIID; msg.Subject() != want || ev.AlertID == "" || ev.ReviewedBy.Name != "anonymous" {
				t.Errorf("review event on %s: %+v", msg.Subject(), ev)
			}
			got[ev.Status]++
		}
		// Seven reviews succeeded: 2 Acknowledged, 2 Confirmed, 3 Dismissed.
		if got["Acknowledged"] != 2 || got["Confirmed"] != 2 || got["Dismissed"] != 3 {
			t.Errorf("review events %v", got)
		}
	})

	t.Run("audit", func(t *testing.T) {
		code, m := getJSON(t, s.URL+"/api/v1/audit?action=alert.review")
		recs, _ := m["records"].([]any)
		if code != 200 || len(recs) != 7 {
			t.Fatalf("audit of reviews: %d, %d records, want 7: %v", code, len(recs), m)
		}
	})

	t.Run("statistics", func(t *testing.T) {
		code, m := getJSON(t, s.URL+"/api/v1/stats/reviews")
		if code != 200 || m["alerts"].(float64) != 5 {
			t.Fatalf("stats: %d %v", code, m)
		}
		cams := map[string]map[string]any{}
		for _, c := range m["cameras"].([]any) {
			cm := c.(map[string]any)
			cams[cm["camera_id"].(string)] = cm
		}
		want := map[string][3]float64{"cam-a": {1, 0, 0}, "cam-b": {0, 1, 0}, "cam-c": {1, 0, 0}, "cam-d": {0, 1, 0}, "cam-e": {0, 1, 0}}
		for cam, w := range want {
			c := cams[cam]
			if c == nil || c["confirmed"].(float64) != w[0] || c["dismissed"].(float64) != w[1] || c["unreviewed"].(float64) != w[2] {
				t.Errorf("stats of %s: %v, want confirmed/dismissed/unreviewed %v", cam, c, w)
				continue
			}
			sim := a[cam].Match.SimilarityScore
			group := "confirmed"
			if w[1] == 1 {
				group = "dismissed"
			}
			r := c[group+"_similarity"].(map[string]any)
			if r["min"].(float64) != sim || r["max"].(float64) != sim {
				t.Errorf("stats of %s: %s similarity %v, want %v", cam, group, r, sim)
			}
		}
		pois := map[string]map[string]any{}
		for _, x := range m["pois"].([]any) {
			pm := x.(map[string]any)
			pois[pm["poi_id"].(string)] = pm
		}
		if f := pois[franck]; f == nil || f["confirmed"].(float64) != 2 || f["dismissed"].(float64) != 2 {
			t.Errorf("stats of %s: %v", franck, f)
		}
		if c := pois[cage]; c == nil || c["dismissed"].(float64) != 1 || c["confirmed"].(float64) != 0 {
			t.Errorf("stats of %s: %v", cage, c)
		}
		// These dismissals are genuine matches (0.8 and more), far above
		// the threshold: no camera is flagged.
		for cam, c := range cams {
			if c["dismissed_near_threshold"] == true {
				t.Errorf("%s flagged: %v", cam, c)
			}
		}
		code, m = getJSON(t, s.URL+"/api/v1/stats/reviews?since="+url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
		if code != 200 || len(m["cameras"].([]any)) != 0 || m["alerts"].(float64) != 0 {
			t.Errorf("stats since the future: %d %v", code, m)
		}
		code, m = getJSON(t, s.URL+"/api/v1/stats/reviews?since=soon")
		wantError(t, "stats bad since", code, m, 400, "since")
	})
}
