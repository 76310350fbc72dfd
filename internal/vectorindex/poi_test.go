package vectorindex

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
)

var testModel = Model{Name: "test-embedder-v1", Dim: 64}

func mustPOI(t *testing.T, m Model) *POIIndex {
	t.Helper()
	p, err := NewPOIIndex(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// poiFixture enrolls n POIs with 1..5 references each and returns the
// stored references for the brute-force reference.
func poiFixture(t *testing.T, p *POIIndex, f *faceLike, n int) []POIEntry {
	t.Helper()
	var all []POIEntry
	for i := range n {
		poi := fmt.Sprintf("poi-%03d", i)
		var refs []Ref
		for j := range 1 + i%5 {
			v := f.sample(i % len(f.centres))
			refs = append(refs, Ref{EmbeddingID: fmt.Sprintf("%s-e%d", poi, j), Vector: v})
			all = append(all, POIEntry{POIID: poi, EmbeddingID: refs[j].EmbeddingID, Vector: v})
		}
		if err := p.Add(poi, refs); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

// bestPerPOI is the brute-force reference of POIIndex.Search.
func bestPerPOI(entries []POIEntry, q []float32, k int) []scored {
	best := map[string]scored{}
	for _, e := range entries {
		s := dot(e.Vector, q)
		if b, ok := best[e.POIID]; !ok || s > b.sim {
			best[e.POIID] = scored{key: e.POIID + "|" + e.EmbeddingID, sim: s}
		}
	}
	var out []scored
	for _, b := range best {
		out = append(out, b)
	}
	sortScored(out)
	return out[:min(k, len(out))]
}

func hitKeys(hits []POIHit) ([]string, []float32) {
	var keys []string
	var sims []float32
	for _, h := range hits {
		keys = append(keys, h.POIID+"|"+h.EmbeddingID)
		sims = append(sims, h.Similarity)
	}
	return keys, sims
}

func TestPOISearchMatchesBruteForce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		noise float64
		ids   int
	}{
		{"clustered", 0.8, 200}, // 200 identities shared by 300 POIs: near-duplicates
		{"random", 10, 300},     // noise dominates: essentially random vectors
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFaceLike(1, testModel.Dim, tc.ids, tc.noise)
			p := mustPOI(t, testModel)
			all := poiFixture(t, p, f, 300)
			if p.Count() != len(all) || p.POICount() != 300 {
				t.Fatalf("count %d/%d, want %d/300", p.Count(), p.POICount(), len(all))
			}
			for _, k := range []int{1, 5, 20, 400} {
				for range 10 {
					q := f.any()
					hits, err := p.Search(q, k)
					if err != nil {
						t.Fatal(err)
					}
					keys, sims := hitKeys(hits)
					checkRanking(t, keys, sims, bestPerPOI(all, q, k))
				}
			}
		})
	}
}

func TestPOINormalisesAndValidates(t *testing.T) {
	p := mustPOI(t, testModel)
	f := newFaceLike(2, testModel.Dim, 10, 0.5)
	v := f.any()
	scaled := make([]float32, len(v))
	for i := range v {
		scaled[i] = 3 * v[i]
	}
	if err := p.Add("a", []Ref{{EmbeddingID: "e1", Vector: scaled}}); err != nil {
		t.Fatal(err)
	}
	if scaled[0] != 3*v[0] {
		t.Fatal("Add modified the caller's vector")
	}
	hits, err := p.Search(v, 1)
	if err != nil || len(hits) != 1 || math.Abs(float64(hits[0].Similarity-1)) > 1e-5 {
		t.Fatalf("scaled vector not normalised: %v %v", hits, err)
	}
	// Querying with an un-normalised vector gives the cosine too.
	if hits, _ := p.Search(scaled, 1); math.Abs(float64(hits[0].Similarity-1)) > 1e-5 {
		t.Fatalf("query not normalised: %v", hits)
	}
	other := Model{Name: "other", Dim: 32}
	short := make([]float32, other.Dim)
	short[0] = 1
	if err := p.Add("b", []Ref{{EmbeddingID: "x", Vector: short}}); !errors.Is(err, ErrDimension) {
		t.Fatalf("add of another dimension: %v", err)
	}
	if _, err := p.Search(short, 1); !errors.Is(err, ErrDimension) {
		t.Fatalf("search of another dimension: %v", err)
	}
	zero := make([]float32, testModel.Dim)
	if err := p.Add("b", []Ref{{EmbeddingID: "z", Vector: zero}}); !errors.Is(err, ErrBadVector) {
		t.Fatalf("zero vector: %v", err)
	}
	nan := append([]float32{float32(math.NaN())}, v[1:]...)
	if _, err := p.Search(nan, 1); !errors.Is(err, ErrBadVector) {
		t.Fatalf("NaN query: %v", err)
	}
	if err := p.Add("", []Ref{{EmbeddingID: "q", Vector: v}}); err == nil {
		t.Fatal("empty POI id accepted")
	}
	if err := p.Add("b", []Ref{{EmbeddingID: "", Vector: v}}); err == nil {
		t.Fatal("empty embedding id accepted")
	}
	if _, err := p.Search(v, 0); err == nil {
		t.Fatal("k=0 accepted")
	}
	if p.Count() != 1 {
		t.Fatalf("failed adds changed the index: %d", p.Count())
	}
	if _, err := NewPOIIndex(Model{Name: "", Dim: 4}); err == nil {
		t.Fatal("model without name accepted")
	}
}

func TestPOIDuplicateEmbedding(t *testing.T) {
	p := mustPOI(t, testModel)
	f := newFaceLike(3, testModel.Dim, 10, 0.5)
	v1, v2 := f.sample(0), f.sample(5)
	for range 3 { // redelivered enrollment
		if err := p.Add("a", []Ref{{EmbeddingID: "e1", Vector: v1}}); err != nil {
			t.Fatal(err)
		}
	}
	if p.Count() != 1 {
		t.Fatalf("duplicate embedding stored %d times", p.Count())
	}
	// Same embedding id with a new vector replaces the old one.
	if err := p.Add("a", []Ref{{EmbeddingID: "e1", Vector: v2}}); err != nil {
		t.Fatal(err)
	}
	hits, _ := p.Search(v2, 5)
	if p.Count() != 1 || len(hits) != 1 || hits[0].Similarity < 0.9999 {
		t.Fatalf("replace: count %d hits %v", p.Count(), hits)
	}
	if err := p.Add("b", []Ref{{EmbeddingID: "e1", Vector: v1}}); err == nil {
		t.Fatal("embedding of another POI accepted")
	}
	if err := p.Add("a", []Ref{{EmbeddingID: "e2", Vector: v1}, {EmbeddingID: "e2", Vector: v2}}); err == nil {
		t.Fatal("same embedding twice in one call accepted")
	}
	if p.Count() != 1 {
		t.Fatalf("rejected adds changed the index: %d", p.Count())
	}
}

func TestPOIRemoveRebuildReset(t *testing.T) {
	f := newFaceLike(4, testModel.Dim, 50, 0.8)
	p := mustPOI(t, testModel)
	all := poiFixture(t, p, f, 60)
	removed, err := p.Remove("poi-004") // 5 references
	if err != nil || removed != 5 {
		t.Fatalf("remove: %d %v", removed, err)
	}
	if n, err := p.Remove("poi-004"); err != nil || n != 0 {
		t.Fatalf("second remove: %d %v", n, err)
	}
	var kept []POIEntry
	for _, e := range all {
		if e.POIID != "poi-004" {
			kept = append(kept, e)
		}
	}
	for i := range 20 {
		q := f.sample(i % 50)
		if i == 0 {
			q = all[10].Vector // poi-004's own reference
		}
		hits, err := p.Search(q, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			if h.POIID == "poi-004" {
				t.Fatal("removed POI returned")
			}
		}
		keys, sims := hitKeys(hits)
		checkRanking(t, keys, sims, bestPerPOI(kept, q, 100))
	}

	// Rebuild from the authoritative entries gives the same answers.
	r := mustPOI(t, testModel)
	if err := r.Rebuild(kept); err != nil {
		t.Fatal(err)
	}
	if r.Count() != len(kept) {
		t.Fatalf("rebuild count %d, want %d", r.Count(), len(kept))
	}
	q := f.any()
	a, _ := p.Search(q, 10)
	b, _ := r.Search(q, 10)
	ka, sa := hitKeys(a)
	kb, _ := hitKeys(b)
	want := make([]scored, len(b))
	for i := range b {
		want[i] = scored{key: kb[i], sim: b[i].Similarity}
	}
	checkRanking(t, ka, sa, want)

	bad := append(kept[:1:1], POIEntry{POIID: "x", EmbeddingID: "y", Vector: []float32{1}})
	if err := r.Rebuild(bad); !errors.Is(err, ErrDimension) {
		t.Fatalf("rebuild with a bad vector: %v", err)
	}
	if r.Count() != len(kept) {
		t.Fatal("failed rebuild changed the index")
	}
	if err := r.Reset(); err != nil || r.Count() != 0 || r.POICount() != 0 {
		t.Fatalf("reset: %v count %d", err, r.Count())
	}
	if hits, err := r.Search(q, 3); err != nil || len(hits) != 0 {
		t.Fatalf("search after reset: %v %v", hits, err)
	}
}

func TestPOIConcurrent(t *testing.T) {
	f := newFaceLike(5, testModel.Dim, 50, 0.8)
	p := mustPOI(t, testModel)
	poiFixture(t, p, f, 50)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			for i := range 300 {
				hits, err := p.Search(f.centres[(g+i)%50], 5)
				if err != nil {
					t.Error(err)
					return
				}
				for j := 1; j < len(hits); j++ {
					if hits[j].Similarity > hits[j-1].Similarity {
						t.Error("results not sorted")
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			poi := fmt.Sprintf("new-%d", i%20)
			if err := p.Add(poi, []Ref{{EmbeddingID: fmt.Sprintf("n%d", i), Vector: f.centres[i%50]}}); err != nil {
				t.Error(err)
				return
			}
			if i%7 == 0 {
				if _, err := p.Remove(poi); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	wg.Wait()
}

func TestPOIUseAfterClose(t *testing.T) {
	p, err := NewPOIIndex(testModel)
	if err != nil {
		t.Fatal(err)
	}
	v := newFaceLike(6, testModel.Dim, 1, 0.1).any()
	p.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Add("a", []Ref{{EmbeddingID: "e", Vector: v}}); !errors.Is(err, ErrClosed) {
		t.Errorf("add: %v", err)
	}
	if _, err := p.Search(v, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("search: %v", err)
	}
	if _, err := p.Remove("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("remove: %v", err)
	}
	if err := p.Snapshot(t.TempDir(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("snapshot: %v", err)
	}
	if err := p.Rebuild(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("rebuild: %v", err)
	}
}

// TestPOIReplace: Replace makes the given references the POI's whole set
// (a reference left out is gone), refuses another POI's embedding id
// without changing anything, and an empty set removes the POI.
func TestPOIReplace(t *testing.T) {
	f := newFaceLike(4, testModel.Dim, 50, 0.8)
	p := mustPOI(t, testModel)
	a, b, c := f.sample(0), f.sample(1), f.sample(2)
	if err := p.Add("poi-a", []Ref{{EmbeddingID: "a1", Vector: a}, {EmbeddingID: "a2", Vector: b}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Add("poi-b", []Ref{{EmbeddingID: "b1", Vector: c}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Replace("poi-a", []Ref{{EmbeddingID: "a2", Vector: b}, {EmbeddingID: "a3", Vector: c}}); err != nil {
		t.Fatal(err)
	}
	if p.Holds("poi-a") != 2 || p.Count() != 3 {
		t.Fatalf("after replace: poi-a holds %d, index %d", p.Holds("poi-a"), p.Count())
	}
	hits, _ := p.Search(a, 2)
	for _, h := range hits {
		if h.EmbeddingID == "a1" {
			t.Fatal("the reference left out is still found")
		}
	}
	if err := p.Replace("poi-a", []Ref{{EmbeddingID: "b1", Vector: a}}); err == nil {
		t.Fatal("took another POI's embedding id")
	}
	if p.Holds("poi-a") != 2 || p.Holds("poi-b") != 1 {
		t.Fatalf("a refused replace changed the index: %d %d", p.Holds("poi-a"), p.Holds("poi-b"))
	}
	if err := p.Replace("poi-a", []Ref{{EmbeddingID: "bad", Vector: []float32{1}}}); err == nil || p.Holds("poi-a") != 2 {
		t.Fatalf("a bad vector: %v, holds %d", err, p.Holds("poi-a"))
	}
	if err := p.Replace("poi-a", nil); err != nil || p.Holds("poi-a") != 0 || p.POICount() != 1 {
		t.Fatalf("empty replace: %v, holds %d", err, p.Holds("poi-a"))
	}
}
