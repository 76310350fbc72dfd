package vectorindex

import (
	"slices"
	"testing"
	"time"

	"poi/internal/faiss"
)

// TestDetectionCutHNSWFiltered checks the filtered graph search of a cut
// HNSW segment: ranges holding a half and a third of the segment return
// only in-range, live detections, with recall@10 >= 0.95 against the exact
// answer, and removed in-range detections (graph tombstones) never come
// back. A narrow range (a twentieth) takes the exact path and stays exact.
func TestDetectionCutHNSWFiltered(t *testing.T) {
	f := newFaceLike(21, testModel.Dim, 300, 0.8)
	d := mustDet(t, DetectionConfig{SegmentDuration: 24 * time.Hour, HNSWMinVectors: 1000})
	refs := fillDet(t, d, f, 8000, 24*time.Hour)
	if n, err := d.Compact(t.Context(), t0.Add(24*time.Hour)); err != nil || n != 1 || d.Segments()[0].Kind != faiss.HNSW {
		t.Fatalf("compact: %d %v %+v", n, err, d.Segments())
	}
	// Remove every 10th detection: tombstones inside every range below.
	gone := map[int64]bool{}
	var rm []int64
	for _, r := range refs {
		if r.id%10 == 0 {
			rm = append(rm, r.id)
			gone[r.id] = true
		}
	}
	if n, err := d.Remove(rm...); err != nil || n != len(rm) {
		t.Fatalf("remove: %d %v", n, err)
	}
	const nq, k = 80, 10
	for _, tc := range []struct {
		name     string
		from, to time.Time
		exact    bool
	}{
		{"half", t0.Add(6 * time.Hour), t0.Add(18 * time.Hour), false},
		{"third", t0.Add(16 * time.Hour), t0.Add(24*time.Hour - 1), false},
		{"twentieth", t0.Add(time.Hour), t0.Add(2*time.Hour + 12*time.Minute), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inRange := 0
			for _, r := range refs {
				if !gone[r.id] && !r.t.Before(tc.from) && !r.t.After(tc.to) {
					inRange++
				}
			}
			hit := 0
			for range nq {
				q := f.any()
				if tc.exact {
					st := checkDet(t, d, refs, gone, q, tc.from, tc.to, k)
					if st.VectorsSearched != inRange {
						t.Fatalf("exact path compared %d vectors, want the %d in range", st.VectorsSearched, inRange)
					}
					continue
				}
				got, st, err := d.Search(q, tc.from, tc.to, k)
				if err != nil {
					t.Fatal(err)
				}
				// The graph path reports its candidates, tombstones
				// included; the exact path only the live ones.
				if st.VectorsSearched <= inRange {
					t.Fatalf("searched %d vectors for %d live in range: not the graph path", st.VectorsSearched, inRange)
				}
				if len(got) != k {
					t.Fatalf("%d hits, want %d", len(got), k)
				}
				for _, h := range got {
					if h.Time.Before(tc.from) || h.Time.After(tc.to) || gone[h.ID] {
						t.Fatalf("hit %d at %v: out of [%v, %v] or removed (%v)", h.ID, h.Time, tc.from, tc.to, gone[h.ID])
					}
				}
				for _, w := range bruteDet(refs, gone, q, tc.from, tc.to, k) {
					if slices.ContainsFunc(got, func(h Hit) bool { return h.ID == w.id }) {
						hit++
					}
				}
			}
			if tc.exact {
				return
			}
			recall := float64(hit) / float64(nq*k)
			t.Logf("%s of the segment (%d live in range): recall@%d %.3f", tc.name, inRange, k, recall)
			if recall < 0.95 {
				t.Fatalf("recall@%d %.3f < 0.95", k, recall)
			}
		})
	}
}

// TestDetectionRangeCoveringLiveData checks that a range cutting a
// segment's time span but covering all its live detections (the open
// segment under a range ending now; the oldest after retention) is searched
// without the per-detection filter, and still answers exactly.
func TestDetectionRangeCoveringLiveData(t *testing.T) {
	f := newFaceLike(22, testModel.Dim, 100, 0.8)
	d := mustDet(t, DetectionConfig{SegmentDuration: 24 * time.Hour, HNSWMinVectors: -1})
	// Detections over [t0+30h, t0+42h): segment t0+24h, cut by the ranges.
	var refs []detRef
	var batch []Detection
	for i := range 3000 {
		r := detRef{id: int64(i + 1), t: t0.Add(30*time.Hour + time.Duration(i)*12*time.Hour/3000), vec: f.any()}
		refs = append(refs, r)
		batch = append(batch, Detection{ID: r.id, Time: r.t, Vector: r.vec})
	}
	if err := d.AddBatch(batch); err != nil {
		t.Fatal(err)
	}
	// Retention at t0+36h: the segment's live data starts there.
	if _, n := d.DropBefore(t0.Add(36 * time.Hour)); n != 1500 {
		t.Fatalf("retention dropped %d, want 1500", n)
	}
	gone := map[int64]bool{}
	for _, r := range refs[:1500] {
		gone[r.id] = true
	}
	for _, r := range []struct {
		name     string
		from, to time.Time
		compared int
	}{
		// Covers every live detection though the segment spans t0+24h..48h.
		{"covering", t0.Add(36 * time.Hour), t0.Add(42 * time.Hour), 1500},
		{"from before the horizon", t0, t0.Add(47 * time.Hour), 1500},
		// Really cuts the live data: the filter runs over the 750 in range.
		{"cutting", t0.Add(39 * time.Hour), t0.Add(47 * time.Hour), 750},
	} {
		st := checkDet(t, d, refs, gone, f.any(), r.from, r.to, 10)
		if st.VectorsSearched != r.compared {
			t.Fatalf("%s: searched %d vectors, want %d", r.name, st.VectorsSearched, r.compared)
		}
	}
}

// TestCompactDueConvertsOpenSegment checks the production policy: at now,
// sealed segments and the segment now falls in become HNSW once they hold
// HNSWMinVectors, smaller ones and future ones stay flat, and detections
// added to the converted open segment afterwards go into its graph and are
// found.
func TestCompactDueConvertsOpenSegment(t *testing.T) {
	f := newFaceLike(23, testModel.Dim, 100, 0.8)
	d := mustDet(t, DetectionConfig{SegmentDuration: time.Hour, HNSWMinVectors: 500})
	add := func(id0, n int, from time.Time) []Detection {
		var batch []Detection
		for i := range n {
			batch = append(batch, Detection{ID: int64(id0 + i), Time: from.Add(time.Duration(i) * time.Second), Vector: f.any()})
		}
		if err := d.AddBatch(batch); err != nil {
			t.Fatal(err)
		}
		return batch
	}
	add(1, 600, t0)                   // sealed, large
	add(1001, 100, t0.Add(time.Hour)) // sealed, small
	add(2001, 600, t0.Add(2*time.Hour))
	add(3001, 600, t0.Add(4*time.Hour)) // in the future of now
	now := t0.Add(2*time.Hour + 30*time.Minute)
	if n, err := d.CompactDue(t.Context(), now); err != nil || n != 2 {
		t.Fatalf("compact due: %d %v", n, err)
	}
	var kinds []faiss.Kind
	for _, s := range d.Segments() {
		kinds = append(kinds, s.Kind)
	}
	if want := []faiss.Kind{faiss.HNSW, faiss.Flat, faiss.HNSW, faiss.Flat}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	late := add(5001, 50, t0.Add(2*time.Hour+20*time.Minute))
	for _, det := range late[:10] {
		got, _, err := d.Search(det.Vector, t0, now, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != det.ID {
			t.Fatalf("late detection %d not found first: %v", det.ID, got)
		}
	}
	if s := d.Segments()[2]; s.Kind != faiss.HNSW || s.Live != 650 {
		t.Fatalf("open segment after late adds: %+v", s)
	}
}
