package vectorindex

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Detection-index benchmarks: 7 days of hourly segments, queried over one
// hour and over all of it, with segments flat or converted to HNSW, and
// snapshot load against rebuild. The default size is small; POI_BENCH_LARGE=1
// uses 1M vectors (about 5950 per hourly segment). POI_BENCH_DIMS picks the
// dimension (default 512), POI_BENCH_SEGMENT the segment duration;
// POI_BENCH_SMOKE=1 (scripts/test.sh) shrinks it to a size that only proves
// the benchmark still runs.

func detBenchParams() (total, dim int, seg time.Duration) {
	total, dim, seg = 168*300, 512, time.Hour
	if os.Getenv("POI_BENCH_LARGE") == "1" {
		total = 1_000_000
	}
	if n, err := strconv.Atoi(os.Getenv("POI_BENCH_TOTAL")); err == nil && n > 0 {
		total = n
	}
	if n, err := strconv.Atoi(os.Getenv("POI_BENCH_DIMS")); err == nil && n > 0 {
		dim = n
	}
	if d, err := time.ParseDuration(os.Getenv("POI_BENCH_SEGMENT")); err == nil && d > 0 {
		seg = d
	}
	if os.Getenv("POI_BENCH_SMOKE") == "1" {
		total, dim = 168*20, 64
	}
	return total, dim, seg
}

// genDetections makes total face-like detections (one identity per 100)
// spread evenly over span, generated on several goroutines.
func genDetections(total, dim int, span time.Duration) []Detection {
	f := newFaceLike(99, dim, max(200, total/100), 0.8)
	out := make([]Detection, total)
	const chunk = 20_000
	var wg sync.WaitGroup
	for c := 0; c < total; c += chunk {
		wg.Go(func() {
			g := &faceLike{rng: rand.New(rand.NewPCG(uint64(c), 1000)), dim: dim, centres: f.centres, noise: f.noise}
			for i := c; i < min(c+chunk, total); i++ {
				out[i] = Detection{
					ID:     int64(i + 1),
					Time:   t0.Add(time.Duration(int64(span) / int64(total) * int64(i))),
					Vector: g.any(),
				}
			}
		})
	}
	wg.Wait()
	return out
}

func buildDet(b *testing.B, cfg DetectionConfig, dets []Detection, compact bool) (*DetectionIndex, time.Duration, time.Duration) {
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
	var comp time.Duration
	if compact {
		start = time.Now()
		if _, err := d.Compact(b.Context(), t0.Add(7*24*time.Hour)); err != nil {
			b.Fatal(err)
		}
		comp = time.Since(start)
	}
	return d, add, comp
}

// goBruteRange is the baseline without partitioning: scan every vector,
// keep those in range, top k by a sort of the survivors' scores.
func goBruteRange(dets []Detection, q []float32, from, to time.Time, k int) []Hit {
	var hits []Hit
	for _, det := range dets {
		if det.Time.Before(from) || det.Time.After(to) {
			continue
		}
		s := dot(det.Vector, q)
		if len(hits) < k || s > hits[len(hits)-1].Similarity {
			hits = append(hits, Hit{ID: det.ID, Similarity: s, Time: det.Time})
			slices.SortFunc(hits, func(a, b Hit) int { return cmp.Compare(b.Similarity, a.Similarity) })
			hits = hits[:min(k, len(hits))]
		}
	}
	return hits
}

func BenchmarkDetectionRange(b *testing.B) {
	total, dim, segDur := detBenchParams()
	model := Model{Name: "bench", Dim: dim}
	span := 7 * 24 * time.Hour
	dets := genDetections(total, dim, span)
	qf := newFaceLike(99, dim, max(200, total/100), 0.8) // same identities
	qf.rng = rand.New(rand.NewPCG(4242, 4242))           // new observations of the same identities
	queries := make([][]float32, 50)
	for i := range queries {
		queries[i] = qf.any()
	}
	const k = 10

	flat, flatAdd, _ := buildDet(b, DetectionConfig{Model: model, SegmentDuration: segDur, HNSWMinVectors: -1}, dets, false)
	defer flat.Close()
	hnswCfg := DetectionConfig{Model: model, SegmentDuration: segDur, HNSWMinVectors: 1}
	if os.Getenv("POI_BENCH_FLAT_ONLY") == "1" {
		// Skips the (slow) HNSW conversion when only flat numbers are
		// needed; the "hnsw" rows then repeat the flat layout.
		hnswCfg.HNSWMinVectors = -1
	}
	hnsw, hnswAdd, hnswCompact := buildDet(b, hnswCfg, dets, true)
	defer hnsw.Close()
	segs := hnsw.Segments()
	b.Logf("%d vectors of %d-d in %d segments of %v: flat add %v; HNSW add %v + compact %v",
		total, dim, len(segs), segDur, flatAdd, hnswAdd, hnswCompact)

	all := [2]time.Time{t0, t0.Add(span)}
	hour := [2]time.Time{t0.Add(100 * time.Hour), t0.Add(101*time.Hour - 1)}
	cut := [2]time.Time{t0.Add(100*time.Hour + 30*time.Minute), t0.Add(101*time.Hour + 30*time.Minute)}

	// Recall of the HNSW layout against the exact flat layout, 7 days.
	hit, want := 0, 0
	for _, q := range queries {
		e, _, err := flat.Search(q, all[0], all[1], k)
		if err != nil {
			b.Fatal(err)
		}
		a, _, err := hnsw.Search(q, all[0], all[1], k)
		if err != nil {
			b.Fatal(err)
		}
		for _, x := range e {
			want++
			if slices.ContainsFunc(a, func(h Hit) bool { return h.ID == x.ID }) {
				hit++
			}
		}
	}
	recall := float64(hit) / float64(want)
	b.Logf("HNSW segments recall@%d over 7 days: %.4f", k, recall)

	run := func(d *DetectionIndex, r [2]time.Time, workers int) func(b *testing.B) {
		return func(b *testing.B) {
			prev := d.cfg.SearchWorkers
			d.cfg.SearchWorkers = workers
			defer func() { d.cfg.SearchWorkers = prev }()
			var st SearchStats
			i := 0
			for b.Loop() {
				var err error
				_, st, err = d.Search(queries[i%len(queries)], r[0], r[1], k)
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(st.SegmentsSearched), "segments")
			b.ReportMetric(float64(st.VectorsSearched), "vectors")
		}
	}
	for _, layout := range []struct {
		name string
		d    *DetectionIndex
	}{{"flat", flat}, {"hnsw", hnsw}} {
		b.Run(layout.name+"/1h-aligned", run(layout.d, hour, DefaultSearchWorkers))
		b.Run(layout.name+"/1h-cut", run(layout.d, cut, DefaultSearchWorkers))
		for _, w := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/7d-workers%d", layout.name, w), func(b *testing.B) {
				run(layout.d, all, w)(b)
				if layout.d == hnsw {
					b.ReportMetric(recall, "recall@10")
				}
			})
		}
	}
	for _, r := range []struct {
		name string
		r    [2]time.Time
	}{{"1h-aligned", hour}, {"7d", all}} {
		b.Run("go-brute/"+r.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				goBruteRange(dets, queries[i%len(queries)], r.r[0], r.r[1], k)
				i++
			}
		})
	}

	b.Run("snapshot", func(b *testing.B) {
		for b.Loop() {
		}
		dir := b.TempDir()
		start := time.Now()
		if err := hnsw.Snapshot(dir, 1); err != nil {
			b.Fatal(err)
		}
		write := time.Since(start)
		start = time.Now()
		if err := hnsw.Snapshot(dir, 2); err != nil {
			b.Fatal(err)
		}
		rewrite := time.Since(start)
		start = time.Now()
		back, pos, err := LoadDetectionIndex(dir, hnswCfg)
		if err != nil || pos != 2 || back.Count() != hnsw.Count() {
			b.Fatalf("load: %v pos %d", err, pos)
		}
		load := time.Since(start)
		back.Close()
		rebuild := hnswAdd + hnswCompact
		b.Logf("snapshot write %v, unchanged re-snapshot %v, load %v; rebuild (add %v + HNSW compact %v) %v: load %.1fx faster; flat-only rebuild (add) %v",
			write, rewrite, load, hnswAdd, hnswCompact, rebuild, rebuild.Seconds()/load.Seconds(), flatAdd)
		b.ReportMetric(write.Seconds(), "write-s")
		b.ReportMetric(load.Seconds(), "load-s")
		b.ReportMetric(rebuild.Seconds(), "rebuild-s")
		b.ReportMetric(rebuild.Seconds()/load.Seconds(), "rebuild/load")
	})
}
