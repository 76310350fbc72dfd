package erasure_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/erasure"
	"poi/internal/stacktest"
	"poi/internal/testenv"
	"poi/streams"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func do(t *testing.T, method, url string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, m
}

// subjectCount is how many messages stream holds on filter.
func subjectCount(t *testing.T, js jetstream.JetStream, stream, filter string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// TestPurgeFailingMidwayIsFinishedByARetry: a POI with alerts, appearances
// and messages on POI_CONTROL and POI_ALERTS is erased; Redis is stopped
// right after the tombstone is written, so the purge fails part-way with
// the POI's vectors still in Redis. A DELETE over HTTP after Redis is back
// finishes it (200, the seed's body), a repeat answers 200 again, and the
// proof finds nothing: no key, no FAISS id in the running replica, no
// message on either stream, no file under the data dir holding the id or a
// reference vector.
func TestPurgeFailingMidwayIsFinishedByARetry(t *testing.T) {
	redis := testenv.StartDurableRedis(t)
	s := stacktest.Start(t, stacktest.Options{Redis: redis})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	id := stacktest.Enroll(t, s.URL, map[string]string{"severity": "high", "notes": "seen at the door"}, "franck_01829.jpg")
	other := stacktest.Enroll(t, s.URL, nil, "cage.jpg")
	poi, err := s.Store.GetPOI(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var vectors [][]float32
	for _, r := range poi.Refs {
		vectors = append(vectors, r.Vector)
	}
	// Franck walks past a camera: alerts, an appearance, POI_ALERTS messages.
	mq := s.MQTT(t)
	t0 := time.Now().UTC()
	for i, p := range []string{"franck_02045.jpg", "franck_02159.jpg", "franck_02221.jpg"} {
		if err := mq.Publish(ctx, "poi/frames/door", 1, false, stacktest.FrameJSON(testenv.ReadPhoto(t, p), t0.Add(time.Duration(i)*200*time.Millisecond))); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, time.Minute, "an alert of the POI on POI_ALERTS and in Redis", func() bool {
		apps, _ := s.Store.Appearances(ctx, id)
		alerts, _ := s.Store.AlertsOf(ctx, id)
		return subjectCount(t, s.JS, streams.Alerts, streams.AlertsPOIFilter(id)) > 0 && len(apps) > 0 && len(alerts) > 0
	})
	if n := subjectCount(t, s.JS, streams.Control, streams.ControlPOIFilter(id)); n != 1 {
		t.Fatalf("%d enrolment messages of the POI on POI_CONTROL, want 1", n)
	}
	verifyDeps := erasure.VerifyDeps{Store: s.Store, JS: s.JS, DataDir: s.Config.DataDir, ReplicaWait: 10 * time.Second, Vectors: vectors}
	rep, err := erasure.Verify(ctx, verifyDeps, id)
	if err != nil || rep.Replicas != 1 {
		t.Fatalf("verify of an enrolled POI: %v\n%s", err, rep)
	}
	// Every store the proof looks at must show the enrolled POI, or its
	// passing later would prove nothing.
	for _, where := range []string{"redis", "stream", "replica", "disk"} {
		if !strings.Contains(rep.String(), "  "+where+": ") {
			t.Fatalf("verify of an enrolled POI finds nothing in %s:\n%s", where, rep)
		}
	}

	// The purge, failing part-way: Redis goes down right after the tombstone.
	purger := erasure.NewPurger(erasure.Config{TombstoneTTL: time.Hour, ReplicaWait: 10 * time.Second}, s.Store, s.JS, nil, discard())
	var done []erasure.Step
	purger.SetAfterStep(func(st erasure.Step) error {
		done = append(done, st)
		if st == erasure.StepTombstone {
			redis.Stop()
		}
		return nil
	})
	found, err := purger.Purge(ctx, id)
	if err == nil || !found {
		t.Fatalf("purge with Redis down: found %v, err %v; want a failure", found, err)
	}
	if !strings.Contains(err.Error(), string(erasure.StepRedis)) || done[len(done)-1] != erasure.StepAlerts {
		t.Fatalf("purge failed at %v (steps done %v), want at the redis step", err, done)
	}
	redis.Start()
	keys, err := s.Store.KeysNaming(ctx, id)
	if err != nil || len(keys) == 0 {
		t.Fatalf("after the failed purge the vectors must still be there to prove the failure was partial: %v %v", keys, err)
	}
	if rep, err := erasure.Verify(ctx, verifyDeps, id); err != nil || rep.OK() {
		t.Fatalf("verify of a half-purged POI must fail: %v\n%s", err, rep)
	}
	if code, m := do(t, "GET", s.URL+"/api/v1/poi/"+id); code != 404 {
		t.Fatalf("GET of a half-purged POI: %d %v, want 404", code, m)
	}

	// The retry over HTTP finishes the job.
	code, m := do(t, "DELETE", s.URL+"/api/v1/poi/"+id)
	if code != 200 || m["status"] != "deleted" || m["poi_id"] != id || len(m) != 2 {
		t.Fatalf("retried DELETE: %d %v", code, m)
	}
	rep, err = erasure.Verify(ctx, verifyDeps, id)
	if err != nil || !rep.OK() || rep.Replicas != 1 || rep.Files == 0 {
		t.Fatalf("verify after the retry: %v\n%s", err, rep)
	}
	for _, c := range []struct{ stream, filter string }{
		{streams.Control, streams.ControlPOIFilter(id)},
		{streams.Alerts, streams.AlertsPOIFilter(id)},
	} {
		if n := subjectCount(t, s.JS, c.stream, c.filter); n != 0 {
			t.Fatalf("%s holds %d messages on %s", c.stream, n, c.filter)
		}
	}
	if code, m := do(t, "DELETE", s.URL+"/api/v1/poi/"+id); code != 200 || m["status"] != "deleted" {
		t.Fatalf("DELETE of an erased POI while its tombstone lives: %d %v, want 200", code, m)
	}
	// The other POI is untouched.
	if code, m := do(t, "GET", s.URL+"/api/v1/poi/"+other); code != 200 {
		t.Fatalf("the other POI: %d %v", code, m)
	}
	if n := subjectCount(t, s.JS, streams.Control, streams.ControlPOIFilter(other)); n != 1 {
		t.Fatalf("the other POI's enrolment: %d messages", n)
	}
}
