package vectorindex

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"poi/internal/faiss"
)

// BenchmarkHNSWTuning measures one graph walk as a merged segment runs it
// (SearchHNSWRange over its whole stamp range) on the stage-2 data, for
// each graph shape: p50/p99 of a single query and recall@10 against the
// exact answer, per M, efConstruction and efSearch. It is the evidence for
// the HNSW defaults; the build uses every core to keep the sweep short
// (the shape, not the build thread count, decides the walk).
//
//	POI_BENCH_TUNE_N=100000 POI_BENCH_TUNE_SHAPES=32x40,16x40,16x80 POI_BENCH_EF=48,64,96,128 \
//	  /tmp/bench-stage2.test -test.run '^$' -test.bench HNSWTuning -test.benchtime 1x -test.v
func BenchmarkHNSWTuning(b *testing.B) {
	n, dim, queries := 3000, 64, 100
	if v, err := strconv.Atoi(os.Getenv("POI_BENCH_TUNE_N")); err == nil && v > 0 {
		n, dim, queries = v, 512, 200
	}
	shapes := [][2]int{{DefaultHNSWM, DefaultHNSWEfConstruction}}
	if s := os.Getenv("POI_BENCH_TUNE_SHAPES"); s != "" {
		shapes = nil
		for _, f := range strings.Split(s, ",") {
			var m, efc int
			if _, err := fmt.Sscanf(f, "%dx%d", &m, &efc); err == nil && m > 0 && efc > 0 {
				shapes = append(shapes, [2]int{m, efc})
			}
		}
	}
	efs := []int{DefaultHNSWEfSearch}
	if e := os.Getenv("POI_BENCH_EF"); e != "" {
		efs = nil
		for _, f := range strings.Split(e, ",") {
			if v, err := strconv.Atoi(f); err == nil && v > 0 {
				efs = append(efs, v)
			}
		}
	}
	const k = 10
	identities := max(50, n/25)
	dets := genStage2(n, dim, identities, 7*24*time.Hour)
	qf := newFaceLike(77, dim, identities, 0.8)
	qf.rng = rand.New(rand.NewPCG(4242, 4242))
	qs := make([][]float32, queries)
	exact := make([][]Hit, queries)
	for i := range qs {
		qs[i] = qf.any()
		exact[i] = goBruteRange(dets, qs[i], t0, t0.Add(8*24*time.Hour), k)
	}
	ids, stamps := make([]int64, n), make([]int64, n)
	vecs := make([]float32, 0, n*dim)
	for i, d := range dets {
		ids[i], stamps[i] = d.ID, d.Time.UnixNano()
		vecs = append(vecs, d.Vector...)
	}
	for _, sh := range shapes {
		h, err := faiss.NewHNSW(dim, faiss.HNSWParams{M: sh[0], EfConstruction: sh[1], EfSearch: efs[0]})
		if err != nil {
			b.Fatal(err)
		}
		h.SetThreads(0)
		start := time.Now()
		if err := h.AddStamped(ids, stamps, vecs); err != nil {
			b.Fatal(err)
		}
		build := time.Since(start)
		h.SetThreads(1)
		for _, ef := range efs {
			if err := h.SetEfSearch(ef); err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("M%d/efc%d/ef%d", sh[0], sh[1], ef), func(b *testing.B) {
				var ts []time.Duration
				hit, want := 0, 0
				for b.Loop() {
					for i, q := range qs {
						start := time.Now()
						res, err := h.SearchHNSWRange(q, minInt64+1, maxInt64, k, ef)
						ts = append(ts, time.Since(start))
						if err != nil {
							b.Fatal(err)
						}
						for _, x := range exact[i] {
							want++
							if slices.ContainsFunc(res, func(r faiss.Neighbor) bool { return r.ID == x.ID }) {
								hit++
							}
						}
					}
				}
				recall := float64(hit) / float64(want)
				b.Logf("%d vectors, M %d, efConstruction %d (build %v on every core), efSearch %d: p50 %v p99 %v, recall@10 %.4f",
					n, sh[0], sh[1], build, ef, percentile(ts, 50), percentile(ts, 99), recall)
				b.ReportMetric(ms(percentile(ts, 50)), "p50-ms")
				b.ReportMetric(recall, "recall@10")
			})
		}
		h.Close()
	}
}
