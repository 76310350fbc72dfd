package faiss

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Benchmarks compare, in one run and on the same data, exact FAISS, HNSW and
// a plain Go brute-force scan. Sizes above 10k vectors are expensive (a 1M
// HNSW build takes minutes here) and run only with POI_BENCH_LARGE=1;
// POI_BENCH_DIMS (e.g. "256") and POI_BENCH_SIZES (e.g. "1000000") narrow a
// run; POI_BENCH_SMOKE=1 (scripts/test.sh) shrinks everything to a size that
// only proves the benchmark still runs. See docs/bench-vector-index.md for the commands and results.

func benchSizes() []int {
	if os.Getenv("POI_BENCH_SMOKE") == "1" {
		return []int{2000}
	}
	if s := os.Getenv("POI_BENCH_SIZES"); s != "" {
		return parseInts(s)
	}
	if os.Getenv("POI_BENCH_LARGE") == "1" {
		return []int{10_000, 100_000, 1_000_000}
	}
	return []int{10_000}
}

func benchDims() []int {
	if os.Getenv("POI_BENCH_SMOKE") == "1" {
		return []int{64}
	}
	if s := os.Getenv("POI_BENCH_DIMS"); s != "" {
		return parseInts(s)
	}
	return []int{512, 256}
}

func parseInts(s string) []int {
	var out []int
	for _, f := range slices.Collect(func(yield func(string) bool) {
		start := 0
		for i := 0; i <= len(s); i++ {
			if i == len(s) || s[i] == ',' {
				if !yield(s[start:i]) {
					return
				}
				start = i + 1
			}
		}
	}) {
		if n, err := strconv.Atoi(f); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// benchEfSearch is the efSearch the benchmarks use; POI_BENCH_EF overrides
// it to explore the recall/latency trade-off.
func benchEfSearch() int {
	if n, err := strconv.Atoi(os.Getenv("POI_BENCH_EF")); err == nil && n > 0 {
		return n
	}
	return 128
}

// benchData is "real-like" data: one identity per 100 vectors (at least
// 200), each vector its identity centre plus noise (same-identity cosine
// about 0.6, as RESEARCH measured for the real embedder), L2-normalised.
// Generation runs on all cores because 1M x 512 normal samples take a
// while single-threaded.
// Queries are new observations of the same identities (another seed).
func benchData(n, dim int, seed uint64) []float32 {
	return benchDataFor(n, dim, max(200, n/100), seed)
}

func benchDataFor(n, dim, ids int, seed uint64) []float32 {
	centres := randomUnit(rand.New(rand.NewPCG(uint64(ids), uint64(dim))), ids, dim)
	out := make([]float32, n*dim)
	const chunk = 10_000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for c := 0; c < n; c += chunk {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rng := rand.New(rand.NewPCG(seed, uint64(c)+2))
			for i := c; i < min(c+chunk, n); i++ {
				ci := rng.IntN(ids)
				row := out[i*dim : (i+1)*dim]
				var s float64
				for j := range row {
					x := float64(centres[ci*dim+j]) + 0.8*rng.NormFloat64()/math.Sqrt(float64(dim))
					row[j] = float32(x)
					s += x * x
				}
				inv := float32(1 / math.Sqrt(s))
				for j := range row {
					row[j] *= inv
				}
			}
		})
	}
	wg.Wait()
	return out
}

// goBrute is the plain Go baseline: one pass over every vector with a
// bounded min-heap for the top k.
func goBrute(data []float32, dim int, q []float32, k int) []Neighbor {
	h := make(minHeap, 0, k+1)
	n := len(data) / dim
	for i := range n {
		row := data[i*dim : (i+1)*dim : (i+1)*dim]
		var s float32
		for j, x := range row {
			s += x * q[j]
		}
		if len(h) < k {
			heap.Push(&h, Neighbor{ID: int64(i), Score: s})
		} else if s > h[0].Score {
			h[0] = Neighbor{ID: int64(i), Score: s}
			heap.Fix(&h, 0)
		}
	}
	out := make([]Neighbor, len(h))
	for i := len(h) - 1; i >= 0; i-- {
		out[i] = heap.Pop(&h).(Neighbor)
	}
	return out
}

type minHeap []Neighbor

func (h minHeap) Len() int           { return len(h) }
func (h minHeap) Less(i, j int) bool { return h[i].Score < h[j].Score }
func (h minHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minHeap) Push(x any)        { *h = append(*h, x.(Neighbor)) }
func (h *minHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func seqIDs0(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(i)
	}
	return ids
}

// recallAt computes recall@k of approx against exact result lists.
func recallAt(exact, approx [][]Neighbor) float64 {
	hit, total := 0, 0
	for q := range exact {
		for _, e := range exact[q] {
			total++
			if slices.ContainsFunc(approx[q], func(a Neighbor) bool { return a.ID == e.ID }) {
				hit++
			}
		}
	}
	return float64(hit) / float64(total)
}

// BenchmarkSearch measures single-query and 50-query batch latency of exact
// FAISS, HNSW (M=32, efConstruction=40, efSearch=benchEfSearch) and the Go
// scan, per dimension and size. Build times, recall@10 of HNSW against the
// exact index, and the index file size per vector are reported as metrics.
func BenchmarkSearch(b *testing.B) {
	const k, nq, batch = 10, 200, 50
	for _, dim := range benchDims() {
		for _, n := range benchSizes() {
			b.Run(fmt.Sprintf("d=%d/n=%d", dim, n), func(b *testing.B) {
				benchSearchConfig(b, dim, n, k, nq, batch)
			})
		}
	}
}

func benchSearchConfig(b *testing.B, dim, n, k, nq, batch int) {
	data := benchData(n, dim, 7)
	queries := benchDataFor(nq, dim, max(200, n/100), 8)
	ids := seqIDs0(n)

	rssBeforeFlat := rssBytes(b)
	start := time.Now()
	flat, err := NewFlat(dim)
	if err != nil {
		b.Fatal(err)
	}
	defer flat.Close()
	if err := flat.Add(ids, data); err != nil {
		b.Fatal(err)
	}
	flatBuild := time.Since(start)
	flatRSS := float64(rssBytes(b)-rssBeforeFlat) / float64(n)

	ef := benchEfSearch()
	rssBeforeHNSW := rssBytes(b)
	start = time.Now()
	hnsw, err := NewHNSW(dim, HNSWParams{M: 32, EfConstruction: 40, EfSearch: ef})
	if err != nil {
		b.Fatal(err)
	}
	defer hnsw.Close()
	if err := hnsw.Add(ids, data); err != nil {
		b.Fatal(err)
	}
	hnswBuild := time.Since(start)
	hnswRSS := float64(rssBytes(b)-rssBeforeHNSW) / float64(n)

	exact, err := flat.SearchBatch(queries, k)
	if err != nil {
		b.Fatal(err)
	}
	// Recall for a few efSearch values, so one build shows the trade-off.
	efs := []int{64, ef, 256}
	if ef == 64 || ef == 256 {
		efs = []int{64, 128, 256}
	}
	recalls := map[int]float64{}
	for _, e := range efs {
		if err := hnsw.SetEfSearch(e); err != nil {
			b.Fatal(err)
		}
		approx, err := hnsw.SearchBatch(queries, k)
		if err != nil {
			b.Fatal(err)
		}
		recalls[e] = recallAt(exact, approx)
	}
	if err := hnsw.SetEfSearch(ef); err != nil {
		b.Fatal(err)
	}
	recall := recalls[ef]
	// The Go baseline must agree with FAISS, or the comparison means nothing.
	if got := goBrute(data, dim, queries[:dim], k); got[0].ID != exact[0][0].ID {
		b.Fatalf("Go baseline disagrees with FAISS: %v vs %v", got[0], exact[0][0])
	}
	dir := b.TempDir()
	fileSize := func(ix *Index) float64 {
		p := filepath.Join(dir, "ix")
		if err := ix.Write(p); err != nil {
			b.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		os.Remove(p)
		return float64(st.Size()) / float64(n)
	}
	flatBytes, hnswBytes := fileSize(flat), fileSize(hnsw)
	// Snapshot economics: writing and reading the HNSW file against
	// building the graph again from the vectors.
	hnswPath := filepath.Join(dir, "hnsw")
	start = time.Now()
	if err := hnsw.Write(hnswPath); err != nil {
		b.Fatal(err)
	}
	hnswWrite := time.Since(start)
	start = time.Now()
	back, err := Read(hnswPath)
	if err != nil {
		b.Fatal(err)
	}
	hnswRead := time.Since(start)
	back.Close()
	os.Remove(hnswPath)
	b.Logf("d=%d n=%d: HNSW write %v, read %v, build %v: load is %.0fx faster than rebuild",
		dim, n, hnswWrite, hnswRead, hnswBuild, hnswBuild.Seconds()/hnswRead.Seconds())
	b.Logf("d=%d n=%d: flat build %v, HNSW build %v (%.0f vec/s), recall@%d by efSearch %v, "+
		"file bytes/vector flat %.0f (%.2fx raw) HNSW %.0f (%.2fx raw), RSS bytes/vector flat %.0f (%.2fx raw) HNSW %.0f (%.2fx raw)",
		dim, n, flatBuild, hnswBuild, float64(n)/hnswBuild.Seconds(), k, recalls,
		flatBytes, flatBytes/float64(4*dim), hnswBytes, hnswBytes/float64(4*dim),
		flatRSS, flatRSS/float64(4*dim), hnswRSS, hnswRSS/float64(4*dim))

	single := func(search func(q []float32)) func(b *testing.B) {
		return func(b *testing.B) {
			i := 0
			for b.Loop() {
				search(queries[(i%nq)*dim : (i%nq+1)*dim])
				i++
			}
		}
	}
	batched := func(search func(qs []float32)) func(b *testing.B) {
		return func(b *testing.B) {
			i := 0
			for b.Loop() {
				off := (i * batch) % (nq - batch + 1)
				search(queries[off*dim : (off+batch)*dim])
				i++
			}
		}
	}
	must := func(_ any, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("single/faiss-flat", single(func(q []float32) { must(flat.Search(q, k)) }))
	for _, e := range efs {
		b.Run(fmt.Sprintf("single/hnsw-ef%d", e), func(b *testing.B) {
			if err := hnsw.SetEfSearch(e); err != nil {
				b.Fatal(err)
			}
			single(func(q []float32) { must(hnsw.Search(q, k)) })(b)
			b.ReportMetric(recalls[e], "recall@10")
		})
	}
	if err := hnsw.SetEfSearch(ef); err != nil {
		b.Fatal(err)
	}
	b.Run("single/go-brute", single(func(q []float32) { goBrute(data, dim, q, k) }))
	b.Run(fmt.Sprintf("batch%d/faiss-flat", batch), batched(func(qs []float32) { must(flat.SearchBatch(qs, k)) }))
	b.Run(fmt.Sprintf("batch%d/hnsw-ef%d", batch, ef), func(b *testing.B) {
		batched(func(qs []float32) { must(hnsw.SearchBatch(qs, k)) })(b)
		b.ReportMetric(recall, "recall@10")
	})
	b.Run(fmt.Sprintf("batch%d/go-brute", batch), batched(func(qs []float32) {
		for q := range batch {
			goBrute(data, dim, qs[q*dim:(q+1)*dim], k)
		}
	}))
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(flatBuild.Seconds(), "flat-build-s")
		b.ReportMetric(hnswBuild.Seconds(), "hnsw-build-s")
		b.ReportMetric(flatBytes/float64(4*dim), "flat-file/raw")
		b.ReportMetric(hnswBytes/float64(4*dim), "hnsw-file/raw")
		b.ReportMetric(hnswRead.Seconds(), "hnsw-read-s")
		b.ReportMetric(flatRSS/float64(4*dim), "flat-rss/raw")
		b.ReportMetric(hnswRSS/float64(4*dim), "hnsw-rss/raw")
	})
}

// rssBytes reads the resident set size of the process. Each size runs in
// its own process in the documented commands, so deltas around a build are
// the memory the index really took (allocator reuse of freed memory from an
// earlier, larger index would hide it).
func rssBytes(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
