package vectorindex

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"poi/internal/faiss"
)

// BenchmarkStage2Production measures the stage-2 search the way production
// runs it: daily segments (the config default), the replica's compaction
// policy (CompactDue) applied at "now" = the end of 7 days of data plus half
// a current day, and the query every investigator asks, [now-7d, now], which
// cuts the oldest segment and ends in the open one (and [now-6.5d, now],
// which cuts the oldest segment's live data too). Every query is timed
// alone, interleaved with the Go scan it is compared with, so p50/p99 and the
// ratio come from the same run on the same (shared) machine: one search
// worker against a 1-goroutine scan, and N workers against an N-goroutine
// scan. Recall@10 is against that exact scan.
//
// The default size is a CI smoke size; POI_BENCH_STAGE2_TOTAL sets the
// measured one (docs/bench-vector-index.md), POI_BENCH_DIMS the dimension,
// POI_BENCH_QUERIES the number of distinct queries, POI_BENCH_SEGMENT the
// segment duration and POI_BENCH_EF a list of efSearch values to compare. POI_BENCH_DROP_CACHES=1
// (root only) drops the page cache before each snapshot load, so load is
// measured cold.
func BenchmarkStage2Production(b *testing.B) {
	total, dim, queries := 8*400, 64, 200
	if n, err := strconv.Atoi(os.Getenv("POI_BENCH_STAGE2_TOTAL")); err == nil && n > 0 {
		total, dim = n, 512
	}
	if n, err := strconv.Atoi(os.Getenv("POI_BENCH_DIMS")); err == nil && n > 0 {
		dim = n
	}
	if n, err := strconv.Atoi(os.Getenv("POI_BENCH_QUERIES")); err == nil && n > 0 {
		queries = n
	}
	const k = 10
	day := 24 * time.Hour
	segDur := prodSegment
	if d, err := time.ParseDuration(os.Getenv("POI_BENCH_SEGMENT")); err == nil && d > 0 {
		segDur = d
	}
	span := 7*day + day/2
	now := t0.Add(span)
	from, to := now.Add(-7*day), now
	perDay := int(int64(total) * int64(day) / int64(span))
	// The production threshold, lowered only when a whole day holds fewer
	// vectors (the smoke size), so the HNSW path still runs there.
	minVec := DefaultHNSWMinVectors
	if perDay < 2*minVec {
		minVec = max(perDay/2, 1)
	}
	identities := max(50, total/25) // ~25 observations per identity, ~3 a day
	model := Model{Name: "bench", Dim: dim}

	dets := genStage2(total, dim, identities, span)
	qf := newFaceLike(77, dim, identities, 0.8)
	qf.rng = rand.New(rand.NewPCG(4242, 4242)) // new observations of enrolled identities
	qs := make([][]float32, queries)
	for i := range qs {
		qs[i] = qf.any()
	}

	prodCfg := DetectionConfig{Model: model, SegmentDuration: segDur, HNSWMinVectors: minVec, BuildThreads: prodBuildThreads}
	prod, prodAdd, prodCompact := buildStage2(b, prodCfg, dets, now)
	defer prod.Close()
	flatCfg := DetectionConfig{Model: model, SegmentDuration: segDur, HNSWMinVectors: -1}
	flat, flatAdd, _ := buildStage2(b, flatCfg, dets, now)
	defer flat.Close()
	var layout []string
	for _, s := range prod.Segments() {
		layout = append(layout, fmt.Sprintf("%s..%s:%s:%d", s.Start.Format("01-02"), s.End.Format("01-02"), s.Kind, s.Live))
	}
	b.Logf("%d vectors of %d-d, %d identities, %d queries; segments of %v, hnsw_min_vectors %d, merge_max_vectors %d, efSearch %d: %v",
		total, dim, identities, queries, segDur, minVec, prod.cfg.MergeMaxVectors, prod.cfg.HNSW.EfSearch, layout)
	b.Logf("production build (1 build thread): add %v + compact %v; flat add %v", prodAdd, prodCompact, flatAdd)

	// "last 7 days" covers everything retention keeps, so it cuts the
	// oldest segment's time span but none of its live data; "last 6.5 days"
	// cuts the oldest segment's live data in half.
	ranges := []struct {
		name     string
		from, to time.Time
	}{{"7d", from, to}, {"6.5d", now.Add(-6*day - day/2), to}}
	efs := []int{prod.cfg.HNSW.EfSearch}
	if e := os.Getenv("POI_BENCH_EF"); e != "" {
		efs = nil
		for _, f := range strings.Split(e, ",") {
			if n, err := strconv.Atoi(f); err == nil && n > 0 {
				efs = append(efs, n)
			}
		}
	}
	for _, r := range ranges {
		// exact[i] is the exact answer to query i, for recall.
		exact := make([][]Hit, len(qs))
		for i, q := range qs {
			exact[i] = goBruteRange(dets, q, r.from, r.to, k)
		}
		for _, ef := range efs {
			setEfSearch(b, prod, ef)
			for _, workers := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/ef%d/workers%d", r.name, ef, workers), func(b *testing.B) {
					stage2Run(b, prod, dets, qs, exact, r.from, r.to, k, workers)
				})
			}
		}
	}
	setEfSearch(b, prod, efs[0])

	// Where one query's time goes: each overlapping segment searched alone
	// over its in-range part, one worker.
	b.Run("per-segment", func(b *testing.B) {
		for b.Loop() {
			prev := prod.cfg.SearchWorkers
			prod.cfg.SearchWorkers = 1
			for _, s := range prod.Segments() {
				lo, hi := s.Start, s.End.Add(-1)
				if hi.Before(from) || lo.After(to) {
					continue
				}
				cut := lo.Before(from) || hi.After(to)
				lo, hi = maxTime(lo, from), minTime(hi, to)
				var ts []time.Duration
				var st SearchStats
				for _, q := range qs[:min(50, len(qs))] {
					start := time.Now()
					_, s2, err := prod.Search(q, lo, hi, k)
					ts = append(ts, time.Since(start))
					if err != nil {
						b.Fatal(err)
					}
					st = s2
				}
				b.Logf("segment %s %s live %d cut %v: p50 %v (%d vectors searched)",
					s.Start.Format("01-02"), s.Kind, s.Live, cut, percentile(ts, 50), st.VectorsSearched)
			}
			prod.cfg.SearchWorkers = prev
		}
	})

	// Snapshot load against a real rebuild with the production build thread
	// count, up to the first answered search.
	for _, c := range []struct {
		name    string
		d       *DetectionIndex
		cfg     DetectionConfig
		rebuild time.Duration
	}{{"snapshot-flat", flat, flatCfg, flatAdd}, {"snapshot-production", prod, prodCfg, prodAdd + prodCompact}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				dir := b.TempDir()
				if err := c.d.Snapshot(dir, 1); err != nil {
					b.Fatal(err)
				}
				cold := dropPageCache(b)
				start := time.Now()
				back, _, err := LoadDetectionIndex(dir, c.cfg)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := back.Search(qs[0], from, to, k); err != nil {
					b.Fatal(err)
				}
				first := time.Since(start)
				back.Close()
				b.Logf("%s: load + first search %v (page cache dropped: %v); rebuild from memory with %d build thread(s) %v: %.0fx",
					c.name, first, cold, prodBuildThreads, c.rebuild, c.rebuild.Seconds()/first.Seconds())
				b.ReportMetric(first.Seconds(), "first-search-s")
				b.ReportMetric(c.rebuild.Seconds(), "rebuild-s")
			}
		})
	}
}

// stage2Run times every query on prod with the given number of search
// workers, interleaved with a Go scan on as many goroutines, and reports
// p50/p99 of both, their ratio and recall@10 against exact.
func stage2Run(b *testing.B, prod *DetectionIndex, dets []Detection, qs [][]float32, exact [][]Hit, from, to time.Time, k, workers int) {
	prev := prod.cfg.SearchWorkers
	prod.cfg.SearchWorkers = workers
	defer func() { prod.cfg.SearchWorkers = prev }()
	var idxT, goT []time.Duration
	hit, want := 0, 0
	var st SearchStats
	for b.Loop() {
		for i, q := range qs {
			// Alternate which side runs first, so neither always
			// finds the caches warmed by the other.
			measureIdx := func() {
				start := time.Now()
				got, s, err := prod.Search(q, from, to, k)
				idxT = append(idxT, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				st = s
				for _, x := range exact[i] {
					want++
					if slices.ContainsFunc(got, func(h Hit) bool { return h.ID == x.ID }) {
						hit++
					}
				}
			}
			measureGo := func() {
				start := time.Now()
				goBruteRangeParallel(dets, q, from, to, k, workers)
				goT = append(goT, time.Since(start))
			}
			if i%2 == 0 {
				measureIdx()
				measureGo()
			} else {
				measureGo()
				measureIdx()
			}
		}
	}
	ip50, ip99 := percentile(idxT, 50), percentile(idxT, 99)
	gp50, gp99 := percentile(goT, 50), percentile(goT, 99)
	recall := float64(hit) / float64(want)
	b.Logf("%d workers vs %d-goroutine Go scan, %d timed queries: index p50 %v p99 %v; Go p50 %v p99 %v; ratio p50 %.1fx p99 %.1fx; recall@10 %.4f; %d segments holding %d vectors searched",
		workers, workers, len(idxT), ip50, ip99, gp50, gp99, gp50.Seconds()/ip50.Seconds(), gp99.Seconds()/ip99.Seconds(), recall, st.SegmentsSearched, st.VectorsSearched)
	b.ReportMetric(ms(ip50), "p50-ms")
	b.ReportMetric(ms(ip99), "p99-ms")
	b.ReportMetric(ms(gp50), "go-p50-ms")
	b.ReportMetric(ms(gp99), "go-p99-ms")
	b.ReportMetric(gp50.Seconds()/ip50.Seconds(), "x-p50")
	b.ReportMetric(recall, "recall@10")
}

// setEfSearch sets the HNSW beam width of every graph segment and of the
// configuration (which the filtered search of cut segments scales).
func setEfSearch(b *testing.B, d *DetectionIndex, ef int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg.HNSW.EfSearch = ef
	for _, s := range d.segs {
		if s.idx.Kind() == faiss.HNSW {
			if err := s.idx.SetEfSearch(ef); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// prodSegment and prodBuildThreads mirror the service
// defaults (configs/poi.yaml index.segment_duration and pipeline.retention, and the BuildThreads
// internal/node gives the detection replica).
const (
	prodSegment      = 24 * time.Hour
	prodRetention    = 168 * time.Hour
	prodBuildThreads = 1
)

// genStage2 makes total face-like detections of the given identities spread
// evenly over span, generated on several goroutines.
func genStage2(total, dim, identities int, span time.Duration) []Detection {
	f := newFaceLike(77, dim, identities, 0.8)
	out := make([]Detection, total)
	const chunk = 20_000
	var wg sync.WaitGroup
	for c := 0; c < total; c += chunk {
		wg.Go(func() {
			g := &faceLike{rng: rand.New(rand.NewPCG(uint64(c), 7)), dim: dim, centres: f.centres, noise: f.noise}
			for i := c; i < min(c+chunk, total); i++ {
				out[i] = Detection{ID: int64(i + 1), Time: t0.Add(time.Duration(int64(span) / int64(total) * int64(i))), Vector: g.any()}
			}
		})
	}
	wg.Wait()
	return out
}

// buildStage2 adds dets in batches, then applies the production compaction
// policy at now.
func buildStage2(b *testing.B, cfg DetectionConfig, dets []Detection, now time.Time) (*DetectionIndex, time.Duration, time.Duration) {
	d, err := NewDetectionIndex(cfg)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for c := 0; c < len(dets); c += 10_000 {
		if err := d.AddBatch(dets[c:min(c+10_000, len(dets))]); err != nil {
			b.Fatal(err)
		}
	}
	add := time.Since(start)
	start = time.Now()
	// The replica's tick: retention, then compaction.
	d.DropBefore(now.Add(-prodRetention))
	if _, err := d.CompactDue(b.Context(), now); err != nil {
		b.Fatal(err)
	}
	return d, add, time.Since(start)
}

// goBruteRangeParallel is goBruteRange over n contiguous shards on n
// goroutines, merged: the like-for-like baseline of an n-worker search.
func goBruteRangeParallel(dets []Detection, q []float32, from, to time.Time, k, n int) []Hit {
	if n <= 1 {
		return goBruteRange(dets, q, from, to, k)
	}
	parts := make([][]Hit, n)
	var wg sync.WaitGroup
	for w := range n {
		lo, hi := len(dets)*w/n, len(dets)*(w+1)/n
		wg.Go(func() { parts[w] = goBruteRange(dets[lo:hi], q, from, to, k) })
	}
	wg.Wait()
	all := slices.Concat(parts...)
	slices.SortFunc(all, func(a, b Hit) int { return cmp.Compare(b.Similarity, a.Similarity) })
	return all[:min(k, len(all))]
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// dropPageCache empties the kernel page cache when POI_BENCH_DROP_CACHES=1
// and the process may (root), so a following load reads from disk; it
// reports whether it did.
func dropPageCache(b *testing.B) bool {
	if os.Getenv("POI_BENCH_DROP_CACHES") != "1" {
		return false
	}
	syscall.Sync() // dirty pages of the snapshot just written cannot be dropped
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Logf("cannot drop the page cache: %v", err)
		return false
	}
	return true
}
