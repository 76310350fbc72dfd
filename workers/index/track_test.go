package index

import (
	"math"
	"testing"
	"time"

	"poi/streams"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func testConfig() Config {
	return Config{Model: "m", Silence: 5 * time.Second, SampleInterval: 10 * time.Second, MaxSamples: 3, MinIoU: 0.3,
		Continuity: 0.4, BetterView: 1.5, LastFrameEvery: time.Second}
}

// unit returns a unit vector along axis i (of 8), tilted by eps towards
// axis i+1, so vectors of one axis are similar and of different axes not.
func unit(i int, eps float64) streams.Vector {
	v := make(streams.Vector, 8)
	v[i%8] = float32(math.Sqrt(1 - eps*eps))
	v[(i+1)%8] = float32(eps)
	return v
}

func face(box streams.Box, v streams.Vector) streams.ObservedFace {
	return streams.ObservedFace{Box: box, Score: 0.9, Embedding: v, Model: "m"}
}

// step runs the two pure halves with no embedder (faces carry vectors or
// are left without).
func step(c Config, st *state, at time.Duration, seq uint64, faces ...streams.ObservedFace) (stepOut, *plan) {
	obs := streams.Observation{Header: streams.Current(), CameraID: "cam", Timestamp: t0.Add(at), Faces: faces, FrameJPEG: []byte{0xFF, 0xD8, 0xFF}}
	p := c.link(st, &obs)
	return c.apply(st, &obs, seq, p, nil), p
}

func TestStepOpensATrackForANewFace(t *testing.T) {
	c, st := testConfig(), &state{Next: 1}
	out, _ := step(c, st, 0, 7, face(streams.Box{0, 0, 100, 100}, unit(0, 0)))
	if len(st.Tracks) != 1 || st.Tracks[0].ID != "cam:cam:1" || st.Next != 2 || st.Seq != 7 || out.opened != 1 {
		t.Fatalf("state %+v, out opened %d", st, out.opened)
	}
	u := out.updates["cam:cam:1"]
	if u == nil || u.EntryFrame == nil || u.LastFrame == nil || u.Track.Frames != 1 {
		t.Fatalf("update %+v", u)
	}
	if len(out.samples) != 1 || len(out.sightings) != 1 || out.samples[0].ID != sampleID("cam:cam:1", 0) {
		t.Fatalf("samples %d sightings %d", len(out.samples), len(out.sightings))
	}
}

func TestStepContinuesByIoU(t *testing.T) {
	c, st := testConfig(), &state{Next: 1}
	step(c, st, 0, 1, face(streams.Box{0, 0, 100, 100}, unit(0, 0)))
	// A different vector, but the box barely moved: IoU decides.
	out, _ := step(c, st, 100*time.Millisecond, 2, face(streams.Box{5, 5, 105, 105}, unit(3, 0)))
	if len(st.Tracks) != 1 || out.opened != 0 || st.Tracks[0].Frames != 2 {
		t.Fatalf("tracks %d opened %d frames %d", len(st.Tracks), out.opened, st.Tracks[0].Frames)
	}
	// Two faces, two tracks: the best overlaps pair up first.
	out, _ = step(c, st, 200*time.Millisecond, 3, face(streams.Box{500, 0, 600, 100}, unit(5, 0)), face(streams.Box{6, 6, 106, 106}, unit(3, 0)))
	if len(st.Tracks) != 2 || out.opened != 1 || out.updates["cam:cam:1"].Track.Box != (streams.Box{6, 6, 106, 106}) {
		t.Fatalf("tracks %d opened %d", len(st.Tracks), out.opened)
	}
}

func TestStepContinuesByEmbeddingAcrossAJump(t *testing.T) {
	c, st := testConfig(), &state{Next: 1}
	step(c, st, 0, 1, face(streams.Box{0, 0, 100, 100}, unit(0, 0)))
	// No overlap, a similar vector: the same person after a gap.
	out, _ := step(c, st, 2*time.Second, 2, face(streams.Box{800, 400, 900, 500}, unit(0, 0.3)))
	if len(st.Tracks) != 1 || out.opened != 0 {
		t.Fatalf("a similar face across a jump opened a track: %d tracks", len(st.Tracks))
	}
	// No overlap, a dissimilar vector: someone else.
	out, _ = step(c, st, 3*time.Second, 3, face(streams.Box{0, 400, 100, 500}, unit(4, 0)))
	if len(st.Tracks) != 2 || out.opened != 1 {
		t.Fatalf("a different face joined a track: %d tracks", len(st.Tracks))
	}
}

func TestStepExitsAfterSilence(t *testing.T) {
	c, st := testConfig(), &state{Next: 1}
	step(c, st, 0, 1, face(streams.Box{0, 0, 100, 100}, unit(0, 0)))
	out, _ := step(c, st, 5*time.Second, 2) // exactly the window: still open
	if len(st.Tracks) != 1 || out.closed != 0 {
		t.Fatal("closed at the silence window")
	}
	out, _ = step(c, st, 5*time.Second+time.Millisecond, 3)
	u := out.updates["cam:cam:1"]
	if len(st.Tracks) != 0 || out.closed != 1 || u == nil || !u.Exited || !u.Track.Exit.Equal(t0) {
		t.Fatalf("not closed after the silence: %+v", u)
	}
	// A tick applies the exit without moving the sequence.
	st2 := &state{Next: 1}
	step(c, st2, 0, 9, face(streams.Box{0, 0, 100, 100}, unit(0, 0)))
	obs := streams.Observation{CameraID: "cam", Timestamp: t0.Add(6 * time.Second), Tick: true}
	tick := c.apply(st2, &obs, 0, c.link(st2, &obs), nil)
	if tick.closed != 1 || st2.Seq != 9 {
		t.Fatalf("tick closed %d, seq %d", tick.closed, st2.Seq)
	}
}

func TestStepSpacesSamplesAndCapsThem(t *testing.T) {
	c, st := testConfig(), &state{Next: 1}
	samples := 0
	for i := range 60 { // one face for 60 s, a frame a second
		out, _ := step(c, st, time.Duration(i)*time.Second, uint64(i+1), face(streams.Box{0, 0, 100, 100}, unit(0, 0)))
		samples += len(out.samples)
		if len(out.sightings) != 1 {
			t.Fatalf("frame %d: %d sightings", i, len(out.sightings))
		}
	}
	// At 0 s, 10 s, 20 s, then the cap of 3.
	if samples != 3 || st.Tracks[0].Samples != 3 {
		t.Fatalf("%d samples, want 3 (every 10 s, at most 3)", samples)
	}
}

func TestStepEmbeddingBudget(t *testing.T) {
	c, st := testConfig(), &state{Next: 1}
	box := streams.Box{0, 0, 100, 100}
	noVec := func(b streams.Box) streams.ObservedFace { return streams.ObservedFace{Box: b, Score: 0.9} }
	// A new face without a vector needs one.
	obs := streams.Observation{CameraID: "cam", Timestamp: t0, Faces: []streams.ObservedFace{noVec(box)}}
	p := c.link(st, &obs)
	if len(p.need) != 1 {
		t.Fatalf("new face: need %v", p.need)
	}
	obs.Faces[0].Embedding = unit(0, 0)
	c.apply(st, &obs, 1, p, nil)
	cases := []struct {
		name string
		at   time.Duration
		box  streams.Box
		want int
	}{
		{"same size, soon after", time.Second, box, 0},
		{"a clearly larger view", 2 * time.Second, streams.Box{0, 0, 130, 130}, 1},
		{"a refresh after the sample interval", 10 * time.Second, box, 1},
	}
	for _, tc := range cases {
		st2 := cloneState(st)
		o := streams.Observation{CameraID: "cam", Timestamp: t0.Add(tc.at), Faces: []streams.ObservedFace{noVec(tc.box)}}
		if got := len(c.link(st2, &o).need); got != tc.want {
			t.Errorf("%s: %d faces to embed, want %d", tc.name, got, tc.want)
		}
	}
}

func TestMergeKeepsFirstEntryAndLatestRecord(t *testing.T) {
	c, st := testConfig(), &state{Next: 1}
	total, _ := step(c, st, 0, 1, face(streams.Box{0, 0, 100, 100}, unit(0, 0)))
	entry := total.updates["cam:cam:1"].EntryFrame
	for i := 1; i < 5; i++ {
		out, _ := step(c, st, time.Duration(i)*1100*time.Millisecond, uint64(i+1), face(streams.Box{i, i, 100 + i, 100 + i}, unit(0, 0)))
		total.merge(out)
	}
	u := total.updates["cam:cam:1"]
	if &u.EntryFrame[0] != &entry[0] || u.Track.Frames != 5 || u.Track.Box != (streams.Box{4, 4, 104, 104}) || len(total.sightings) != 5 {
		t.Fatalf("merged %+v, %d sightings", u.Track, len(total.sightings))
	}
}
