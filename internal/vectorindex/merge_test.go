package vectorindex

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"poi/internal/faiss"
)

func TestMergeGroups(t *testing.T) {
	for _, tc := range []struct {
		name          string
		sizes         []int
		max, minAdded int
		want          [][2]int
	}{
		{"nothing sealed", nil, 100, 10, nil},
		{"one segment", []int{50}, 100, 10, nil},
		{"all fit", []int{20, 40, 40}, 100, 10, [][2]int{{0, 3}}},
		// Newest first: the two newest fill the cap, the oldest is alone.
		{"cap splits oldest off", []int{40, 40, 50}, 100, 10, [][2]int{{1, 3}}},
		{"cap splits into two groups", []int{30, 30, 40, 40, 50}, 100, 10, [][2]int{{3, 5}, {0, 3}}},
		// A big merged segment and a small new one: not worth a rebuild
		// until the new ones add minAdded.
		{"small addition waits", []int{90, 5}, 100, 10, nil},
		{"additions accumulate", []int{85, 5, 6}, 100, 10, [][2]int{{0, 3}}},
		{"larger than the cap stays alone", []int{150, 30, 30}, 100, 10, [][2]int{{1, 3}}},
		{"empty segments merge away", []int{0, 0, 20}, 100, 0, [][2]int{{0, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeGroups(tc.sizes, tc.max, tc.minAdded)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("mergeGroups(%v, %d, %d) = %v, want %v", tc.sizes, tc.max, tc.minAdded, got, tc.want)
			}
		})
	}
}

// recallDet runs nq queries over [from, to] and returns the mean recall@k
// against brute force, failing on any hit outside the range, removed, or
// with a wrong time.
func recallDet(t *testing.T, d *DetectionIndex, f *faceLike, refs []detRef, gone map[int64]bool, from, to time.Time, nq, k int) float64 {
	t.Helper()
	byID := map[int64]detRef{}
	for _, r := range refs {
		byID[r.id] = r
	}
	found, total := 0, 0
	for range nq {
		q := f.any()
		hits, _, err := d.Search(q, from, to, k)
		if err != nil {
			t.Fatal(err)
		}
		want := bruteDet(refs, gone, q, from, to, k)
		if len(hits) != len(want) {
			t.Fatalf("[%v, %v]: %d hits, want %d", from, to, len(hits), len(want))
		}
		exact := map[int64]bool{}
		for _, w := range want {
			exact[w.id] = true
		}
		for _, h := range hits {
			r, ok := byID[h.ID]
			if !ok || gone[h.ID] || h.Time.Before(from) || h.Time.After(to) || !h.Time.Equal(r.t) {
				t.Fatalf("[%v, %v]: hit %d at %v is removed, unknown or out of range", from, to, h.ID, h.Time)
			}
			if exact[h.ID] {
				found++
			}
		}
		total += len(want)
	}
	if total == 0 {
		return 1
	}
	return float64(found) / float64(total)
}

// checkSegmentsDisjoint fails unless the segments are sorted, disjoint and
// aligned to the segment duration.
func checkSegmentsDisjoint(t *testing.T, segs []SegmentInfo, dur time.Duration) {
	t.Helper()
	for i, s := range segs {
		if !s.End.After(s.Start) || s.Start.Sub(t0)%dur != 0 || s.End.Sub(t0)%dur != 0 {
			t.Fatalf("segment %d spans %v..%v", i, s.Start, s.End)
		}
		if i > 0 && segs[i-1].End.After(s.Start) {
			t.Fatalf("segments %d and %d overlap: %+v %+v", i-1, i, segs[i-1], s)
		}
	}
}

// TestDetectionMerge covers CompactDue's merging of sealed hourly
// segments: the layout it builds, adds and removals racing the build, adds
// into a merged span afterwards, search recall and range filtering across
// merged segments, retention inside a merged segment, and a snapshot of
// merged segments with tombstones answering exactly like the original.
func TestDetectionMerge(t *testing.T) {
	f := newFaceLike(31, testModel.Dim, 200, 0.8)
	d := mustDet(t, DetectionConfig{SegmentDuration: time.Hour, HNSWMinVectors: 300, MergeMaxVectors: 3400})
	refs := fillDet(t, d, f, 4400, 11*time.Hour) // ~400 an hour, hours 0..10
	gone := map[int64]bool{}
	var lateID int64 = 90001
	var raceGone int64
	for _, r := range refs {
		if r.t.After(t0.Add(5*time.Hour)) && r.t.Before(t0.Add(6*time.Hour)) {
			raceGone = r.id
			break
		}
	}
	lateVec := f.any()
	builds := 0
	d.afterBuild = func() {
		builds++
		if builds > 1 {
			return
		}
		// During the first merge's build (the newest group, hours 2..9),
		// one detection arrives in one of its sources and one is removed.
		if err := d.Add(lateID, t0.Add(5*time.Hour+30*time.Minute), lateVec); err != nil {
			t.Error(err)
		}
		if _, err := d.Remove(raceGone); err != nil {
			t.Error(err)
		}
	}
	now := t0.Add(10*time.Hour + 30*time.Minute)
	if _, err := d.CompactDue(t.Context(), now); err != nil {
		t.Fatal(err)
	}
	d.afterBuild = nil
	refs = append(refs, detRef{id: lateID, t: t0.Add(5*time.Hour + 30*time.Minute), vec: lateVec})
	gone[raceGone] = true

	segs := d.Segments()
	checkSegmentsDisjoint(t, segs, time.Hour)
	// Hours 2..9 (8 x ~400 within the cap of 3400), hours 0..1, and the
	// open hour 10, converted on its own.
	if len(segs) != 3 || !segs[0].Start.Equal(t0) || !segs[0].End.Equal(t0.Add(2*time.Hour)) ||
		!segs[1].End.Equal(t0.Add(10*time.Hour)) || !segs[2].End.Equal(t0.Add(11*time.Hour)) {
		t.Fatalf("layout after merge: %+v", segs)
	}
	live := 0
	for _, s := range segs {
		if s.Kind != faiss.HNSW {
			t.Fatalf("segment not HNSW: %+v", s)
		}
		live += s.Live
	}
	if live != len(refs)-1 || d.Count() != live || segs[1].Tombstones != 1 {
		t.Fatalf("live %d count %d tombstones %d, want %d and 1", live, d.Count(), segs[1].Tombstones, len(refs)-1)
	}

	// A detection inside a merged span goes into that segment.
	inSpan := detRef{id: 90002, t: t0.Add(4*time.Hour + 10*time.Minute), vec: f.any()}
	if err := d.Add(inSpan.id, inSpan.t, inSpan.vec); err != nil {
		t.Fatal(err)
	}
	refs = append(refs, inSpan)
	if got := d.Segments(); len(got) != 3 || got[1].Live != segs[1].Live+1 {
		t.Fatalf("add into merged span made %+v", got)
	}
	for _, id := range []int64{lateID, inSpan.id} {
		r := refs[slices.IndexFunc(refs, func(r detRef) bool { return r.id == id })]
		hits, _, err := d.Search(r.vec, t0, now, 1)
		if err != nil || len(hits) != 1 || hits[0].ID != id {
			t.Fatalf("detection %d not found: %v %v", id, hits, err)
		}
	}

	ranges := []struct {
		name     string
		from, to time.Time
	}{
		{"all", t0, now},
		{"cuts the merged segments", t0.Add(90 * time.Minute), t0.Add(7*time.Hour + 20*time.Minute)},
		{"narrow, exact", t0.Add(5 * time.Hour), t0.Add(5*time.Hour + 20*time.Minute)},
	}
	check := func(stage string) {
		for _, r := range ranges {
			if rec := recallDet(t, d, f, refs, gone, r.from, r.to, 40, 10); rec < 0.95 {
				t.Errorf("%s, %s: recall@10 %.3f", stage, r.name, rec)
			}
		}
	}
	check("merged")

	// Retention inside the merged segment: the expired part becomes
	// tombstones, none of it is returned or can be added again.
	horizon := t0.Add(5 * time.Hour)
	if dropped, _ := d.DropBefore(horizon); dropped != 1 {
		t.Fatalf("retention dropped %d segments, want the merged hours 0..1", dropped)
	}
	for _, r := range refs {
		if r.t.Before(horizon) {
			gone[r.id] = true
		}
	}
	if err := d.Add(refs[0].id+100000, t0.Add(3*time.Hour), f.any()); !errors.Is(err, ErrExpired) {
		t.Fatalf("add before the horizon: %v", err)
	}
	check("after retention")

	// The snapshot keeps merged spans and tombstones: the loaded index
	// answers every range exactly as the original does.
	dir := t.TempDir()
	if err := d.Snapshot(dir, 7); err != nil {
		t.Fatal(err)
	}
	back, _, err := LoadDetectionIndex(dir, DetectionConfig{Model: testModel, SegmentDuration: time.Hour, HNSWMinVectors: 300, MergeMaxVectors: 3400})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if !slices.Equal(back.Segments(), d.Segments()) {
		t.Fatalf("segments after load:\n%+v\nwant\n%+v", back.Segments(), d.Segments())
	}
	for _, r := range ranges {
		for range 20 {
			q := f.any()
			want, _, err1 := d.Search(q, r.from, r.to, 10)
			got, _, err2 := back.Search(q, r.from, r.to, 10)
			if err1 != nil || err2 != nil || !slices.Equal(got, want) {
				t.Fatalf("%s: loaded index answers %v (%v), original %v (%v)", r.name, got, err2, want, err1)
			}
		}
	}

	// Tombstones of retention reach a quarter of the merged segment:
	// Compact rebuilds it, and the removed ids before the horizon are
	// forgotten (their times are refused anyway).
	if n, err := d.CompactDue(t.Context(), now); err != nil || n != 1 {
		t.Fatalf("rebuild after retention: %d %v", n, err)
	}
	if s := d.Segments()[0]; s.Tombstones != 0 || !s.Start.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("rebuilt merged segment %+v", s)
	}
	d.mu.RLock()
	forgotten := true
	for id := range d.dead {
		if id != raceGone {
			forgotten = false
		}
	}
	d.mu.RUnlock()
	if !forgotten {
		t.Fatal("removed ids older than the horizon are still kept")
	}
	check("rebuilt")
}

// TestCompactStopsWithItsContext: once its context is done, compaction
// starts no build and leaves the segments as they were, so a replica's
// shutdown waits at most for a build already under way.
func TestCompactStopsWithItsContext(t *testing.T) {
	f := newFaceLike(32, testModel.Dim, 50, 0.8)
	d := mustDet(t, DetectionConfig{SegmentDuration: time.Hour, HNSWMinVectors: 100})
	refs := fillDet(t, d, f, 3000, 5*time.Hour)
	before := d.Segments()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if n, err := d.CompactDue(ctx, t0.Add(4*time.Hour+time.Minute)); !errors.Is(err, context.Canceled) || n != 0 {
		t.Fatalf("compact with a done context: %d %v", n, err)
	}
	if !slices.Equal(d.Segments(), before) {
		t.Fatalf("segments changed:\n%+v\nwant\n%+v", d.Segments(), before)
	}
	if rec := recallDet(t, d, f, refs, nil, t0, t0.Add(5*time.Hour), 5, 10); rec != 1 {
		t.Fatalf("flat segments after a stopped build: recall %.3f", rec)
	}
}
