package vectorindex

import (
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"poi/internal/faiss"
)

var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

type detRef struct {
	id  int64
	t   time.Time
	vec []float32
}

func mustDet(t *testing.T, cfg DetectionConfig) *DetectionIndex {
	t.Helper()
	if cfg.Model.Name == "" {
		cfg.Model = testModel
	}
	d, err := NewDetectionIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// fillDet adds n detections spread at random over span from t0, ids 1..n.
func fillDet(t *testing.T, d *DetectionIndex, f *faceLike, n int, span time.Duration) []detRef {
	t.Helper()
	refs := make([]detRef, n)
	batch := make([]Detection, n)
	for i := range n {
		ts := t0.Add(time.Duration(f.rng.Int64N(int64(span))))
		refs[i] = detRef{id: int64(i + 1), t: ts, vec: f.any()}
		batch[i] = Detection{ID: refs[i].id, Time: ts, Vector: refs[i].vec}
	}
	if err := d.AddBatch(batch); err != nil {
		t.Fatal(err)
	}
	return refs
}

// bruteDet is the reference of DetectionIndex.Search.
func bruteDet(refs []detRef, gone map[int64]bool, q []float32, from, to time.Time, k int) []scored {
	var out []scored
	for _, r := range refs {
		if gone[r.id] || r.t.Before(from) || r.t.After(to) {
			continue
		}
		out = append(out, scored{key: strconv.FormatInt(r.id, 10), id: r.id, sim: dot(r.vec, q)})
	}
	sortScored(out)
	return out[:min(k, len(out))]
}

func detKeys(hits []Hit) ([]string, []float32) {
	var keys []string
	var sims []float32
	for _, h := range hits {
		keys = append(keys, strconv.FormatInt(h.ID, 10))
		sims = append(sims, h.Similarity)
	}
	return keys, sims
}

func checkDet(t *testing.T, d *DetectionIndex, refs []detRef, gone map[int64]bool, q []float32, from, to time.Time, k int) SearchStats {
	t.Helper()
	hits, st, err := d.Search(q, from, to, k)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]detRef{}
	for _, r := range refs {
		byID[r.id] = r
	}
	for _, h := range hits {
		if h.Time.Before(from) || h.Time.After(to) {
			t.Fatalf("hit %d at %v outside [%v, %v]", h.ID, h.Time, from, to)
		}
		if !h.Time.Equal(byID[h.ID].t) {
			t.Fatalf("hit %d time %v, stored %v", h.ID, h.Time, byID[h.ID].t)
		}
	}
	keys, sims := detKeys(hits)
	checkRanking(t, keys, sims, bruteDet(refs, gone, q, from, to, k))
	return st
}

func TestDetectionSearchMatchesBruteForce(t *testing.T) {
	f := newFaceLike(10, testModel.Dim, 200, 0.8)
	d := mustDet(t, DetectionConfig{SearchWorkers: 2}) // exercises concurrent segment search
	refs := fillDet(t, d, f, 4000, 48*time.Hour)
	if d.Count() != 4000 || len(d.Segments()) != 48 {
		t.Fatalf("count %d segments %d", d.Count(), len(d.Segments()))
	}
	ranges := []struct{ from, to time.Time }{
		{t0, t0.Add(48 * time.Hour)},                                                // everything
		{t0.Add(5 * time.Hour), t0.Add(6*time.Hour - 1)},                            // exactly one segment
		{t0.Add(5*time.Hour + 17*time.Minute), t0.Add(9*time.Hour + 3*time.Minute)}, // cut segments at both ends
		{t0.Add(30*time.Hour + time.Minute), t0.Add(30*time.Hour + 2*time.Minute)},  // inside one segment
		{t0.Add(-time.Hour), t0.Add(-time.Minute)},                                  // before any data
	}
	for _, r := range ranges {
		for _, k := range []int{1, 10, 50} {
			for range 3 {
				checkDet(t, d, refs, nil, f.any(), r.from, r.to, k)
			}
		}
	}
	// A one-hour aligned range touches one segment and only its vectors.
	_, st, err := d.Search(f.any(), t0.Add(5*time.Hour), t0.Add(6*time.Hour-1), 10)
	if err != nil {
		t.Fatal(err)
	}
	inSeg := 0
	for _, r := range refs {
		if !r.t.Before(t0.Add(5*time.Hour)) && r.t.Before(t0.Add(6*time.Hour)) {
			inSeg++
		}
	}
	if st.SegmentsSearched != 1 || st.VectorsSearched != inSeg {
		t.Fatalf("one-hour stats %+v, want 1 segment of %d vectors", st, inSeg)
	}
	_, st, _ = d.Search(f.any(), t0, t0.Add(48*time.Hour), 10)
	if st.SegmentsSearched != 48 || st.VectorsSearched != 4000 {
		t.Fatalf("full-range stats %+v", st)
	}
	// A cut segment only compares the detections inside the range.
	_, st, _ = d.Search(f.any(), t0.Add(30*time.Hour+time.Minute), t0.Add(30*time.Hour+2*time.Minute), 10)
	if st.SegmentsSearched != 1 || st.VectorsSearched > inSeg {
		t.Fatalf("sub-segment stats %+v", st)
	}
	if _, _, err := d.Search(f.any(), t0.Add(time.Hour), t0, 5); err == nil {
		t.Fatal("inverted range accepted")
	}
	if _, _, err := d.Search(make([]float32, 8), t0, t0.Add(time.Hour), 5); !errors.Is(err, ErrDimension) {
		t.Fatalf("wrong dimension query: %v", err)
	}
	if err := d.Add(99999, t0, make([]float32, 8)); !errors.Is(err, ErrDimension) {
		t.Fatalf("wrong dimension add: %v", err)
	}
}

func TestDetectionDuplicatesAndTombstones(t *testing.T) {
	f := newFaceLike(11, testModel.Dim, 50, 0.8)
	// A small threshold so Compact turns segments into HNSW.
	d := mustDet(t, DetectionConfig{HNSWMinVectors: 100, HNSW: faiss.HNSWParams{EfSearch: 64}})
	refs := fillDet(t, d, f, 1500, 3*time.Hour)
	// Redelivery, even with another time or vector, stores nothing new.
	if err := d.Add(refs[0].id, t0.Add(2*time.Hour+time.Minute), f.any()); err != nil {
		t.Fatal(err)
	}
	if err := d.AddBatch([]Detection{{ID: 5000, Time: t0, Vector: f.any()}, {ID: 5000, Time: t0, Vector: f.any()}}); err != nil {
		t.Fatal(err)
	}
	if d.Count() != 1501 {
		t.Fatalf("count after duplicates %d, want 1501", d.Count())
	}
	if n, err := d.Remove(5000); err != nil || n != 1 {
		t.Fatalf("remove 5000: %d %v", n, err)
	}

	// Seal the first two hours as HNSW; the third stays flat.
	n, err := d.Compact(t.Context(), t0.Add(2*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("compact: %d %v", n, err)
	}
	segs := d.Segments()
	if segs[0].Kind != faiss.HNSW || segs[1].Kind != faiss.HNSW || segs[2].Kind != faiss.Flat {
		t.Fatalf("segment kinds %+v", segs)
	}

	// Remove the best match of some queries in every segment kind.
	gone := map[int64]bool{}
	q := f.any()
	all := []time.Time{t0, t0.Add(3 * time.Hour)}
	hits, _, _ := d.Search(q, all[0], all[1], 30)
	for i, h := range hits {
		if i%2 == 0 {
			gone[h.ID] = true
		}
	}
	ids := make([]int64, 0, len(gone))
	for id := range gone {
		ids = append(ids, id)
	}
	if n, err := d.Remove(append(ids, 777777)...); err != nil || n != len(gone) {
		t.Fatalf("remove: %d %v, want %d", n, err, len(gone))
	}
	if d.Count() != 1500-len(gone) {
		t.Fatalf("count %d after removing %d", d.Count(), len(gone))
	}
	tomb := 0
	for _, s := range d.Segments() {
		tomb += s.Tombstones
	}
	if tomb == 0 {
		t.Fatal("HNSW removals left no tombstones")
	}
	hits, _, err = d.Search(q, all[0], all[1], 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		if gone[h.ID] {
			t.Fatalf("removed id %d returned", h.ID)
		}
	}
	// Exact where exact: a one-segment range on the flat segment and cut
	// ranges (exact subset search) on HNSW segments.
	checkDet(t, d, refs, gone, q, t0.Add(2*time.Hour), t0.Add(3*time.Hour-1), 10)
	checkDet(t, d, refs, gone, q, t0.Add(10*time.Minute), t0.Add(70*time.Minute), 10)
	// A removed id is never re-added by a redelivery.
	for id := range gone {
		if err := d.Add(id, t0, f.any()); err != nil {
			t.Fatal(err)
		}
	}
	if d.Count() != 1500-len(gone) {
		t.Fatal("redelivery resurrected removed ids")
	}
	// Removing most of an HNSW segment makes Compact rebuild it without
	// its tombstones.
	var seg0 []int64
	for _, r := range refs {
		if r.t.Before(t0.Add(time.Hour)) && !gone[r.id] && r.id%2 == 0 {
			seg0 = append(seg0, r.id)
			gone[r.id] = true
		}
	}
	if _, err := d.Remove(seg0...); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Compact(t.Context(), t0.Add(2*time.Hour)); err != nil || n < 1 {
		t.Fatalf("compact dirty HNSW: %d %v", n, err)
	}
	if s := d.Segments()[0]; s.Tombstones != 0 || s.Kind != faiss.HNSW {
		t.Fatalf("segment after rebuild %+v", s)
	}
	checkDet(t, d, refs, gone, q, t0.Add(10*time.Minute), t0.Add(50*time.Minute), 10)
}

func TestDetectionHNSWRecall(t *testing.T) {
	f := newFaceLike(12, testModel.Dim, 200, 0.8)
	d := mustDet(t, DetectionConfig{HNSWMinVectors: 1000})
	refs := fillDet(t, d, f, 6000, time.Hour)
	if n, err := d.Compact(t.Context(), t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("compact: %d %v", n, err)
	}
	if d.Segments()[0].Kind != faiss.HNSW {
		t.Fatal("segment not converted")
	}
	const nq, k = 100, 10
	hit := 0
	for range nq {
		q := f.any()
		got, _, err := d.Search(q, t0, t0.Add(time.Hour), k)
		if err != nil {
			t.Fatal(err)
		}
		want := bruteDet(refs, nil, q, t0, t0.Add(time.Hour), k)
		for _, w := range want {
			if slices.ContainsFunc(got, func(h Hit) bool { return h.ID == w.id }) {
				hit++
			}
		}
	}
	recall := float64(hit) / float64(nq*k)
	t.Logf("recall@%d over one HNSW segment of 6000: %.3f", k, recall)
	if recall < 0.95 {
		t.Fatalf("recall@%d %.3f < 0.95", k, recall)
	}
}

func TestDetectionRetention(t *testing.T) {
	f := newFaceLike(13, testModel.Dim, 50, 0.8)
	d := mustDet(t, DetectionConfig{})
	refs := fillDet(t, d, f, 2000, 10*time.Hour)
	if _, err := d.Remove(refs[0].id, refs[1].id); err != nil {
		t.Fatal(err)
	}
	cut := t0.Add(4*time.Hour + 30*time.Minute)
	wantVecs := 0
	var kept []detRef
	// Retention is exact: the four whole hours go, and so does the first
	// half of the hour holding the cut.
	for _, r := range refs[2:] {
		if r.t.Before(cut) {
			wantVecs++
		} else {
			kept = append(kept, r)
		}
	}
	for _, r := range refs[:2] {
		if !r.t.Before(cut) {
			kept = append(kept, r) // removed but in a kept range; stays gone
		}
	}
	segs, vecs := d.DropBefore(cut)
	if segs != 4 || vecs != wantVecs {
		t.Fatalf("dropped %d segments %d vectors, want 4 and %d", segs, vecs, wantVecs)
	}
	if d.Count() != 1998-wantVecs || len(d.Segments()) != 6 {
		t.Fatalf("after drop: count %d, %d segments", d.Count(), len(d.Segments()))
	}
	gone := map[int64]bool{refs[0].id: true, refs[1].id: true}
	st := checkDet(t, d, kept, gone, f.any(), t0, t0.Add(10*time.Hour), 20)
	if st.SegmentsSearched != 6 {
		t.Fatalf("searched %d segments after drop", st.SegmentsSearched)
	}
	// Late detections from before the cut are refused, also inside the
	// segment holding the cut.
	if err := d.Add(90001, t0.Add(3*time.Hour), f.any()); !errors.Is(err, ErrExpired) {
		t.Fatalf("add before horizon: %v", err)
	}
	if err := d.Add(90002, t0.Add(4*time.Hour+time.Minute), f.any()); !errors.Is(err, ErrExpired) {
		t.Fatalf("add before the cut in the kept segment: %v", err)
	}
	if err := d.Add(90003, t0.Add(4*time.Hour+31*time.Minute), f.any()); err != nil {
		t.Fatalf("add after the cut: %v", err)
	}
	if segs, vecs := d.DropBefore(cut); segs != 0 || vecs != 0 {
		t.Fatalf("second drop %d %d", segs, vecs)
	}
	if segs, _ := d.DropBefore(t0.Add(11 * time.Hour)); segs != 6 || d.Count() != 0 {
		t.Fatalf("drop all: %d segments, count %d", segs, d.Count())
	}
}

func TestDetectionConcurrent(t *testing.T) {
	f := newFaceLike(14, testModel.Dim, 50, 0.8)
	d := mustDet(t, DetectionConfig{HNSWMinVectors: 200, SearchWorkers: 3, HNSW: faiss.HNSWParams{M: 8, EfConstruction: 16, EfSearch: 32}})
	fillDet(t, d, f, 1000, 4*time.Hour)
	qs := make([][]float32, 20)
	for i := range qs {
		qs[i] = f.any()
	}
	vs := make([][]float32, 50)
	for i := range vs {
		vs[i] = f.any()
	}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			for i := range 150 {
				from := t0.Add(time.Duration(i%5) * time.Hour)
				if _, _, err := d.Search(qs[(g+i)%20], from, from.Add(2*time.Hour), 10); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 600 {
			ts := t0.Add(time.Duration(i) * 30 * time.Second)
			if err := d.Add(int64(10000+i), ts, vs[i%50]); err != nil && !errors.Is(err, ErrExpired) {
				t.Error(err)
				return
			}
			if i%10 == 0 {
				if _, err := d.Remove(int64(1 + i)); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	wg.Go(func() {
		for i := range 3 {
			if _, err := d.Compact(t.Context(), t0.Add(time.Duration(i+1)*time.Hour)); err != nil {
				t.Error(err)
				return
			}
		}
		d.DropBefore(t0.Add(30 * time.Minute))
	})
	wg.Wait()
	total := 0
	for _, s := range d.Segments() {
		total += s.Live
	}
	if total != d.Count() {
		t.Fatalf("segments hold %d live, count %d", total, d.Count())
	}
}

func TestDetectionUseAfterClose(t *testing.T) {
	d, err := NewDetectionIndex(DetectionConfig{Model: testModel})
	if err != nil {
		t.Fatal(err)
	}
	v := newFaceLike(15, testModel.Dim, 1, 0.1).any()
	if err := d.Add(1, t0, v); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(2, t0, v); !errors.Is(err, ErrClosed) {
		t.Errorf("add: %v", err)
	}
	if _, _, err := d.Search(v, t0, t0.Add(time.Hour), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("search: %v", err)
	}
	if _, err := d.Remove(1); !errors.Is(err, ErrClosed) {
		t.Errorf("remove: %v", err)
	}
	if _, err := d.Compact(t.Context(), t0.Add(time.Hour)); !errors.Is(err, ErrClosed) {
		t.Errorf("compact: %v", err)
	}
	if err := d.Snapshot(t.TempDir(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("snapshot: %v", err)
	}
	if _, err := NewDetectionIndex(DetectionConfig{Model: testModel, SegmentDuration: time.Millisecond}); err == nil {
		t.Error("1ms segments accepted")
	}
}

func TestDetectionCompactCatchesUp(t *testing.T) {
	f := newFaceLike(16, testModel.Dim, 50, 0.8)
	d := mustDet(t, DetectionConfig{HNSWMinVectors: 100, SegmentDuration: 24 * time.Hour})
	refs := fillDet(t, d, f, 600, 10*time.Hour)
	late := f.any()
	d.afterBuild = func() {
		// While the current segment is being converted, a detection
		// arrives and another is deleted.
		if err := d.Add(7000, t0.Add(11*time.Hour), late); err != nil {
			t.Error(err)
		}
		if _, err := d.Remove(refs[5].id); err != nil {
			t.Error(err)
		}
	}
	// Converting the segment that still receives detections.
	if n, err := d.Compact(t.Context(), t0.Add(48*time.Hour)); err != nil || n != 1 {
		t.Fatalf("compact: %d %v", n, err)
	}
	d.afterBuild = nil
	s := d.Segments()[0]
	if s.Kind != faiss.HNSW || s.Live != 600 || s.Tombstones != 1 || d.Count() != 600 {
		t.Fatalf("after catch-up: %+v count %d", s, d.Count())
	}
	hits, _, err := d.Search(late, t0, t0.Add(24*time.Hour), 1)
	if err != nil || len(hits) != 1 || hits[0].ID != 7000 {
		t.Fatalf("late detection not found: %v %v", hits, err)
	}
	hits, _, _ = d.Search(refs[5].vec, t0, t0.Add(24*time.Hour), 5)
	for _, h := range hits {
		if h.ID == refs[5].id {
			t.Fatal("detection removed during the build returned")
		}
	}
	// Retention inside an HNSW segment tombstones the expired part.
	expired := 0
	for _, r := range refs {
		if r.t.Before(t0.Add(5*time.Hour)) && r.id != refs[5].id {
			expired++
		}
	}
	if segs, vecs := d.DropBefore(t0.Add(5 * time.Hour)); segs != 0 || vecs != expired {
		t.Fatalf("partial retention: %d segments %d vectors, want 0 and %d", segs, vecs, expired)
	}
	hits, _, _ = d.Search(f.any(), t0, t0.Add(24*time.Hour), 100)
	for _, h := range hits {
		if h.Time.Before(t0.Add(5 * time.Hour)) {
			t.Fatalf("expired detection %d at %v returned", h.ID, h.Time)
		}
	}
	if s := d.Segments()[0]; s.Tombstones != expired+1 {
		t.Fatalf("tombstones %d, want %d", s.Tombstones, expired+1)
	}
}
