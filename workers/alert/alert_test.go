package alert_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"poi/internal/metrics"
	"poi/internal/store"
	"poi/internal/testenv"
	"poi/internal/vectorindex"
	"poi/streams"
	"poi/workers/alert"
	"poi/workers/pool"
)

const (
	model     = "test-model"
	threshold = 0.6
	// Two enrolled POIs on orthogonal axes; queries that must match only
	// the first lean towards the third axis, which nobody owns.
	poiHigh = "poi-0000aaaa"
	poiLow  = "poi-0000bbbb"
)

var (
	enrolled = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	// base is in a non-UTC zone on purpose: alert ids and timestamps must
	// come out in UTC whatever the sighting's zone.
	base = time.Date(2025, 6, 2, 12, 30, 0, 0, time.FixedZone("CEST", 2*3600))
)

// withSimilarity returns a unit vector whose cosine with poiHigh's
// reference is sim and with poiLow's reference is 0.
func withSimilarity(sim float64) []float32 {
	return []float32{float32(sim), 0, float32(math.Sqrt(1 - sim*sim)), 0}
}

// published is one call of the MQTT publisher.
type published struct {
	topic    string
	qos      byte
	retained bool
	payload  []byte
}

// recorder is an MQTT publisher that remembers what it was given and can be
// made to fail, standing in for the broker client.
type recorder struct {
	mu    sync.Mutex
	calls []published
	fail  error
}

func (r *recorder) Publish(_ context.Context, topic string, qos byte, retained bool, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.calls = append(r.calls, published{topic, qos, retained, append([]byte(nil), payload...)})
	return nil
}

func (r *recorder) setFail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

func (r *recorder) sent() []published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]published(nil), r.calls...)
}

// msg is the part of a JetStream message the handler reads; any other
// method panics, which would show the handler started acking by itself.
type msg struct {
	jetstream.Msg
	h    nats.Header
	data []byte
}

func (m msg) Headers() nats.Header { return m.h }
func (m msg) Data() []byte         { return m.data }

type env struct {
	t     *testing.T
	ctx   context.Context
	redis *testenv.Redis
	st    *store.Store
	rdb   *redis.Client
	js    jetstream.JetStream
	idx   *vectorindex.POIIndex
	m     *metrics.Metrics
	mqtt  *recorder
	stage *alert.Stage
	cfg   alert.Config
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newEnv starts a redis-server and a nats-server with the service's
// streams, enrols two POIs in Redis and in the index, and returns the stage
// wired to all of it.
func newEnv(t *testing.T, cooldown time.Duration) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, redis: testenv.StartRedis(t), m: metrics.New(), mqtt: &recorder{}}
	e.st = e.openStore()
	opt, err := redis.ParseURL(e.redis.URL())
	if err != nil {
		t.Fatal(err)
	}
	e.rdb = redis.NewClient(opt)
	t.Cleanup(func() { e.rdb.Close() })
	_, e.js = testenv.NATS(t)
	if err := streams.Declare(ctx, e.js, streams.DefaultLimits(), 3, discard()); err != nil {
		t.Fatal(err)
	}
	if e.idx, err = vectorindex.NewPOIIndex(vectorindex.Model{Name: model, Dim: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.idx.Close() })
	for _, p := range []struct {
		id, severity, notes string
		vec                 []float32
	}{
		{poiHigh, "high", "seen near the loading bay", []float32{1, 0, 0, 0}},
		{poiLow, "low", "", []float32{0, 1, 0, 0}},
	} {
		if err := e.st.CreatePOI(ctx, store.POI{ID: p.id, Severity: p.severity, Notes: p.notes, Status: "active", Model: model, CreatedAt: enrolled,
			Refs: []store.Ref{{EmbeddingID: p.id + "-e1", Vector: p.vec}}}); err != nil {
			t.Fatal(err)
		}
		if err := e.idx.Add(p.id, []vectorindex.Ref{{EmbeddingID: p.id + "-e1", Vector: p.vec}}); err != nil {
			t.Fatal(err)
		}
	}
	e.cfg = alert.Config{Model: model, MatchThreshold: threshold, Cooldown: cooldown, Retention: time.Hour}
	e.stage = e.newStage(e.st)
	return e
}

func (e *env) openStore() *store.Store {
	e.t.Helper()
	st, err := store.Open(e.redis.URL(), "t:")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

func (e *env) newStage(st *store.Store) *alert.Stage {
	return alert.New(e.cfg, e.idx, st, e.js, e.mqtt, e.m, discard())
}

func sighting(track, camera string, ts time.Time, vec []float32) streams.Sighting {
	return streams.Sighting{Header: streams.Current(), TrackID: track, FrameNumber: 4711, CameraID: camera, Timestamp: ts,
		Box: streams.Box{10, 20, 110, 150}, Confidence: 0.91237, Model: model, Embedding: vec}
}

func encode(t testing.TB, sg streams.Sighting) jetstream.Msg {
	t.Helper()
	m, err := streams.NewMsg(streams.Subject(streams.SightingsSubj, sg.CameraID), &sg)
	if err != nil {
		t.Fatal(err)
	}
	return msg{h: m.Header, data: m.Data}
}

func (e *env) handle(sg streams.Sighting) error {
	e.t.Helper()
	return e.stage.Handle(e.ctx, encode(e.t, sg))
}

func (e *env) mustHandle(sg streams.Sighting) {
	e.t.Helper()
	if err := e.handle(sg); err != nil {
		e.t.Fatalf("handle %s at %s: %v", sg.TrackID, sg.Timestamp, err)
	}
}

// published returns how many alerts POI_ALERTS holds per subject.
func (e *env) published() map[string]uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.ctx, streams.Alerts)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.ctx, jetstream.WithSubjectFilter(streams.AlertsSubj+".>"))
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Subjects
}

func (e *env) totalPublished() uint64 {
	var n uint64
	for _, c := range e.published() {
		n += c
	}
	return n
}

func (e *env) recent() []streams.Alert {
	e.t.Helper()
	raw, err := e.st.RecentAlerts(e.ctx, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]streams.Alert, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

func (e *env) alertsCounted(severity string) float64 {
	return testutil.ToFloat64(e.m.Alerts.WithLabelValues(severity))
}

// TestMatchRaisesAlertWithTheContractPayloadEverywhere: one matching
// sighting is stored, published on JetStream under
// poi.alerts.{severity}.{poi_id} with its id as the dedup header, and sent
// on MQTT, all with the same payload.
func TestMatchRaisesAlertWithTheContractPayloadEverywhere(t *testing.T) {
	e := newEnv(t, time.Hour)
	sg := sighting("cam:lobby:7", "lobby", base, withSimilarity(0.65))
	e.mustHandle(sg)

	id := alert.AlertID(base, poiHigh, sg.TrackID)
	subject := "poi.alerts.high." + poiHigh
	if got := e.published(); len(got) != 1 || got[subject] != 1 {
		t.Fatalf("published %v, want one message on %s", got, subject)
	}
	s, err := e.js.Stream(e.ctx, streams.Alerts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetLastMsgForSubject(e.ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get(jetstream.MsgIDHeader); got != id {
		t.Fatalf("Nats-Msg-Id %q, want %q", got, id)
	}
	var a streams.Alert
	if err := json.Unmarshal(raw.Data, &a); err != nil {
		t.Fatal(err)
	}
	want := streams.Alert{
		EventType: "poi_match_alert", AlertID: id, POIID: poiHigh, Severity: "high",
		Timestamp: "2025-06-02T10:30:00Z", Status: "New",
		Match: streams.AlertMatch{CameraID: "lobby", Confidence: 0.9124, SimilarityScore: 0.65, BBox: []int{10, 20, 110, 150},
			FrameNumber: 4711, ThumbnailPath: "/api/v1/thumbnail/cam:lobby:7"},
		POIMetadata: streams.AlertPOIMetadata{Notes: "seen near the loading bay", EnrollmentDate: "2025-03-01T08:00:00Z", TotalPreviousMatches: 0},
	}
	if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", want) {
		t.Fatalf("payload\n got %+v\nwant %+v", a, want)
	}
	if want := "alert-20250602-103000-" + poiHigh + "-"; len(id) != len(want)+6 || id[:len(want)] != want {
		t.Fatalf("alert id %q is not alert-YYYYmmdd-HHMMSS-{poi}-{6 hex} in UTC", id)
	}

	sent := e.mqtt.sent()
	if len(sent) != 1 {
		t.Fatalf("MQTT publishes %d, want 1", len(sent))
	}
	if p := sent[0]; p.topic != "poi/alerts/high/"+poiHigh || p.qos != 1 || p.retained || string(p.payload) != string(raw.Data) {
		t.Fatalf("MQTT publish %s qos %d retained %v payload %s; want the JetStream payload at qos 1, not retained", p.topic, p.qos, p.retained, p.payload)
	}
	stored, err := e.st.RecentAlerts(e.ctx, 10)
	if err != nil || len(stored) != 1 || string(stored[0]) != string(raw.Data) {
		t.Fatalf("stored alerts %s (%v), want the published payload", stored, err)
	}
	apps, err := e.st.Appearances(e.ctx, poiHigh)
	if err != nil || len(apps) != 1 || apps[0].TrackID != sg.TrackID || math.Abs(apps[0].Similarity-0.65) > 1e-5 || !apps[0].BestTime.Equal(base) {
		t.Fatalf("appearances %+v (%v)", apps, err)
	}
	if n := e.alertsCounted("high"); n != 1 {
		t.Fatalf("poi_alerts_total{high} %v, want 1", n)
	}
}

// TestOneAlertPerTrackAndPOI: later sightings of a track that alerted add
// nothing, and a redelivered sighting re-publishes the same alert
// idempotently instead of raising a second one.
func TestOneAlertPerTrackAndPOI(t *testing.T) {
	e := newEnv(t, time.Hour)
	first := sighting("cam:lobby:7", "lobby", base, withSimilarity(0.7))
	e.mustHandle(first)
	for i := 1; i <= 3; i++ {
		// A better view later on the same track is still the same visit.
		e.mustHandle(sighting("cam:lobby:7", "lobby", base.Add(time.Duration(i)*time.Second), withSimilarity(0.9)))
	}
	e.mustHandle(first) // a redelivery
	if n := e.totalPublished(); n != 1 {
		t.Fatalf("POI_ALERTS holds %d alerts, want 1", n)
	}
	if n := len(e.mqtt.sent()); n != 1 {
		t.Fatalf("MQTT publishes %d, want 1", n)
	}
	if got := e.recent(); len(got) != 1 || got[0].AlertID != alert.AlertID(base, poiHigh, first.TrackID) {
		t.Fatalf("stored alerts %+v, want only the first sighting's", got)
	}
	if n := e.alertsCounted("high"); n != 1 {
		t.Fatalf("poi_alerts_total{high} %v, want 1", n)
	}
	// The appearance keeps the best similarity of the track.
	apps, err := e.st.Appearances(e.ctx, poiHigh)
	if err != nil || len(apps) != 1 || math.Abs(apps[0].Similarity-0.9) > 1e-5 {
		t.Fatalf("appearances %+v (%v), want one at 0.9", apps, err)
	}
	// The same track matching another POI is another alert.
	e.mustHandle(sighting("cam:lobby:7", "lobby", base.Add(5*time.Second), []float32{0, 1, 0, 0}))
	if got := e.published(); got["poi.alerts.low."+poiLow] != 1 {
		t.Fatalf("published %v, want one alert for %s", got, poiLow)
	}
}

// TestCooldownPerPOIAndCamera: within the cooldown a new track of the same
// POI on the same camera is suppressed, one on another camera is not; the
// cooldown lives exactly as long as configured.
func TestCooldownPerPOIAndCamera(t *testing.T) {
	const cooldown = 10 * time.Minute
	e := newEnv(t, cooldown)
	e.mustHandle(sighting("cam:lobby:1", "lobby", base, withSimilarity(0.8)))
	pttl, err := e.rdb.PTTL(e.ctx, e.st.Keys().AlertCooldown(poiHigh, "lobby")).Result()
	if err != nil || pttl <= 0 || pttl > cooldown {
		t.Fatalf("cooldown TTL %s (%v), want in (0, %s]", pttl, err, cooldown)
	}

	e.mustHandle(sighting("cam:lobby:2", "lobby", base.Add(time.Second), withSimilarity(0.8)))
	if got := e.recent(); len(got) != 1 {
		t.Fatalf("a second track on the same camera within the cooldown alerted: %+v", got)
	}
	// Another POI on the same camera has a cooldown of its own.
	e.mustHandle(sighting("cam:lobby:3", "lobby", base.Add(2*time.Second), []float32{0, 1, 0, 0}))
	e.mustHandle(sighting("cam:gate:1", "gate", base.Add(3*time.Second), withSimilarity(0.8)))
	got := e.recent()
	if len(got) != 3 {
		t.Fatalf("stored alerts %+v, want lobby/high, lobby/low and gate/high", got)
	}
	// Newest first: the gate alert counts the lobby alert of the same POI.
	if a := got[0]; a.POIID != poiHigh || a.Match.CameraID != "gate" || a.POIMetadata.TotalPreviousMatches != 1 {
		t.Fatalf("gate alert %+v, want %s on gate with 1 previous match", a, poiHigh)
	}
	if a := got[1]; a.POIID != poiLow || a.POIMetadata.TotalPreviousMatches != 0 {
		t.Fatalf("lobby alert of the other POI %+v", a)
	}
	if n := e.totalPublished(); n != 3 || len(e.mqtt.sent()) != 3 {
		t.Fatalf("published %d on JetStream, %d on MQTT, want 3 each", n, len(e.mqtt.sent()))
	}

	// End the cooldown without waiting for it: the suppressed track stays
	// suppressed (its visit was covered by the first alert), a new track
	// alerts again.
	if err := e.rdb.Del(e.ctx, e.st.Keys().AlertCooldown(poiHigh, "lobby")).Err(); err != nil {
		t.Fatal(err)
	}
	e.mustHandle(sighting("cam:lobby:2", "lobby", base.Add(4*time.Second), withSimilarity(0.8)))
	if n := len(e.recent()); n != 3 {
		t.Fatalf("the track suppressed by the cooldown alerted later: %d alerts", n)
	}
	e.mustHandle(sighting("cam:lobby:4", "lobby", base.Add(5*time.Second), withSimilarity(0.8)))
	if got := e.recent(); len(got) != 4 || got[0].Match.CameraID != "lobby" || got[0].POIMetadata.TotalPreviousMatches != 2 {
		t.Fatalf("after the cooldown: %+v, want a new lobby alert with 2 previous matches", got)
	}
}

// TestThreshold: a sighting below the match threshold leaves no trace, so
// a later match of the same track still alerts.
func TestThreshold(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.mustHandle(sighting("cam:lobby:1", "lobby", base, withSimilarity(threshold-0.02)))
	if n := e.totalPublished(); n != 0 || len(e.recent()) != 0 || len(e.mqtt.sent()) != 0 {
		t.Fatalf("below the threshold: %d published, %d stored, %d on MQTT", n, len(e.recent()), len(e.mqtt.sent()))
	}
	if apps, err := e.st.Appearances(e.ctx, poiHigh); err != nil || len(apps) != 0 {
		t.Fatalf("below the threshold an appearance was recorded: %+v (%v)", apps, err)
	}
	e.mustHandle(sighting("cam:lobby:1", "lobby", base.Add(time.Second), withSimilarity(threshold+0.02)))
	if got := e.recent(); len(got) != 1 || got[0].Match.SimilarityScore != threshold+0.02 {
		t.Fatalf("above the threshold: %+v, want one alert at %.2f", got, threshold+0.02)
	}
}

// TestNoAlertWithoutAPOI: an empty index, and a POI deleted from Redis that
// this replica still holds, raise nothing and are not errors.
func TestNoAlertWithoutAPOI(t *testing.T) {
	e := newEnv(t, time.Hour)
	if _, err := e.st.BeginErase(e.ctx, poiHigh, time.Hour); err != nil {
		t.Fatal(err)
	}
	e.mustHandle(sighting("cam:lobby:1", "lobby", base, withSimilarity(0.95)))
	if n := e.totalPublished(); n != 0 || len(e.recent()) != 0 {
		t.Fatalf("an alert for a deleted POI: %d published", n)
	}
	if apps, _ := e.st.Appearances(e.ctx, poiHigh); len(apps) != 0 {
		t.Fatalf("an appearance for a deleted POI: %+v", apps)
	}
	if err := e.idx.Reset(); err != nil {
		t.Fatal(err)
	}
	e.mustHandle(sighting("cam:lobby:2", "lobby", base, []float32{0, 1, 0, 0}))
	if n := e.totalPublished(); n != 0 {
		t.Fatalf("an empty index alerted: %d published", n)
	}
}

// TestWithoutMQTT: with no MQTT publisher the alert still reaches Redis
// and JetStream.
func TestWithoutMQTT(t *testing.T) {
	e := newEnv(t, time.Hour)
	st := alert.New(e.cfg, e.idx, e.st, e.js, nil, e.m, discard())
	if err := st.Handle(e.ctx, encode(t, sighting("cam:lobby:1", "lobby", base, withSimilarity(0.8)))); err != nil {
		t.Fatal(err)
	}
	if n := e.totalPublished(); n != 1 || len(e.recent()) != 1 {
		t.Fatalf("%d published, %d stored, want 1 each", n, len(e.recent()))
	}
}

// TestBadInputIsDeadLetteredWithItsReason runs the stage under the real
// pool: a sighting of another model is rejected even though its vector
// matches a POI exactly, and so are undecodable envelopes and vectors of
// the wrong dimension; none of them is retried.
func TestBadInputIsDeadLetteredWithItsReason(t *testing.T) {
	e := newEnv(t, time.Hour)
	p := pool.New(pool.Config{Stage: "alert", Stream: streams.Sightings, Consumer: streams.ConsumerAlert, Concurrency: 2, MaxDeliver: 3,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond }}, e.js, e.stage.Handle, e.m, discard())
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	other := sighting("cam:lobby:1", "lobby", base, []float32{1, 0, 0, 0})
	other.Model = "other-model"
	short := sighting("cam:lobby:2", "lobby", base, []float32{1, 0, 0})
	good := sighting("cam:lobby:3", "lobby", base, withSimilarity(0.8))
	subj := streams.Subject(streams.SightingsSubj, "lobby")
	for _, sg := range []streams.Sighting{other, short, good} {
		m, err := streams.NewMsg(subj, &sg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.js.PublishMsg(e.ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.js.Publish(e.ctx, subj, []byte(`{"v":1,"track_id":`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "three dead letters and one processed sighting", func() bool {
		return testutil.ToFloat64(e.m.DeadLettered.WithLabelValues("alert")) == 3 && testutil.ToFloat64(e.m.Processed.WithLabelValues("alert")) == 1
	})
	for _, reason := range []string{"model_mismatch", "bad_vector", "bad_envelope"} {
		if n := testutil.ToFloat64(e.m.Rejected.WithLabelValues("alert", reason)); n != 1 {
			t.Errorf("rejected{%s} = %v, want 1", reason, n)
		}
	}
	if n := testutil.ToFloat64(e.m.Redelivered.WithLabelValues("alert")); n != 0 {
		t.Errorf("%v redeliveries: bad input must not be retried", n)
	}
	if got := e.recent(); len(got) != 1 || got[0].Match.ThumbnailPath != "/api/v1/thumbnail/"+good.TrackID {
		t.Fatalf("alerts %+v, want only the good sighting's", got)
	}
}

// TestRacingClaimsOneWinner races the Lua claim itself, from separate
// Redis clients as separate workers would, on one track and POI: exactly
// one claim is new every round, and the POI's match count moves by one.
func TestRacingClaimsOneWinner(t *testing.T) {
	e := newEnv(t, time.Hour)
	const workers, rounds = 6, 150
	stores := make([]*store.Store, workers)
	for i := range stores {
		stores[i] = e.openStore()
	}
	for r := range rounds {
		track, camera := fmt.Sprintf("cam:c%d:1", r), fmt.Sprintf("c%d", r)
		outcomes := make([]string, workers)
		prevs := make([]int64, workers)
		errs := make([]error, workers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// Each worker saw the track in a different second, so each
				// claims under a different id.
				id := alert.AlertID(base.Add(time.Duration(w)*time.Second), poiHigh, track)
				outcomes[w], prevs[w], errs[w] = stores[w].ClaimAlert(e.ctx, id, track, poiHigh, camera, time.Hour, time.Hour)
			}()
		}
		close(start)
		wg.Wait()
		winners := 0
		for w := range workers {
			if errs[w] != nil {
				t.Fatalf("round %d worker %d: %v", r, w, errs[w])
			}
			switch outcomes[w] {
			case store.ClaimNew:
				winners++
				if prevs[w] != int64(r) {
					t.Fatalf("round %d: winner reports %d previous matches, want %d", r, prevs[w], r)
				}
			case store.ClaimDup:
			default:
				t.Fatalf("round %d worker %d: outcome %q", r, w, outcomes[w])
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d winners %v, want exactly 1", r, winners, outcomes)
		}
	}
}

// TestRacingSightingsOneAlert races whole sightings of one track through
// separate stage instances (separate Redis clients, one JetStream): each
// round ends with exactly one alert stored, published and sent.
func TestRacingSightingsOneAlert(t *testing.T) {
	e := newEnv(t, time.Hour)
	const workers, rounds = 4, 40
	stages := make([]*alert.Stage, workers)
	for i := range stages {
		stages[i] = e.newStage(e.openStore())
	}
	for r := range rounds {
		track, camera := fmt.Sprintf("cam:c%d:1", r), fmt.Sprintf("c%d", r)
		ids := map[string]bool{}
		msgs := make([]jetstream.Msg, workers)
		for w := range workers {
			ts := base.Add(time.Duration(w) * time.Second)
			ids[alert.AlertID(ts, poiHigh, track)] = true
			msgs[w] = encode(t, sighting(track, camera, ts, withSimilarity(0.8)))
		}
		errs := make([]error, workers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[w] = untilSettled(e.ctx, stages[w], msgs[w])
			}()
		}
		close(start)
		wg.Wait()
		for w, err := range errs {
			if err != nil {
				t.Fatalf("round %d worker %d: %v", r, w, err)
			}
		}
		got := e.recent()
		if len(got) != r+1 || !ids[got[0].AlertID] {
			t.Fatalf("round %d: %d alerts stored (newest %s), want %d with one of this round's ids", r, len(got), got[0].AlertID, r+1)
		}
		if n := e.totalPublished(); n != uint64(r+1) {
			t.Fatalf("round %d: POI_ALERTS holds %d, want %d", r, n, r+1)
		}
		if n := len(e.mqtt.sent()); n != r+1 {
			t.Fatalf("round %d: %d MQTT publishes, want %d", r, n, r+1)
		}
		if n := e.alertsCounted("high"); n != float64(r+1) {
			t.Fatalf("round %d: poi_alerts_total{high} %v, want %d", r, n, r+1)
		}
	}
}

// TestRacingRedeliveriesOneAlert races copies of one sighting (a
// redelivery while the first delivery is still in hand): one alert is
// stored and JetStream holds it once. MQTT, which has no dedup, may see it
// more than once but never misses it.
func TestRacingRedeliveriesOneAlert(t *testing.T) {
	e := newEnv(t, time.Hour)
	const workers, rounds = 4, 25
	stages := make([]*alert.Stage, workers)
	for i := range stages {
		stages[i] = e.newStage(e.openStore())
	}
	for r := range rounds {
		track, camera := fmt.Sprintf("cam:c%d:1", r), fmt.Sprintf("c%d", r)
		m := encode(t, sighting(track, camera, base, withSimilarity(0.8)))
		errs := make([]error, workers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[w] = untilSettled(e.ctx, stages[w], m)
			}()
		}
		close(start)
		wg.Wait()
		for w, err := range errs {
			if err != nil {
				t.Fatalf("round %d worker %d: %v", r, w, err)
			}
		}
		if got := e.recent(); len(got) != r+1 || got[0].AlertID != alert.AlertID(base, poiHigh, track) {
			t.Fatalf("round %d: %d alerts stored, want %d", r, len(got), r+1)
		}
		if n := e.totalPublished(); n != uint64(r+1) {
			t.Fatalf("round %d: POI_ALERTS holds %d, want %d", r, n, r+1)
		}
		if n := e.alertsCounted("high"); n != float64(r+1) {
			t.Fatalf("round %d: poi_alerts_total{high} %v, want %d", r, n, r+1)
		}
		if n := len(e.mqtt.sent()); n < r+1 || n > (r+1)*workers {
			t.Fatalf("round %d: %d MQTT publishes, want between %d and %d", r, n, r+1, (r+1)*workers)
		}
	}
}

// untilSettled handles msg as the pool would: transient errors (a lost
// WATCH race on the appearance record) are retried, anything else is
// returned.
func untilSettled(ctx context.Context, s *alert.Stage, m jetstream.Msg) error {
	var err error
	for range 50 {
		if err = s.Handle(ctx, m); err == nil || !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return err
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFailedDeliveryIsRetriedAndCountedOnce: when MQTT fails the handler
// fails (so the pool retries), and the retry delivers the alert once on
// each transport and counts it once.
func TestFailedDeliveryIsRetriedAndCountedOnce(t *testing.T) {
	e := newEnv(t, time.Hour)
	sg := sighting("cam:lobby:1", "lobby", base, withSimilarity(0.8))
	broker := errors.New("broker unreachable")
	e.mqtt.setFail(broker)
	if err := e.handle(sg); !errors.Is(err, broker) {
		t.Fatalf("handle with MQTT down: %v, want the broker's error", err)
	}
	e.mqtt.setFail(nil)
	e.mustHandle(sg)
	e.mustHandle(sg) // a late redelivery after success changes nothing
	if n := len(e.mqtt.sent()); n != 1 {
		t.Fatalf("%d MQTT publishes, want 1", n)
	}
	if n := e.totalPublished(); n != 1 || len(e.recent()) != 1 {
		t.Fatalf("%d published, %d stored, want 1 each", n, len(e.recent()))
	}
	if n := e.alertsCounted("high"); n != 1 {
		t.Fatalf("poi_alerts_total{high} %v, want 1: an alert whose first delivery failed must still be counted", n)
	}
}

// TestRedeliveryAfterACrashFinishesTheAlert: a worker that claimed the
// alert and died before storing or publishing it leaves the claim behind;
// the redelivered sighting must finish the job, reporting the match count
// the claim saw.
func TestRedeliveryAfterACrashFinishesTheAlert(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.mustHandle(sighting("cam:gate:1", "gate", base, withSimilarity(0.8)))
	sg := sighting("cam:lobby:1", "lobby", base.Add(time.Minute), withSimilarity(0.8))
	id := alert.AlertID(sg.Timestamp, poiHigh, sg.TrackID)
	if out, prev, err := e.st.ClaimAlert(e.ctx, id, sg.TrackID, poiHigh, sg.CameraID, e.cfg.Retention, e.cfg.Cooldown); err != nil || out != store.ClaimNew || prev != 1 {
		t.Fatalf("claim: %s %d %v", out, prev, err)
	}
	e.mustHandle(sg)
	got := e.recent()
	if len(got) != 2 || got[0].AlertID != id || got[0].POIMetadata.TotalPreviousMatches != 1 {
		t.Fatalf("stored %+v, want the claimed alert with 1 previous match", got)
	}
	if n := e.totalPublished(); n != 2 || len(e.mqtt.sent()) != 2 {
		t.Fatalf("%d published, %d on MQTT, want 2 each", n, len(e.mqtt.sent()))
	}
}
