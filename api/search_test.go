package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/stacktest"
	"poi/internal/testenv"
)

// publishFrames sends photos as one camera's frames, 200 ms apart from t0,
// and waits until the pipeline has tracked them.
func publishFrames(t *testing.T, s *stacktest.Stack, camera string, t0 time.Time, photos ...string) {
	t.Helper()
	m := s.Node.Metrics()
	before := testutil.ToFloat64(m.Processed.WithLabelValues("index"))
	mq := s.MQTT(t)
	for i, p := range photos {
		if err := mq.Publish(context.Background(), "poi/frames/"+camera, 1, false,
			stacktest.FrameJSON(testenv.ReadPhoto(t, p), t0.Add(time.Duration(i)*200*time.Millisecond))); err != nil {
			t.Fatal(err)
		}
	}
	stacktest.Eventually(t, time.Minute, "frames of "+camera+" tracked", func() bool {
		return testutil.ToFloat64(m.Processed.WithLabelValues("index")) >= before+float64(len(photos))
	})
	stacktest.Eventually(t, time.Minute, "sightings checked", func() bool {
		for _, name := range []string{"POI_SIGHTINGS"} {
			st, err := s.JS.Stream(context.Background(), name)
			if err != nil {
				return false
			}
			info, _ := st.Info(context.Background())
			if info.State.Msgs != 0 {
				return false
			}
		}
		return true
	})
}

func search(t *testing.T, s *stacktest.Stack, photoName string, fields map[string]string) (int, map[string]any) {
	t.Helper()
	return post(t, s.URL+"/api/v1/search", []file{{"image", photoName, testenv.ReadPhoto(t, photoName)}}, fields)
}

func vectors(t *testing.T, s *stacktest.Stack) float64 {
	_, st := getJSON(t, s.URL+"/api/v1/status")
	return st["faiss_vectors"].(float64)
}

func TestSearchStage2FindsAFaceOnlySeenOnACamera(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	// Camera time an hour ago, on the hour: within the bridge's clock skew
	// and the retention whenever the test runs.
	seen := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
	at := func(d time.Duration) string { return seen.Add(d).Format(time.RFC3339) }
	publishFrames(t, s, "cam-2", seen, "cage.jpg")
	stacktest.Eventually(t, 20*time.Second, "the sample in the all-detections index", func() bool { return vectors(t, s) >= 1 })

	code, res := search(t, s, "cage2_crop.jpg", map[string]string{"start_time": at(-time.Hour), "end_time": at(time.Hour), "top_k": "5"})
	if code != 200 {
		t.Fatalf("search: %d %v", code, res)
	}
	hasKeys(t, "stage 2", res, "event_type", "query_range", "query_timestamp", "total_appearances", "appearances", "search_stats")
	if _, ok := res["matched_poi_id"]; ok {
		t.Fatalf("stage 2 answer names a POI: %v", res)
	}
	stats := res["search_stats"].(map[string]any)
	if strings.Join(keysOf(stats), ",") != "query_latency_ms,raw_hits,search_stage,unique_tracks,vectors_searched" || stats["search_stage"] != "detection_index" {
		t.Fatalf("stats %v", stats)
	}
	if res["total_appearances"].(float64) != 1 || stats["unique_tracks"].(float64) != 1 || stats["vectors_searched"].(float64) < 1 {
		t.Fatalf("stage 2 result %v", res)
	}
	qr := res["query_range"].(map[string]any)
	if qr["start"] != at(-time.Hour) || qr["end"] != at(time.Hour) {
		t.Fatalf("query_range %v", qr)
	}
	a := res["appearances"].([]any)[0].(map[string]any)
	want := "bbox,camera_id,entry_frame_url,entry_similarity,entry_timestamp,exit_frame_url,exit_similarity,exit_timestamp,faiss_id,similarity,track_id,zone_appearances"
	if got := strings.Join(keysOf(a), ","); got != want {
		t.Fatalf("appearance keys %s, want %s", got, want)
	}
	if a["track_id"] != "cam:cam-2:1" || a["camera_id"] != "cam-2" || a["entry_timestamp"] != at(0) || a["similarity"].(float64) < s.Config.Face.SearchThreshold {
		t.Fatalf("appearance %v", a)
	}
	if len(a["bbox"].([]any)) != 4 || a["faiss_id"].(float64) == 0 {
		t.Fatalf("appearance %v", a)
	}
	stacktest.GetJPEG(t, s.URL+a["entry_frame_url"].(string))
	stacktest.GetJPEG(t, s.URL+a["exit_frame_url"].(string))

	// A range that excludes the appearance finds nothing (and is a 200).
	code, res = search(t, s, "cage2_crop.jpg", map[string]string{"start_time": at(time.Hour), "end_time": at(2 * time.Hour)})
	if code != 200 || res["total_appearances"].(float64) != 0 || len(res["appearances"].([]any)) != 0 {
		t.Fatalf("excluded range: %d %v", code, res)
	}
	// Another person finds nothing either.
	code, res = search(t, s, "obama4_crop.jpg", nil)
	if code != 200 || res["total_appearances"].(float64) != 0 {
		t.Fatalf("other person: %d %v", code, res)
	}
}

func TestSearchStage1AndAlertsLifecycle(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	code, poi := post(t, s.URL+"/api/v1/poi", []file{photo(t, "franck_01829.jpg")}, map[string]string{"severity": "low", "description": "Franck"})
	if code != 201 {
		t.Fatalf("enroll: %d %v", code, poi)
	}
	id := poi["poi_id"].(string)
	seen := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	frames, _ := filepath.Glob(filepath.Join(testenv.AssetsDir(t), "photos", "franck_02*.jpg"))
	var names []string
	for _, f := range frames {
		names = append(names, filepath.Base(f))
	}
	publishFrames(t, s, "cam-1", seen, names...)

	// Stage 1: the other Franck photo matches the POI and lists its appearance.
	code, res := search(t, s, "franck_04117.jpg", nil)
	if code != 200 || res["matched_poi_id"] != id || res["total_appearances"].(float64) != 1 {
		t.Fatalf("stage 1: %d %v", code, res)
	}
	stats := res["search_stats"].(map[string]any)
	if strings.Join(keysOf(stats), ",") != "poi_similarity,query_latency_ms,search_stage" || stats["search_stage"] != "poi_index" || stats["poi_similarity"].(float64) < s.Config.Face.MatchThreshold {
		t.Fatalf("stage 1 stats %v", stats)
	}
	a := res["appearances"].([]any)[0].(map[string]any)
	want := "best_match_time,camera_id,entry_frame_url,last_seen_frame_url,similarity,thumbnail_url,track_id,zone_appearances"
	if got := strings.Join(keysOf(a), ","); got != want {
		t.Fatalf("appearance keys %s, want %s", got, want)
	}
	if a["track_id"] != "cam:cam-1:1" || a["camera_id"] != "cam-1" || a["thumbnail_url"] != "/api/v1/thumbnail/cam:cam-1:1" {
		t.Fatalf("appearance %v", a)
	}
	for _, u := range []string{"entry_frame_url", "last_seen_frame_url", "thumbnail_url"} {
		stacktest.GetJPEG(t, s.URL+a[u].(string))
	}
	// The seed's second Bieber-style claim: a range without it is empty.
	code, res = search(t, s, "franck_04117.jpg", map[string]string{"end_time": seen.Add(-time.Hour).Format(time.RFC3339), "start_time": seen.Add(-2 * time.Hour).Format(time.RFC3339)})
	if code != 200 || res["matched_poi_id"] != id || res["total_appearances"].(float64) != 0 {
		t.Fatalf("stage 1 outside range: %d %v", code, res)
	}

	// The alert, exactly in the seed's shape.
	_, raw := do(t, "GET", s.URL+"/api/v1/alerts")
	var alerts []map[string]any
	if err := json.Unmarshal(raw, &alerts); err != nil || len(alerts) != 1 {
		t.Fatalf("alerts: %s", raw)
	}
	al := alerts[0]
	if got := strings.Join(keysOf(al), ","); got != "alert_id,event_type,match,poi_id,poi_metadata,severity,status,timestamp" {
		t.Fatalf("alert keys %s", got)
	}
	match, meta := al["match"].(map[string]any), al["poi_metadata"].(map[string]any)
	if got := strings.Join(keysOf(match), ","); got != "bbox,camera_id,confidence,frame_number,similarity_score,thumbnail_path" {
		t.Fatalf("match keys %s", got)
	}
	if got := strings.Join(keysOf(meta), ","); got != "enrollment_date,notes,total_previous_matches" {
		t.Fatalf("poi_metadata keys %s", got)
	}
	if !strings.HasPrefix(al["alert_id"].(string), "alert-"+seen.Format("20060102-150405")+"-"+id) || al["severity"] != "low" || meta["notes"] != "Franck" {
		t.Fatalf("alert %v", al)
	}

	// Delete the POI: its alert goes with it, and it raises no more.
	if code, _ := do(t, "DELETE", s.URL+"/api/v1/poi/"+id); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	_, raw = do(t, "GET", s.URL+"/api/v1/alerts")
	if strings.TrimSpace(string(raw)) != "[]" {
		t.Fatalf("alerts after deleting the POI: %s", raw)
	}
	publishFrames(t, s, "cam-3", time.Now().UTC(), names...)
	_, raw = do(t, "GET", s.URL+"/api/v1/alerts")
	if strings.TrimSpace(string(raw)) != "[]" {
		t.Fatalf("a deleted POI raised an alert: %s", raw)
	}
	code, res = search(t, s, "franck_04117.jpg", nil)
	if code != 200 || res["matched_poi_id"] != nil {
		t.Fatalf("deleted POI still matches: %v", res)
	}

	// Clear alerts: enroll again, get one alert, delete it.
	post(t, s.URL+"/api/v1/poi", []file{photo(t, "franck_01829.jpg")}, nil)
	publishFrames(t, s, "cam-4", time.Now().UTC(), names...)
	req, _ := http.NewRequest("DELETE", s.URL+"/api/v1/alerts", nil)
	resp, _ := http.DefaultClient.Do(req)
	code, del := decode(t, resp)
	if code != 200 || del["deleted_count"].(float64) != 1 || len(del) != 1 {
		t.Fatalf("delete alerts: %d %v", code, del)
	}
	_, raw = do(t, "GET", s.URL+"/api/v1/alerts")
	if strings.TrimSpace(string(raw)) != "[]" {
		t.Fatalf("alerts after clearing: %s", raw)
	}
}

func TestSearchRejectsBadInput(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	img := []file{{"image", "q.jpg", testenv.ReadPhoto(t, "cage.jpg")}}
	for _, tc := range []struct {
		name   string
		files  []file
		fields map[string]string
		code   int
		detail string
	}{
		{"bad start", img, map[string]string{"start_time": "yesterday"}, 422, "start_time"},
		{"bad end", img, map[string]string{"end_time": "2026-13-45T99:00:00Z"}, 422, "end_time"},
		{"reversed", img, map[string]string{"start_time": "2026-11-27T10:00:00Z", "end_time": "2026-11-27T09:00:00Z"}, 422, "start_time"},
		{"top_k 0", img, map[string]string{"top_k": "0"}, 422, "top_k"},
		{"top_k 201", img, map[string]string{"top_k": "201"}, 422, "top_k"},
		{"top_k text", img, map[string]string{"top_k": "ten"}, 422, "top_k"},
		{"no image", nil, nil, 422, "image"},
		{"no face", []file{{"image", "wall.jpg", blankJPEG(t)}}, nil, 422, "face"},
		{"not an image", []file{{"image", "x.txt", []byte("hello")}}, nil, 422, "image"},
	} {
		code, m := post(t, s.URL+"/api/v1/search", tc.files, tc.fields)
		wantError(t, tc.name, code, m, tc.code, tc.detail)
	}
	// With nothing indexed, a good query is an empty 200, not a 500.
	code, res := search(t, s, "cage.jpg", map[string]string{"top_k": "200"})
	if code != 200 || res["total_appearances"].(float64) != 0 {
		t.Fatalf("empty search: %d %v", code, res)
	}
}
