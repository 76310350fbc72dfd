package zones

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
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
	"poi/streams"
	"poi/workers/index"
	"poi/workers/pool"
)

func tr(id string, box streams.Box) index.OpenTrack { return index.OpenTrack{ID: id, Box: box} }

// TestPickTrack is the association rule on its own.
func TestPickTrack(t *testing.T) {
	person := streams.Box{100, 100, 300, 500} // a person box on camera a
	face := streams.Box{170, 120, 230, 190}   // a face with its centre inside it
	outside := streams.Box{400, 120, 460, 190}
	for _, tc := range []struct {
		name string
		o    streams.RegionObject
		open map[string][]index.OpenTrack
		want string
	}{
		{"face centre inside the object's box",
			streams.RegionObject{CameraBounds: map[string]streams.Box{"a": person}},
			map[string][]index.OpenTrack{"a": {tr("a:2", outside), tr("a:1", face)}}, "a:1"},
		{"box on one camera, the face on another",
			streams.RegionObject{CameraBounds: map[string]streams.Box{"a": person}},
			map[string][]index.OpenTrack{"a": {}, "b": {tr("b:1", face)}}, ""},
		{"box given but no face inside: the only open track is not taken",
			streams.RegionObject{CameraBounds: map[string]streams.Box{"a": person}},
			map[string][]index.OpenTrack{"a": {tr("a:1", outside)}}, ""},
		{"a face whose box crosses the object's box but whose centre is out",
			streams.RegionObject{CameraBounds: map[string]streams.Box{"a": person}},
			map[string][]index.OpenTrack{"a": {tr("a:1", streams.Box{280, 120, 340, 190})}}, ""},
		{"a degenerate face box never wins",
			streams.RegionObject{CameraBounds: map[string]streams.Box{"a": person}},
			map[string][]index.OpenTrack{"a": {tr("a:1", streams.Box{200, 150, 200, 150})}}, ""},
		{"the largest overlap wins, not the largest face",
			streams.RegionObject{CameraBounds: map[string]streams.Box{"a": person}},
			// a:2 is the bigger face, but only its inner edge is in the box.
			map[string][]index.OpenTrack{"a": {tr("a:1", streams.Box{150, 120, 250, 200}), tr("a:2", streams.Box{270, 100, 320, 300})}}, "a:1"},
		{"the largest overlap across cameras",
			streams.RegionObject{CameraBounds: map[string]streams.Box{"a": person, "b": person}},
			map[string][]index.OpenTrack{"a": {tr("a:1", face)}, "b": {tr("b:1", streams.Box{150, 120, 250, 200})}}, "b:1"},
		{"equal overlaps on two cameras are ambiguous",
			streams.RegionObject{CameraBounds: map[string]streams.Box{"a": person, "b": person}},
			map[string][]index.OpenTrack{"a": {tr("a:1", face)}, "b": {tr("b:1", face)}}, ""},
		{"equal overlaps on one camera are ambiguous",
			streams.RegionObject{CameraBounds: map[string]streams.Box{"a": person}},
			map[string][]index.OpenTrack{"a": {tr("a:1", face), tr("a:2", streams.Box{170, 300, 230, 370})}}, ""},
		{"no box: the one open track on the visible cameras",
			streams.RegionObject{Cameras: []string{"a", "b"}},
			map[string][]index.OpenTrack{"a": {}, "b": {tr("b:1", face)}}, "b:1"},
		{"no box: two open tracks are ambiguous",
			streams.RegionObject{Cameras: []string{"a", "b"}},
			map[string][]index.OpenTrack{"a": {tr("a:1", face)}, "b": {tr("b:1", face)}}, ""},
		{"no box: two open tracks on one camera are ambiguous",
			streams.RegionObject{Cameras: []string{"a"}},
			map[string][]index.OpenTrack{"a": {tr("a:1", face), tr("a:2", outside)}}, ""},
		{"no camera sees an open track",
			streams.RegionObject{},
			map[string][]index.OpenTrack{"a": nil, "b": nil}, ""},
	} {
		if got := pickTrack(tc.o, tc.open); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// msg is the part of a JetStream message the handler reads.
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
	m     *metrics.Metrics
	stage *Stage
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	r := testenv.StartRedis(t)
	st, err := store.Open(r.URL(), "t:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, ctx: ctx, redis: r, st: st, m: metrics.New()}
	e.stage = New(st, time.Hour, e.m, discard())
	return e
}

// setOpen makes tracks the open tracks of camera, as the tracker would
// commit them, with an entry and a last-seen frame each.
func (e *env) setOpen(camera string, tracks ...index.OpenTrack) {
	e.t.Helper()
	type stored struct {
		ID   string      `json:"id"`
		Last time.Time   `json:"last"`
		Box  streams.Box `json:"box"`
	}
	state := struct {
		Seq    uint64   `json:"seq"`
		Tracks []stored `json:"tracks"`
	}{Seq: 1, Tracks: []stored{}}
	var updates []store.TrackUpdate
	for _, t := range tracks {
		state.Tracks = append(state.Tracks, stored{ID: t.ID, Box: t.Box, Last: t.Last})
		updates = append(updates, store.TrackUpdate{Track: store.Track{ID: t.ID, CameraID: camera},
			EntryFrame: []byte("entry of " + t.ID), LastFrame: []byte("last of " + t.ID)})
	}
	b, err := json.Marshal(state)
	if err != nil {
		e.t.Fatal(err)
	}
	_, version, err := e.st.TrackerState(e.ctx, camera)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.CommitTracking(e.ctx, camera, version, b, updates, nil, time.Hour); err != nil {
		e.t.Fatal(err)
	}
	// The state format belongs to the tracker: read it back its way, so a
	// change there fails here instead of leaving every camera empty.
	got, err := index.OpenTracks(e.ctx, e.st, camera)
	if err != nil || len(got) != len(tracks) {
		e.t.Fatalf("tracker state of %s reads back as %+v (%v)", camera, got, err)
	}
	for i := range got {
		if got[i].ID != tracks[i].ID || got[i].Box != tracks[i].Box {
			e.t.Fatalf("tracker state of %s reads back as %+v, want %+v", camera, got, tracks)
		}
	}
}

func (e *env) setLastFrame(track, camera string, frame []byte) {
	e.t.Helper()
	state, version, err := e.st.TrackerState(e.ctx, camera)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.CommitTracking(e.ctx, camera, version, state, []store.TrackUpdate{{Track: store.Track{ID: track, CameraID: camera}, LastFrame: frame}}, nil, time.Hour); err != nil {
		e.t.Fatal(err)
	}
}

var t0 = time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)

func event(region, name string, ts time.Time) streams.RegionEvent {
	return streams.RegionEvent{Header: streams.Current(), SceneID: "scene-1", RegionID: region, RegionName: name, Timestamp: ts}
}

func encode(t testing.TB, ev streams.RegionEvent) jetstream.Msg {
	t.Helper()
	m, err := streams.NewMsg(streams.Subject(streams.IngestRegion, ev.SceneID, ev.RegionID), &ev)
	if err != nil {
		t.Fatal(err)
	}
	return msg{h: m.Header, data: m.Data}
}

func (e *env) mustHandle(ev streams.RegionEvent) {
	e.t.Helper()
	if err := e.stage.Handle(e.ctx, encode(e.t, ev)); err != nil {
		e.t.Fatalf("handle %+v: %v", ev, err)
	}
}

func (e *env) enter(region, name string, ts time.Time, objects ...streams.RegionObject) {
	e.t.Helper()
	ev := event(region, name, ts)
	ev.Entered = objects
	e.mustHandle(ev)
}

func (e *env) exit(region, name string, ts time.Time, objects ...streams.RegionObject) {
	e.t.Helper()
	ev := event(region, name, ts)
	ev.Exited = objects
	e.mustHandle(ev)
}

func (e *env) zones(track string) []store.ZoneAppearance {
	e.t.Helper()
	zs, err := e.st.ZoneAppearances(e.ctx, track)
	if err != nil {
		e.t.Fatal(err)
	}
	return zs
}

func (e *env) frame(key string) string {
	e.t.Helper()
	b, err := e.st.Frame(e.ctx, key)
	if err != nil {
		e.t.Fatalf("frame %q: %v", key, err)
	}
	return string(b)
}

func (e *env) unassociated() float64 {
	return testutil.ToFloat64(e.m.Rejected.WithLabelValues("zones", "unassociated"))
}

// TestEntryAndExitMakeAZoneAppearance: the visit of an associated object
// becomes one zone appearance of the track, with its dwell, and copies of
// the track's entry frame and of its last frame at the exit.
func TestEntryAndExitMakeAZoneAppearance(t *testing.T) {
	e := newEnv(t)
	e.setOpen("cam-a", tr("cam:cam-a:1", streams.Box{170, 120, 230, 190}), tr("cam:cam-a:2", streams.Box{500, 120, 560, 190}))
	e.enter("r-1", "entrance", t0, streams.RegionObject{ID: "obj-1", CameraBounds: map[string]streams.Box{"cam-a": {100, 100, 300, 500}}})
	e.setLastFrame("cam:cam-a:1", "cam-a", []byte("last at exit"))
	e.exit("r-1", "entrance", t0.Add(15*time.Second), streams.RegionObject{ID: "obj-1", Dwell: 12.5})
	// The track goes on after the visit: the zone keeps the frame it had.
	e.setLastFrame("cam:cam-a:1", "cam-a", []byte("later"))

	zs := e.zones("cam:cam-a:1")
	if len(zs) != 1 {
		t.Fatalf("zone appearances %+v, want 1", zs)
	}
	z := zs[0]
	k := e.st.Keys()
	want := store.ZoneAppearance{Zone: "entrance", SceneID: "scene-1", Entry: t0, Exit: t0.Add(15 * time.Second), Dwell: 12.5,
		EntryFrame: k.ZoneFrame("cam:cam-a:1", "entrance", t0, "entry"), ExitFrame: k.ZoneFrame("cam:cam-a:1", "entrance", t0, "exit")}
	if !reflect.DeepEqual(z, want) {
		t.Fatalf("zone appearance\n got %+v\nwant %+v", z, want)
	}
	if got := e.frame(z.EntryFrame); got != "entry of cam:cam-a:1" {
		t.Fatalf("entry frame %q", got)
	}
	if got := e.frame(z.ExitFrame); got != "last at exit" {
		t.Fatalf("exit frame %q, want the last frame at the exit", got)
	}
	if n := len(e.zones("cam:cam-a:2")); n != 0 {
		t.Fatalf("the other track got %d zone appearances", n)
	}
	if n := e.unassociated(); n != 0 {
		t.Fatalf("unassociated %v", n)
	}
	// A redelivered exit finds the visit closed and adds nothing.
	e.exit("r-1", "entrance", t0.Add(15*time.Second), streams.RegionObject{ID: "obj-1", Dwell: 12.5})
	if n := len(e.zones("cam:cam-a:1")); n != 1 {
		t.Fatalf("after a redelivered exit: %d zone appearances, want 1", n)
	}
}

// TestDwellAndZoneName: without a dwell in the event it is the time from
// entry to exit; without a region name the zone is the region id; visits of
// two regions by one object are kept apart.
func TestDwellAndZoneName(t *testing.T) {
	e := newEnv(t)
	e.setOpen("cam-a", tr("cam:cam-a:1", streams.Box{170, 120, 230, 190}))
	obj := streams.RegionObject{ID: "obj-1", Cameras: []string{"cam-a"}}
	e.enter("r-1", "", t0, obj)
	e.enter("r-2", "till", t0.Add(time.Second), obj)
	e.exit("r-2", "till", t0.Add(3*time.Second), streams.RegionObject{ID: "obj-1"})
	e.exit("r-1", "", t0.Add(7250*time.Millisecond), streams.RegionObject{ID: "obj-1"})
	zs := e.zones("cam:cam-a:1")
	if len(zs) != 2 {
		t.Fatalf("zone appearances %+v, want 2", zs)
	}
	if z := zs[0]; z.Zone != "till" || z.Dwell != 2 || !z.Entry.Equal(t0.Add(time.Second)) {
		t.Fatalf("first visit %+v, want till for 2 s", z)
	}
	if z := zs[1]; z.Zone != "r-1" || z.Dwell != 7.25 || !z.Exit.Equal(t0.Add(7250*time.Millisecond)) {
		t.Fatalf("second visit %+v, want r-1 for 7.25 s", z)
	}
}

// TestAssociationOnVisibleCameras: an event naming no camera is matched
// against every camera seen; one naming cameras only against those; more
// than one candidate, or none, is counted as unassociated and its exit
// leaves no trace.
func TestAssociationOnVisibleCameras(t *testing.T) {
	e := newEnv(t)
	for _, cam := range []string{"cam-a", "cam-b"} {
		if err := e.st.MarkCameraSeen(e.ctx, cam, t0, 24*time.Hour, 100); err != nil {
			t.Fatal(err)
		}
	}
	e.setOpen("cam-a", tr("cam:cam-a:1", streams.Box{170, 120, 230, 190}))
	e.setOpen("cam-b")
	e.enter("r-1", "hall", t0,
		streams.RegionObject{ID: "anywhere"},                                        // the only open track anywhere
		streams.RegionObject{ID: "on-b", Cameras: []string{"cam-b"}},                // nobody open on cam-b
		streams.RegionObject{ID: "on-a-twice", Cameras: []string{"cam-a", "cam-a"}}, // a repeated camera is one camera
	)
	if n := e.unassociated(); n != 1 {
		t.Fatalf("unassociated %v, want 1", n)
	}
	e.setOpen("cam-b", tr("cam:cam-b:1", streams.Box{10, 10, 50, 60}))
	e.enter("r-1", "hall", t0.Add(time.Second),
		streams.RegionObject{ID: "anywhere-2"},                         // two open tracks now
		streams.RegionObject{ID: "on-b-2", Cameras: []string{"cam-b"}}, // one on cam-b
	)
	if n := e.unassociated(); n != 2 {
		t.Fatalf("unassociated %v, want 2", n)
	}
	e.exit("r-1", "hall", t0.Add(5*time.Second),
		streams.RegionObject{ID: "anywhere"}, streams.RegionObject{ID: "on-b"}, streams.RegionObject{ID: "on-a-twice"},
		streams.RegionObject{ID: "anywhere-2"}, streams.RegionObject{ID: "on-b-2"})
	if zs := e.zones("cam:cam-a:1"); len(zs) != 2 || zs[0].Dwell != 5 || zs[1].Dwell != 5 {
		t.Fatalf("cam-a track: %+v, want the two visits associated with it", zs)
	}
	if zs := e.zones("cam:cam-b:1"); len(zs) != 1 || zs[0].Dwell != 4 {
		t.Fatalf("cam-b track: %+v, want the one visit associated with it", zs)
	}
}

// TestBadInputIsDeadLetteredWithItsReason runs the stage under the real
// pool: an undecodable event and an exit whose stored entry is unreadable
// are rejected at once, a good event is processed.
func TestBadInputIsDeadLetteredWithItsReason(t *testing.T) {
	e := newEnv(t)
	_, js := testenv.NATS(t)
	if err := streams.Declare(e.ctx, js, streams.DefaultLimits(), 3, discard()); err != nil {
		t.Fatal(err)
	}
	p := pool.New(pool.Config{Stage: "zones", Stream: streams.Ingest, Consumer: streams.ConsumerZones, MaxDeliver: 3,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond }}, js, e.stage.Handle, e.m, discard())
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := e.st.OpenZone(e.ctx, "obj-1", "r-1", json.RawMessage(`"not an open zone"`), time.Hour); err != nil {
		t.Fatal(err)
	}
	subj := streams.Subject(streams.IngestRegion, "scene-1", "r-1")
	if _, err := js.Publish(e.ctx, subj, []byte(`{"v":1,"entered":[`)); err != nil {
		t.Fatal(err)
	}
	bad := event("r-1", "hall", t0)
	bad.Exited = []streams.RegionObject{{ID: "obj-1"}}
	good := event("r-1", "hall", t0)
	good.Entered = []streams.RegionObject{{ID: "obj-2"}}
	for _, ev := range []streams.RegionEvent{bad, good} {
		m, err := streams.NewMsg(subj, &ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(e.ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(e.m.DeadLettered.WithLabelValues("zones")) != 2 || testutil.ToFloat64(e.m.Processed.WithLabelValues("zones")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("dead-lettered %v, processed %v; want 2 and 1",
				testutil.ToFloat64(e.m.DeadLettered.WithLabelValues("zones")), testutil.ToFloat64(e.m.Processed.WithLabelValues("zones")))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, reason := range []string{"bad_envelope", "bad_state"} {
		if n := testutil.ToFloat64(e.m.Rejected.WithLabelValues("zones", reason)); n != 1 {
			t.Errorf("rejected{%s} = %v, want 1", reason, n)
		}
	}
	if n := e.unassociated(); n != 1 {
		t.Errorf("unassociated %v, want 1 (the good event's object, with no camera open)", n)
	}
}

// TestFailedExitIsRetried: when recording the visit fails, the exit fails
// and its retry records the visit; the pending entry must not be consumed
// by the failed attempt.
func TestFailedExitIsRetried(t *testing.T) {
	e := newEnv(t)
	e.setOpen("cam-a", tr("cam:cam-a:1", streams.Box{170, 120, 230, 190}))
	e.enter("r-1", "hall", t0, streams.RegionObject{ID: "obj-1", Cameras: []string{"cam-a"}})
	opt, err := redis.ParseURL(e.redis.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	// A key of the wrong type makes the write of the visit fail in Redis
	// itself, as an outage would, at the last step.
	list := e.st.Keys().TrackZones("cam:cam-a:1")
	if err := rdb.Set(e.ctx, list, "in the way", 0).Err(); err != nil {
		t.Fatal(err)
	}
	exit := event("r-1", "hall", t0.Add(4*time.Second))
	exit.Exited = []streams.RegionObject{{ID: "obj-1"}}
	if err := e.stage.Handle(e.ctx, encode(t, exit)); err == nil {
		t.Fatal("the exit succeeded although its visit could not be written")
	}
	if err := rdb.Del(e.ctx, list).Err(); err != nil {
		t.Fatal(err)
	}
	e.mustHandle(exit)
	if zs := e.zones("cam:cam-a:1"); len(zs) != 1 || zs[0].Dwell != 4 {
		t.Fatalf("after the retry: %+v, want the visit", zs)
	}
	e.mustHandle(exit)
	if n := len(e.zones("cam:cam-a:1")); n != 1 {
		t.Fatalf("after a redelivery: %d visits, want 1", n)
	}
}

// TestRacingExitsOneVisit races copies of one exit (a redelivery while the
// first delivery is in hand) through separate stages with separate Redis
// clients: each visit is recorded exactly once.
func TestRacingExitsOneVisit(t *testing.T) {
	e := newEnv(t)
	const workers, rounds = 4, 60
	stages := make([]*Stage, workers)
	for i := range stages {
		st, err := store.Open(e.redis.URL(), "t:")
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		stages[i] = New(st, time.Hour, e.m, discard())
	}
	e.setOpen("cam-a", tr("cam:cam-a:1", streams.Box{170, 120, 230, 190}))
	for r := range rounds {
		obj := streams.RegionObject{ID: fmt.Sprintf("obj-%d", r), Cameras: []string{"cam-a"}}
		e.enter("r-1", "hall", t0, obj)
		exit := event("r-1", "hall", t0.Add(time.Duration(r+1)*time.Second))
		exit.Exited = []streams.RegionObject{{ID: obj.ID}}
		m := encode(t, exit)
		errs := make([]error, workers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[w] = stages[w].Handle(e.ctx, m)
			}()
		}
		close(start)
		wg.Wait()
		for w, err := range errs {
			if err != nil {
				t.Fatalf("round %d worker %d: %v", r, w, err)
			}
		}
		zs := e.zones("cam:cam-a:1")
		if len(zs) != r+1 || zs[r].Dwell != float64(r+1) {
			t.Fatalf("round %d: %d visits (last %+v), want %d", r, len(zs), zs[len(zs)-1], r+1)
		}
	}
}

// TestRevisitKeepsEachVisitsFrames: a track that visits a zone twice has
// two appearances whose exit frames are their own; the second visit must
// not overwrite the first one's evidence.
func TestRevisitKeepsEachVisitsFrames(t *testing.T) {
	e := newEnv(t)
	e.setOpen("cam-a", tr("cam:cam-a:1", streams.Box{170, 120, 230, 190}))
	obj := streams.RegionObject{ID: "obj-1", Cameras: []string{"cam-a"}}
	for i, last := range []string{"last at first exit", "last at second exit"} {
		at := t0.Add(time.Duration(10*i) * time.Second)
		e.enter("r-1", "hall", at, obj)
		e.setLastFrame("cam:cam-a:1", "cam-a", []byte(last))
		e.exit("r-1", "hall", at.Add(5*time.Second), streams.RegionObject{ID: "obj-1"})
	}
	zs := e.zones("cam:cam-a:1")
	if len(zs) != 2 {
		t.Fatalf("zone appearances %+v, want 2", zs)
	}
	for i, want := range []string{"last at first exit", "last at second exit"} {
		if got := e.frame(zs[i].ExitFrame); got != want {
			t.Errorf("visit %d exit frame %q, want %q", i+1, got, want)
		}
		if got := e.frame(zs[i].EntryFrame); got != "entry of cam:cam-a:1" {
			t.Errorf("visit %d entry frame %q", i+1, got)
		}
	}
}
