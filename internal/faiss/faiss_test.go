package faiss

import (
	"bufio"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// randomUnit returns n L2-normalised random vectors (row-major).
func randomUnit(rng *rand.Rand, n, dim int) []float32 {
	v := make([]float32, n*dim)
	for i := range n {
		row := v[i*dim : (i+1)*dim]
		var s float64
		for j := range row {
			x := rng.NormFloat64()
			row[j] = float32(x)
			s += x * x
		}
		inv := float32(1 / math.Sqrt(s))
		for j := range row {
			row[j] *= inv
		}
	}
	return v
}

// clustered mimics face embeddings: identities are random unit centres and
// each vector is its centre plus noise, renormalised.
func clustered(rng *rand.Rand, n, dim, centres int, noise float64) []float32 {
	c := randomUnit(rng, centres, dim)
	v := make([]float32, n*dim)
	for i := range n {
		ci := rng.IntN(centres)
		row := v[i*dim : (i+1)*dim]
		var s float64
		for j := range row {
			x := float64(c[ci*dim+j]) + noise*rng.NormFloat64()/math.Sqrt(float64(dim))
			row[j] = float32(x)
			s += x * x
		}
		inv := float32(1 / math.Sqrt(s))
		for j := range row {
			row[j] *= inv
		}
	}
	return v
}

func seqIDs(n int, base int64) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = base + int64(i)*7 // non-contiguous, so id != position
	}
	return ids
}

// bruteForce is the reference: exact inner products, ties broken by id.
func bruteForce(data []float32, ids []int64, q []float32, dim, k int) []Neighbor {
	all := make([]Neighbor, 0, len(ids))
	for i, id := range ids {
		var s float32
		row := data[i*dim : (i+1)*dim]
		for j := range row {
			s += row[j] * q[j]
		}
		all = append(all, Neighbor{ID: id, Score: s})
	}
	slices.SortFunc(all, func(a, b Neighbor) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return int(a.ID - b.ID)
	})
	return all[:min(k, len(all))]
}

// sameResults compares FAISS and Go results allowing float summation-order
// differences: scores must agree closely and ids may only differ among
// near-equal scores.
func sameResults(t *testing.T, got, want []Neighbor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d", len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i].Score - want[i].Score)); d > 1e-4 {
			t.Fatalf("rank %d: score %v, want %v", i, got[i].Score, want[i].Score)
		}
		if got[i].ID != want[i].ID && math.Abs(float64(got[i].Score-want[i].Score)) > 1e-5 {
			t.Fatalf("rank %d: id %d, want %d", i, got[i].ID, want[i].ID)
		}
	}
}

func mustFlat(t *testing.T, dim int) *Index {
	t.Helper()
	ix, err := NewFlat(dim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func TestFlatMatchesBruteForce(t *testing.T) {
	const dim, n, k = 64, 3000, 10
	for _, tc := range []struct {
		name string
		data func(*rand.Rand) []float32
	}{
		{"random", func(r *rand.Rand) []float32 { return randomUnit(r, n, dim) }},
		{"clustered", func(r *rand.Rand) []float32 { return clustered(r, n, dim, 200, 0.6) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			data := tc.data(rng)
			ids := seqIDs(n, 1000)
			ix := mustFlat(t, dim)
			if err := ix.Add(ids, data); err != nil {
				t.Fatal(err)
			}
			if c, _ := ix.Count(); c != n {
				t.Fatalf("count %d, want %d", c, n)
			}
			queries := clustered(rng, 20, dim, 200, 0.6)
			for q := range 20 {
				qv := queries[q*dim : (q+1)*dim]
				got, err := ix.Search(qv, k)
				if err != nil {
					t.Fatal(err)
				}
				sameResults(t, got, bruteForce(data, ids, qv, dim, k))
			}
			// Batched search must equal the single searches.
			batch, err := ix.SearchBatch(queries, k)
			if err != nil {
				t.Fatal(err)
			}
			if len(batch) != 20 {
				t.Fatalf("batch rows %d", len(batch))
			}
			for q := range 20 {
				sameResults(t, batch[q], bruteForce(data, ids, queries[q*dim:(q+1)*dim], dim, k))
			}
		})
	}
}

func TestSearchEdgeCases(t *testing.T) {
	ix := mustFlat(t, 4)
	if res, err := ix.Search([]float32{1, 0, 0, 0}, 5); err != nil || len(res) != 0 {
		t.Fatalf("empty index: %v %v", res, err)
	}
	if err := ix.Add([]int64{1, 2}, []float32{1, 0, 0, 0, 0, 1, 0, 0}); err != nil {
		t.Fatal(err)
	}
	res, err := ix.Search([]float32{1, 0, 0, 0}, 1000)
	if err != nil || len(res) != 2 || res[0].ID != 1 || res[0].Score != 1 || res[1].ID != 2 {
		t.Fatalf("k > ntotal: %v %v", res, err)
	}
	if _, err := ix.Search(nil, 1); !errors.Is(err, ErrDimension) {
		t.Fatalf("empty query: %v", err)
	}
	if _, err := ix.Search([]float32{1, 0, 0}, 1); !errors.Is(err, ErrDimension) {
		t.Fatalf("short query: %v", err)
	}
	if _, err := ix.Search([]float32{1, 0, 0, 0}, 0); err == nil {
		t.Fatal("k=0 accepted")
	}
	if err := ix.Add([]int64{3}, []float32{1, 0}); !errors.Is(err, ErrDimension) {
		t.Fatalf("short vector: %v", err)
	}
	if _, err := NewFlat(0); err == nil {
		t.Fatal("dim 0 accepted")
	}
	if _, err := NewHNSW(8, HNSWParams{M: 1, EfConstruction: 10, EfSearch: 10}); err == nil {
		t.Fatal("M=1 accepted")
	}
}

func TestDuplicateIDsRejected(t *testing.T) {
	ix := mustFlat(t, 2)
	if err := ix.Add([]int64{5}, []float32{1, 0}); err != nil {
		t.Fatal(err)
	}
	err := ix.Add([]int64{6, 5}, []float32{0, 1, 1, 0})
	if err == nil || !strings.Contains(err.Error(), "duplicate id 5") {
		t.Fatalf("duplicate across adds: %v", err)
	}
	if err := ix.Add([]int64{7, 7}, []float32{0, 1, 1, 0}); err == nil {
		t.Fatal("duplicate within one add accepted")
	}
	if c, _ := ix.Count(); c != 1 {
		t.Fatalf("failed adds changed the index: count %d", c)
	}
}

func TestRemove(t *testing.T) {
	const dim, n = 16, 500
	rng := rand.New(rand.NewPCG(3, 4))
	data := randomUnit(rng, n, dim)
	ids := seqIDs(n, 1)
	ix := mustFlat(t, dim)
	if err := ix.Add(ids, data); err != nil {
		t.Fatal(err)
	}
	// Remove the exact match of a query and check it never comes back.
	q := data[10*dim : 11*dim]
	got, err := ix.Search(q, 1)
	if err != nil || got[0].ID != ids[10] {
		t.Fatalf("self search: %v %v", got, err)
	}
	removed, err := ix.Remove(ids[10], ids[20], 999999)
	if err != nil || removed != 2 {
		t.Fatalf("remove: %d %v", removed, err)
	}
	if c, _ := ix.Count(); c != n-2 {
		t.Fatalf("count after remove %d", c)
	}
	keptIDs := slices.Concat(ids[:10], ids[11:20], ids[21:])
	kept := slices.Concat(data[:10*dim], data[11*dim:20*dim], data[21*dim:])
	res, err := ix.Search(q, 10)
	if err != nil {
		t.Fatal(err)
	}
	sameResults(t, res, bruteForce(kept, keptIDs, q, dim, 10))
	// A removed id may be added again.
	if err := ix.Add([]int64{ids[10]}, q); err != nil {
		t.Fatalf("re-add after remove: %v", err)
	}
}

func TestHNSWRecall(t *testing.T) {
	const dim, n, nq, k = 64, 5000, 100, 10
	for _, tc := range []struct {
		name string
		ef   int
		data func(*rand.Rand) []float32
	}{
		// Random high-dimensional data is the hard case for HNSW.
		{"random", 128, func(r *rand.Rand) []float32 { return randomUnit(r, n, dim) }},
		{"clustered", 128, func(r *rand.Rand) []float32 { return clustered(r, n, dim, 200, 0.8) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			data := tc.data(rng)
			ids := seqIDs(n, 0)
			h, err := NewHNSW(dim, HNSWParams{M: 32, EfConstruction: 40, EfSearch: tc.ef})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if err := h.Add(ids, data); err != nil {
				t.Fatal(err)
			}
			p, err := h.HNSWParams()
			if err != nil || p.M != 32 || p.EfSearch != tc.ef || p.EfConstruction != 40 {
				t.Fatalf("params %+v %v", p, err)
			}
			queries := clustered(rng, nq, dim, 200, 0.8)
			if tc.name == "random" {
				queries = randomUnit(rng, nq, dim)
			}
			res, err := h.SearchBatch(queries, k)
			if err != nil {
				t.Fatal(err)
			}
			hit := 0
			for q := range nq {
				want := bruteForce(data, ids, queries[q*dim:(q+1)*dim], dim, k)
				for _, w := range want {
					if slices.ContainsFunc(res[q], func(g Neighbor) bool { return g.ID == w.ID }) {
						hit++
					}
				}
			}
			recall := float64(hit) / float64(nq*k)
			t.Logf("recall@%d = %.3f (efSearch %d)", k, recall, tc.ef)
			if recall < 0.95 {
				t.Fatalf("recall@%d = %.3f < 0.95", k, recall)
			}
		})
	}
}

func TestHNSWLimits(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const dim, n = 16, 1000
	h, err := NewHNSW(dim, HNSWParams{M: 16, EfConstruction: 40, EfSearch: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Add(seqIDs(n, 0), randomUnit(rng, n, dim)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Remove(0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("HNSW remove: %v", err)
	}
	// k far above efSearch must still return k results.
	res, err := h.Search(randomUnit(rng, 1, dim), 300)
	if err != nil || len(res) != 300 {
		t.Fatalf("k above efSearch: %d results, %v", len(res), err)
	}
	if err := h.SetEfSearch(0); err == nil {
		t.Fatal("efSearch 0 accepted")
	}
	if err := h.SetEfSearch(200); err != nil {
		t.Fatal(err)
	}
	if p, _ := h.HNSWParams(); p.EfSearch != 200 {
		t.Fatalf("efSearch not applied: %+v", p)
	}
	flat := mustFlat(t, dim)
	if err := flat.SetEfSearch(10); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("efSearch on flat: %v", err)
	}
}

func TestWriteRead(t *testing.T) {
	const dim, n = 32, 800
	rng := rand.New(rand.NewPCG(9, 10))
	data := randomUnit(rng, n, dim)
	ids := seqIDs(n, 42)
	dir := t.TempDir()
	q := randomUnit(rng, 1, dim)
	for _, kind := range []Kind{Flat, HNSW} {
		t.Run(kind.String(), func(t *testing.T) {
			var ix *Index
			var err error
			if kind == Flat {
				ix, err = NewFlat(dim)
			} else {
				ix, err = NewHNSW(dim, HNSWParams{M: 16, EfConstruction: 40, EfSearch: 77})
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
			if err := ix.Add(ids, data); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, kind.String()+".faiss")
			if err := ix.Write(path); err != nil {
				t.Fatal(err)
			}
			back, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			defer back.Close()
			if back.Kind() != kind || back.Dim() != dim {
				t.Fatalf("read back kind %v dim %d", back.Kind(), back.Dim())
			}
			if c, _ := back.Count(); c != n {
				t.Fatalf("read back count %d", c)
			}
			a, _ := ix.Search(q, 10)
			b, err := back.Search(q, 10)
			if err != nil || !slices.Equal(a, b) {
				t.Fatalf("results differ after read: %v vs %v (%v)", a, b, err)
			}
			if kind == HNSW {
				if p, _ := back.HNSWParams(); p.EfSearch != 77 || p.M != 16 {
					t.Fatalf("params lost: %+v", p)
				}
			}
			// Ids survive too: adding an existing id is still rejected.
			if err := back.Add(ids[:1], data[:dim]); err == nil {
				t.Fatal("id map not restored")
			}
			rec, err := back.Reconstruct([]int64{ids[7], ids[3]})
			if err != nil || !slices.Equal(rec[:dim], data[7*dim:8*dim]) || !slices.Equal(rec[dim:], data[3*dim:4*dim]) {
				t.Fatalf("reconstruct: %v", err)
			}
			if _, err := back.Reconstruct([]int64{-99}); err == nil {
				t.Fatal("reconstruct of an unknown id succeeded")
			}
			gotIDs, vecs, err := back.Export()
			if err != nil || !slices.Equal(gotIDs, ids) || len(vecs) != n*dim || vecs[5] != data[5] {
				t.Fatalf("export after read: %d ids, %d floats, %v", len(gotIDs), len(vecs), err)
			}
		})
	}
}

func TestReadBadFiles(t *testing.T) {
	dir := t.TempDir()
	ix := mustFlat(t, 8)
	rng := rand.New(rand.NewPCG(11, 12))
	if err := ix.Add(seqIDs(100, 0), randomUnit(rng, 100, 8)); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good")
	if err := ix.Write(good); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("this is not a faiss index at all, just some text"),
		"truncated": raw[:len(raw)/2],
		"header":    raw[:10],
	}
	for name, b := range cases {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := Read(p); err == nil {
			got.Close()
			t.Fatalf("%s: read succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := Read(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file read")
	}
	// Write failures (here: a directory that does not exist) are errors too.
	if err := ix.Write(filepath.Join(dir, "bad/dir/x")); err == nil {
		t.Fatal("write into missing directory succeeded")
	}
}

func TestUseAfterClose(t *testing.T) {
	ix, err := NewFlat(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Add([]int64{1}, []float32{1, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	checks := map[string]error{}
	_, checks["search"] = ix.Search([]float32{1, 0, 0, 0}, 1)
	checks["add"] = ix.Add([]int64{2}, []float32{1, 0, 0, 0})
	_, checks["remove"] = ix.Remove(1)
	_, checks["count"] = ix.Count()
	_, _, checks["export"] = ix.Export()
	_, checks["reconstruct"] = ix.Reconstruct([]int64{1})
	checks["write"] = ix.Write(filepath.Join(t.TempDir(), "x"))
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after close: %v", name, err)
		}
	}
	h, err := NewHNSW(4, HNSWParams{M: 8, EfConstruction: 8, EfSearch: 8})
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if err := h.SetEfSearch(10); !errors.Is(err, ErrClosed) {
		t.Errorf("efSearch after close: %v", err)
	}
	if _, err := h.HNSWParams(); !errors.Is(err, ErrClosed) {
		t.Errorf("params after close: %v", err)
	}
}

func TestConcurrentSearchAddClose(t *testing.T) {
	const dim = 32
	rng := rand.New(rand.NewPCG(13, 14))
	data := randomUnit(rng, 2000, dim)
	ix, err := NewFlat(dim)
	if err != nil {
		t.Fatal(err)
	}
	ix.SetThreads(1)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_, err := ix.Search(data[((g*200+i)%2000)*dim:((g*200+i)%2000+1)*dim], 5)
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 2000 {
		if err := ix.Add([]int64{int64(i)}, data[i*dim:(i+1)*dim]); err != nil {
			t.Fatal(err)
		}
	}
	// Close while searches may still run: they must get ErrClosed, not crash.
	ix.Close()
	wg.Wait()
}

// rssKiB reads the resident set size of this process.
func rssKiB(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			v, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func TestNoLeakOverCreateCloseCycles(t *testing.T) {
	// Each cycle allocates ~1.3 MB natively (1000 vectors of 256 floats +
	// id maps), so a leak of the index would grow RSS by ~2.6 GB over 2000
	// cycles; the allowance below is far under that but above allocator
	// noise.
	const dim, n, cycles = 256, 1000, 2000
	rng := rand.New(rand.NewPCG(15, 16))
	data := randomUnit(rng, n, dim)
	ids := seqIDs(n, 0)
	q := data[:dim]
	cycle := func(i int) {
		var ix *Index
		var err error
		if i%10 == 0 {
			ix, err = NewHNSW(dim, HNSWParams{M: 8, EfConstruction: 16, EfSearch: 16})
		} else {
			ix, err = NewFlat(dim)
		}
		if err != nil {
			t.Fatal(err)
		}
		m := n
		if i%10 == 0 {
			m = 100 // keep HNSW builds cheap
		}
		if err := ix.Add(ids[:m], data[:m*dim]); err != nil {
			t.Fatal(err)
		}
		if _, err := ix.Search(q, 3); err != nil {
			t.Fatal(err)
		}
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 { // warm up allocator arenas
		cycle(i)
	}
	before := rssKiB(t)
	for i := range cycles {
		cycle(i)
	}
	after := rssKiB(t)
	t.Logf("RSS before %d KiB, after %d KiB over %d cycles", before, after, cycles)
	if after-before > 64*1024 {
		t.Fatalf("RSS grew by %d KiB over %d create/add/close cycles", after-before, cycles)
	}
}

func TestSearchIDs(t *testing.T) {
	const dim, n = 32, 1000
	rng := rand.New(rand.NewPCG(17, 18))
	data := clustered(rng, n, dim, 50, 0.7)
	ids := seqIDs(n, 3)
	q := clustered(rng, 1, dim, 50, 0.7)
	for _, kind := range []Kind{Flat, HNSW} {
		var ix *Index
		var err error
		if kind == Flat {
			ix, err = NewFlat(dim)
		} else {
			ix, err = NewHNSW(dim, HNSWParams{M: 8, EfConstruction: 16, EfSearch: 8})
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Add(ids, data); err != nil {
			t.Fatal(err)
		}
		// Every third vector is eligible, plus ids that do not exist.
		var subIDs []int64
		var subData []float32
		for i := 0; i < n; i += 3 {
			subIDs = append(subIDs, ids[i])
			subData = append(subData, data[i*dim:(i+1)*dim]...)
		}
		got, err := ix.SearchIDs(q, append(slices.Clone(subIDs), -5, 1<<40), 15)
		if err != nil {
			t.Fatal(err)
		}
		sameResults(t, got, bruteForce(subData, subIDs, q, dim, 15))
		if res, err := ix.SearchIDs(q, []int64{-1}, 3); err != nil || len(res) != 0 {
			t.Fatalf("%v: unknown ids only: %v %v", kind, res, err)
		}
		ix.Close()
		if _, err := ix.SearchIDs(q, subIDs, 3); !errors.Is(err, ErrClosed) {
			t.Fatalf("after close: %v", err)
		}
	}
}

// TestSearchHNSWRange checks the stamp-filtered graph search: every result
// has its stamp in range and none is a tombstone, recall against the exact
// search over the eligible vectors stays high at all, half and a quarter of
// the index eligible, a read index's stamps can be set again, and the edge
// cases (flat index, empty range, closed index) are errors or empty.
func TestSearchHNSWRange(t *testing.T) {
	const dim, n, nq, k = 64, 6000, 60, 10
	rng := rand.New(rand.NewPCG(19, 20))
	data := clustered(rng, n, dim, 300, 0.8)
	ids := seqIDs(n, 11)
	// Stamp i is the vector's position: a range [lo, hi] then allows a
	// known share of the index.
	stamps := make([]int64, n)
	for i := range stamps {
		stamps[i] = int64(i)
	}
	h, err := NewHNSW(dim, HNSWParams{M: 32, EfConstruction: 40, EfSearch: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.AddStamped(ids, stamps, data); err != nil {
		t.Fatal(err)
	}
	// Every tenth vector becomes a tombstone: never returned, whatever the
	// range.
	var dead []int64
	for i := 0; i < n; i += 10 {
		dead = append(dead, ids[i])
	}
	removed := make([]int64, len(dead))
	for i := range removed {
		removed[i] = Removed
	}
	if set, err := h.SetStamps(append(slices.Clone(dead), -7), append(removed, 1)); err != nil || set != len(dead) {
		t.Fatalf("set stamps: %d of %d, %v", set, len(dead), err)
	}
	queries := clustered(rng, nq, dim, 300, 0.8)
	for _, share := range []int{1, 2, 4} {
		lo, hi := int64(n-n/share), int64(n-1)
		var subIDs []int64
		var subData []float32
		allowed := map[int64]bool{}
		for i := int(lo); i <= int(hi); i++ {
			if i%10 == 0 {
				continue
			}
			subIDs = append(subIDs, ids[i])
			subData = append(subData, data[i*dim:(i+1)*dim]...)
			allowed[ids[i]] = true
		}
		hit := 0
		for q := range nq {
			qv := queries[q*dim : (q+1)*dim]
			got, err := h.SearchHNSWRange(qv, lo, hi, k, 128*share)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != k {
				t.Fatalf("1/%d eligible: %d results, want %d", share, len(got), k)
			}
			for i, g := range got {
				if !allowed[g.ID] {
					t.Fatalf("1/%d eligible: result %d is id %d, not allowed", share, i, g.ID)
				}
				if i > 0 && g.Score > got[i-1].Score {
					t.Fatalf("results not best first: %v", got)
				}
			}
			for _, w := range bruteForce(subData, subIDs, qv, dim, k) {
				if slices.ContainsFunc(got, func(g Neighbor) bool { return g.ID == w.ID }) {
					hit++
				}
			}
		}
		recall := float64(hit) / float64(nq*k)
		t.Logf("1/%d eligible: recall@%d %.3f", share, k, recall)
		if recall < 0.95 {
			t.Fatalf("1/%d eligible: recall@%d %.3f < 0.95", share, k, recall)
		}
	}
	q := queries[:dim]
	if res, err := h.SearchHNSWRange(q, int64(n), int64(2*n), 3, 0); err != nil || len(res) != 0 {
		t.Fatalf("a range no stamp is in: %v %v", res, err)
	}
	if res, err := h.SearchHNSWRange(q, Removed, Removed, 3, 0); err != nil || len(res) != 0 {
		t.Fatalf("tombstones asked for: %v %v", res, err)
	}
	// So selective a filter is where the walk may miss (why callers scan
	// exactly instead), but it must never return another id.
	if res, err := h.SearchHNSWRange(q, 5, 5, 3, 0); err != nil || len(res) > 1 || len(res) == 1 && res[0].ID != ids[5] {
		t.Fatalf("one allowed id: %v %v", res, err)
	}
	// A file does not hold stamps: a read index has stamp 0 everywhere
	// until they are set again.
	path := filepath.Join(t.TempDir(), "h.faiss")
	if err := h.Write(path); err != nil {
		t.Fatal(err)
	}
	r, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if res, err := r.SearchHNSWRange(q, 0, 0, k, 0); err != nil || len(res) != k {
		t.Fatalf("read index, stamp 0: %d results, %v", len(res), err)
	}
	if _, err := r.SetStamps(ids, stamps); err != nil {
		t.Fatal(err)
	}
	res, err := r.SearchHNSWRange(q, n/2, n-1, k, 0)
	if err != nil || len(res) != k {
		t.Fatalf("read index, stamps set again: %d results, %v", len(res), err)
	}
	for _, g := range res {
		if g.ID < ids[n/2] {
			t.Fatalf("read index, stamps set again: id %d is outside the range", g.ID)
		}
	}
	f := mustFlat(t, dim)
	if _, err := f.SearchHNSWRange(q, 0, 1, 3, 0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("flat: %v", err)
	}
	if _, err := f.SetStamps(ids[:1], stamps[:1]); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("flat set stamps: %v", err)
	}
	if err := h.AddStamped([]int64{1 << 40}, []int64{1, 2}, q); err == nil {
		t.Fatal("two stamps for one id accepted")
	}
	h.Close()
	if _, err := h.SearchHNSWRange(q, 0, 1, 3, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// TestSearchHNSWRangeAppliesItsBeam: SearchHNSWRange's ef is the walk's
// beam for that call. FAISS 1.7.3 takes the beam from the index's own
// efSearch and ef only as a stopping rule, so without setting it for the
// call a wider ef changed nothing (the cut-range widening was a no-op). On
// a sparse graph with a narrow index beam, the wide call must find more of
// the exact answer, and the index's own beam must be as before afterwards.
func TestSearchHNSWRangeAppliesItsBeam(t *testing.T) {
	const dim, n, nq, k = 32, 8000, 40, 10
	rng := rand.New(rand.NewPCG(23, 24))
	data := randomUnit(rng, n, dim)
	ids := seqIDs(n, 1)
	stamps := make([]int64, n)
	h, err := NewHNSW(dim, HNSWParams{M: 4, EfConstruction: 16, EfSearch: k})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.AddStamped(ids, stamps, data); err != nil {
		t.Fatal(err)
	}
	queries := randomUnit(rng, nq, dim)
	recall := func(ef int) float64 {
		hit := 0
		for q := range nq {
			qv := queries[q*dim : (q+1)*dim]
			got, err := h.SearchHNSWRange(qv, 0, 0, k, ef)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range bruteForce(data, ids, qv, dim, k) {
				if slices.ContainsFunc(got, func(g Neighbor) bool { return g.ID == w.ID }) {
					hit++
				}
			}
		}
		return float64(hit) / float64(nq*k)
	}
	narrow := recall(k)
	wide := recall(400)
	if wide < narrow+0.3 {
		t.Fatalf("recall@%d with ef %d: %.3f, with ef 400: %.3f; the wide beam was not applied", k, k, narrow, wide)
	}
	if again := recall(k); again != narrow {
		t.Fatalf("the index's own beam changed: recall %.3f, before %.3f", again, narrow)
	}
}
