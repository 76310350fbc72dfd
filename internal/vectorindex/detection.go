package vectorindex

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"poi/internal/faiss"
)

// Defaults of DetectionConfig. docs/bench-vector-index.md has the
// measurements behind them.
const (
	// DefaultSegmentDuration partitions detections by hour: fine enough that
	// a short time-range query touches little data, coarse enough that 7 days
	// of retention is only 168 segments.
	DefaultSegmentDuration = time.Hour
	// DefaultHNSWMinVectors is the size from which Compact rebuilds a
	// segment as HNSW. Measured at 512-d over 1M vectors: with ~6k vectors
	// per hourly segment, HNSW made a one-hour query only 1.3x faster and a
	// 7-day query over 168 segments slower (470 vs 420 ms) than flat, for
	// 13 minutes of build; with ~143k per daily segment it made the 7-day
	// query 14-19x faster (recall@10 0.998). Below this size an exact scan
	// is about as fast, needs no build and has perfect recall.
	DefaultHNSWMinVectors = 20000
	// DefaultHNSWM and DefaultHNSWEfConstruction gave the best recall per
	// millisecond of a walk on clustered 512-d data (BenchmarkHNSWTuning:
	// M 16 needed a wider beam for the same recall; efConstruction 80 built
	// 4.5x slower). DefaultHNSWEfSearch is the narrowest beam that keeps a
	// 7-day query at recall@10 >= 0.95 over 300k vectors (0.9505, 25.8x a
	// Go scan; efSearch 96: 0.978 at 17.5x; 128: 0.9805 at 13.9x).
	DefaultHNSWM              = 32
	DefaultHNSWEfConstruction = 40
	DefaultHNSWEfSearch       = 64
	// DefaultSearchWorkers is how many segments one search scans at once.
	// On 2 cores, 2 workers made a 7-day search over 7 HNSW segments 1.5x
	// faster (30 -> 20 ms) and over flat ones 1.1x; over 168 small
	// segments they neither helped nor hurt (memory-bound).
	DefaultSearchWorkers = 2
	// DefaultMergeMaxVectors caps the live vectors of a segment that
	// CompactDue builds by merging sealed neighbours. A graph walk costs
	// about the same at 20k vectors as at 260k (efSearch times the links
	// per node), so eight daily graphs made a 7-day query only 3x faster
	// than a Go scan. A larger graph is less exact at the same efSearch
	// (recall@10 0.994 at 100k, 0.943 at 260k, efSearch 64), but fewer
	// walks still won: at 300k, two graphs (260k + the open day) were
	// 25.8x a Go scan at recall 0.9505 and 17.5x at 0.978, three (capped
	// at 160k) 20.1x at 0.953 and 16.7x at 0.9755
	// (docs/bench-vector-index.md). The cap bounds one rebuild's time:
	// 13 to 14 minutes for 260k vectors at 1 thread in those runs.
	DefaultMergeMaxVectors = 500000
)

// DetectionConfig configures a DetectionIndex. Zero fields take the
// defaults above.
type DetectionConfig struct {
	Model Model
	// SegmentDuration is the time span of one segment.
	SegmentDuration time.Duration
	// HNSWMinVectors: Compact rebuilds sealed flat segments holding at
	// least this many vectors as HNSW; a negative value never does.
	HNSWMinVectors int
	// HNSW parameters of rebuilt segments.
	HNSW faiss.HNSWParams
	// SearchWorkers is the number of segments searched concurrently by one
	// Search.
	SearchWorkers int
	// BuildThreads is the OpenMP thread count of HNSW builds in Compact;
	// 0 uses every core, which suits a background job on an idle machine.
	BuildThreads int
	// MergeMaxVectors: CompactDue merges consecutive sealed segments into
	// one HNSW segment of at most this many live vectors; a negative value
	// never merges.
	MergeMaxVectors int
}

// withDefaults fills zero fields and validates the result.
func (c DetectionConfig) withDefaults() (DetectionConfig, error) {
	if err := c.Model.Validate(); err != nil {
		return c, err
	}
	if c.SegmentDuration == 0 {
		c.SegmentDuration = DefaultSegmentDuration
	}
	if c.SegmentDuration < time.Second {
		return c, fmt.Errorf("segment duration %v below 1s", c.SegmentDuration)
	}
	if c.HNSWMinVectors == 0 {
		c.HNSWMinVectors = DefaultHNSWMinVectors
	}
	if c.HNSW.M == 0 {
		c.HNSW.M = DefaultHNSWM
	}
	if c.HNSW.EfConstruction == 0 {
		c.HNSW.EfConstruction = DefaultHNSWEfConstruction
	}
	if c.HNSW.EfSearch == 0 {
		c.HNSW.EfSearch = DefaultHNSWEfSearch
	}
	if c.HNSW.M < 0 || c.HNSW.EfConstruction < 0 || c.HNSW.EfSearch < 0 {
		return c, fmt.Errorf("negative HNSW parameter in %+v", c.HNSW)
	}
	if c.SearchWorkers <= 0 {
		c.SearchWorkers = DefaultSearchWorkers
	}
	if c.MergeMaxVectors == 0 {
		c.MergeMaxVectors = DefaultMergeMaxVectors
	}
	return c, nil
}

// Detection is one face observation for AddBatch.
type Detection struct {
	ID     int64
	Time   time.Time
	Vector []float32
}

// Hit is one search result of the detection index.
type Hit struct {
	ID         int64
	Similarity float32
	Time       time.Time
}

// SearchStats tells how much a search touched, so callers and tests can
// check that a time range limits the work.
type SearchStats struct {
	SegmentsSearched int
	VectorsSearched  int
}

// loc is where a live detection is: its segment (start, Unix ns) and its
// own timestamp (Unix ns).
type loc struct {
	seg int64
	t   int64
}

// segment is the index of one time slice: one segment duration, or several
// consecutive ones once merged. Segments never overlap.
type segment struct {
	// start and end (Unix ns, exclusive) are multiples of the segment
	// duration; start is the segment's key.
	start, end int64
	idx        *faiss.Index
	// ids lists every id ever added here, live or removed, so dropping the
	// segment can clear the id maps without a full scan.
	ids []int64
	// times[i] is the timestamp (Unix ns) of ids[i]. Scanning this flat
	// slice, instead of looking every id up in the map, is what keeps a
	// short range that cuts a long segment cheap.
	times []int64
	// minT and maxT bound the timestamps of every live detection (they only
	// widen, so they stay bounds after removals). A range covering them needs
	// no per-detection filter even if it cuts the segment's time span, which
	// is the common case of the open segment under a range ending now.
	minT, maxT int64
	live       int
	// deadInIndex counts removed ids still physically in idx (HNSW cannot
	// remove): tombstones whose stamps the graph walk skips.
	deadInIndex int
	// version changes with every mutation; Compact and Snapshot use it to
	// detect that a segment changed under them.
	version uint64
	// snap* remember the last file this segment was written to, so an
	// unchanged sealed segment is not rewritten by every snapshot. Guarded
	// by DetectionIndex.snapMu.
	snapDir     string
	snapVersion uint64
	snapFile    fileEntry
}

// DetectionIndex is the all-detections index: every face seen, partitioned
// by time into segments. A time-range search touches only overlapping
// segments and filters by each detection's own timestamp; retention drops
// whole segments. It is safe for concurrent use.
type DetectionIndex struct {
	cfg DetectionConfig
	dur int64 // segment duration in ns

	mu   sync.RWMutex
	segs map[int64]*segment
	// loc holds every live id; dead holds removed ids (with their segment)
	// until that segment is dropped, so a redelivered detection cannot bring
	// a deleted face back.
	loc  map[int64]loc
	dead map[int64]int64
	// horizon: detections before it were dropped by retention.
	horizon int64
	closed  bool

	snapMu sync.Mutex

	// afterBuild, when set by tests, runs between an HNSW build and its
	// swap, to exercise updates that race with Compact.
	afterBuild func()
}

// NewDetectionIndex creates an empty detection index.
func NewDetectionIndex(cfg DetectionConfig) (*DetectionIndex, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new detection index: %w", err)
	}
	return &DetectionIndex{
		cfg:     cfg,
		dur:     int64(cfg.SegmentDuration),
		segs:    map[int64]*segment{},
		loc:     map[int64]loc{},
		dead:    map[int64]int64{},
		horizon: minInt64,
	}, nil
}

const (
	minInt64 = -1 << 63
	maxInt64 = 1<<63 - 1
)

// segStart returns the start of the segment holding t (floor division, so
// times before 1970 work too).
func (d *DetectionIndex) segStart(t int64) int64 {
	r := t % d.dur
	if r < 0 {
		r += d.dur
	}
	return t - r
}

// segmentKey returns the key of the segment that holds t: the one whose
// span contains it, merged or not, or else the aligned slot of t, where
// AddBatch creates a segment. The caller holds d.mu.
func (d *DetectionIndex) segmentKey(t int64) int64 {
	start := d.segStart(t)
	if _, ok := d.segs[start]; ok {
		return start
	}
	// Only a time inside a merged segment's span but not at its start
	// gets here, or a time whose slot has no segment yet: both rare after
	// the first detection of a segment, so a scan of the few segments is
	// cheaper than keeping an interval tree.
	for k, s := range d.segs {
		if s.start <= t && t < s.end {
			return k
		}
	}
	return start
}

// Count returns the number of live detections.
func (d *DetectionIndex) Count() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.loc)
}

// SegmentInfo describes one segment for monitoring and tests.
type SegmentInfo struct {
	Start, End time.Time
	Kind       faiss.Kind
	Live       int
	// Tombstones are removed vectors still stored (HNSW segments).
	Tombstones int
}

// Segments lists the segments, oldest first.
func (d *DetectionIndex) Segments() []SegmentInfo {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]SegmentInfo, 0, len(d.segs))
	for _, s := range d.sortedSegments() {
		out = append(out, SegmentInfo{
			Start: time.Unix(0, s.start).UTC(), End: time.Unix(0, s.end).UTC(),
			Kind: s.idx.Kind(), Live: s.live, Tombstones: s.deadInIndex,
		})
	}
	return out
}

func (d *DetectionIndex) sortedSegments() []*segment {
	out := make([]*segment, 0, len(d.segs))
	for _, s := range d.segs {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *segment) int { return cmp.Compare(a.start, b.start) })
	return out
}

// Add stores one detection. Adding an id that is already stored, or that
// was removed, is a no-op: delivery is at-least-once, and a redelivery must
// neither duplicate a vector nor resurrect a deleted one. A detection older
// than the retention horizon returns ErrExpired.
func (d *DetectionIndex) Add(id int64, t time.Time, vec []float32) error {
	return d.AddBatch([]Detection{{ID: id, Time: t, Vector: vec}})
}

// AddBatch stores several detections with one native call per segment,
// which is what makes a rebuild of millions of vectors fast. Every vector
// is validated before anything is stored; detections older than the
// retention horizon are skipped and reported with ErrExpired after the
// others are stored.
func (d *DetectionIndex) AddBatch(batch []Detection) error {
	type pending struct {
		ids  []int64
		ts   []int64
		vecs []float32
	}
	norm := make([][]float32, len(batch))
	for i, det := range batch {
		v, err := normalize(d.cfg.Model, det.Vector)
		if err != nil {
			return fmt.Errorf("detection index add %d: %w", det.ID, err)
		}
		norm[i] = v
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("detection index add: %w", ErrClosed)
	}
	groups := map[int64]*pending{}
	inBatch := make(map[int64]bool, len(batch))
	// keys caches segmentKey per slot: a merged segment spans whole slots,
	// so one lookup answers for every detection of a slot.
	keys := map[int64]int64{}
	expired := 0
	for i, det := range batch {
		if _, ok := d.loc[det.ID]; ok {
			continue
		}
		if _, ok := d.dead[det.ID]; ok || inBatch[det.ID] {
			continue
		}
		t := det.Time.UnixNano()
		if t < d.horizon {
			expired++
			continue
		}
		slot := d.segStart(t)
		start, ok := keys[slot]
		if !ok {
			start = d.segmentKey(t)
			keys[slot] = start
		}
		inBatch[det.ID] = true
		g := groups[start]
		if g == nil {
			g = &pending{}
			groups[start] = g
		}
		g.ids = append(g.ids, det.ID)
		g.ts = append(g.ts, t)
		g.vecs = append(g.vecs, norm[i]...)
	}
	for start, g := range groups {
		seg := d.segs[start]
		if seg == nil {
			idx, err := faiss.NewFlat(d.cfg.Model.Dim)
			if err != nil {
				return fmt.Errorf("detection index add: new segment: %w", err)
			}
			// Segment searches run from several goroutines at once.
			idx.SetThreads(1)
			seg = &segment{start: start, end: start + d.dur, idx: idx, minT: maxInt64, maxT: minInt64}
			d.segs[start] = seg
		}
		// HNSW segments keep each vector's time as its stamp: a cut range
		// is then a filter of the graph walk (searchCut).
		if err := seg.idx.AddStamped(g.ids, g.ts, g.vecs); err != nil {
			return fmt.Errorf("detection index add to segment %s: %w", time.Unix(0, start).UTC(), err)
		}
		for i, id := range g.ids {
			d.loc[id] = loc{seg: start, t: g.ts[i]}
		}
		seg.ids = append(seg.ids, g.ids...)
		seg.times = append(seg.times, g.ts...)
		for _, t := range g.ts {
			seg.minT, seg.maxT = min(seg.minT, t), max(seg.maxT, t)
		}
		seg.live += len(g.ids)
		seg.version++
	}
	if expired > 0 {
		return fmt.Errorf("detection index add: %d detection(s): %w", expired, ErrExpired)
	}
	return nil
}

// Remove deletes detections and returns how many were live. Flat segments
// delete the vectors; HNSW segments keep them as tombstones that searches
// filter out until Compact rebuilds or retention drops the segment.
func (d *DetectionIndex) Remove(ids ...int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, fmt.Errorf("detection index remove: %w", ErrClosed)
	}
	return d.removeLocked(ids)
}

// removeLocked implements Remove; the caller holds d.mu.
func (d *DetectionIndex) removeLocked(ids []int64) (int, error) {
	flat, graph := map[int64][]int64{}, map[int64][]int64{}
	removed := 0
	for _, id := range ids {
		l, ok := d.loc[id]
		if !ok {
			continue
		}
		seg := d.segs[l.seg]
		delete(d.loc, id)
		d.dead[id] = l.seg
		seg.live--
		seg.version++
		removed++
		if seg.idx.Kind() == faiss.Flat {
			flat[l.seg] = append(flat[l.seg], id)
		} else {
			seg.deadInIndex++
			graph[l.seg] = append(graph[l.seg], id)
		}
	}
	for start, batch := range graph {
		// A tombstone's stamp is outside every range a cut search asks for;
		// a failure leaves it to toHits, which filters by the maps.
		if _, err := d.segs[start].idx.SetStamps(batch, removedStamps(len(batch))); err != nil {
			return removed, fmt.Errorf("detection index remove: %w", err)
		}
	}
	for start, batch := range flat {
		seg := d.segs[start]
		if _, err := seg.idx.Remove(batch...); err != nil {
			// The ids are already dead in the maps, so searches filter them
			// as tombstones; record them as such.
			seg.deadInIndex += len(batch)
			return removed, fmt.Errorf("detection index remove: %w", err)
		}
	}
	return removed, nil
}

// DropBefore applies retention: it drops every segment that ends at or
// before t, removes the detections older than t from the segment that
// straddles t (so nothing older than the retention period is ever returned
// or re-added), and returns how many segments and live vectors went. Later
// adds of detections older than t fail with ErrExpired.
func (d *DetectionIndex) DropBefore(t time.Time) (segmentsDropped, vectorsDropped int) {
	tn := t.UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, 0
	}
	for start, seg := range d.segs {
		if seg.end > tn {
			if start < tn {
				var old []int64
				for _, id := range seg.ids {
					if l, ok := d.loc[id]; ok && l.seg == start && l.t < tn {
						old = append(old, id)
					}
				}
				// A failed physical removal still tombstones the ids, so
				// the count stands.
				n, _ := d.removeLocked(old)
				vectorsDropped += n
			}
			continue
		}
		for _, id := range seg.ids {
			if l, ok := d.loc[id]; ok && l.seg == start {
				delete(d.loc, id)
			}
			if s, ok := d.dead[id]; ok && s == start {
				delete(d.dead, id)
			}
		}
		segmentsDropped++
		vectorsDropped += seg.live
		seg.idx.Close()
		delete(d.segs, start)
	}
	d.horizon = max(d.horizon, tn)
	return segmentsDropped, vectorsDropped
}

// Search returns the k detections most similar to q whose timestamps lie
// in [from, to], best first. Only segments overlapping the range are
// searched.
func (d *DetectionIndex) Search(q []float32, from, to time.Time, k int) ([]Hit, SearchStats, error) {
	if k <= 0 {
		return nil, SearchStats{}, fmt.Errorf("detection index search: k must be positive, got %d", k)
	}
	if to.Before(from) {
		return nil, SearchStats{}, fmt.Errorf("detection index search: range end %v before start %v", to, from)
	}
	qn, err := normalize(d.cfg.Model, q)
	if err != nil {
		return nil, SearchStats{}, fmt.Errorf("detection index search: %w", err)
	}
	fromN, toN := from.UnixNano(), to.UnixNano()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, SearchStats{}, fmt.Errorf("detection index search: %w", ErrClosed)
	}
	var segs []*segment
	for _, s := range d.segs {
		if s.start <= toN && s.end > fromN {
			segs = append(segs, s)
		}
	}
	slices.SortFunc(segs, func(a, b *segment) int { return cmp.Compare(a.start, b.start) })
	hits := make([][]Hit, len(segs))
	scanned := make([]int, len(segs))
	errs := make([]error, len(segs))
	run := func(i int) { hits[i], scanned[i], errs[i] = d.searchSegment(segs[i], qn, fromN, toN, k) }
	if workers := min(d.cfg.SearchWorkers, len(segs)); workers <= 1 {
		for i := range segs {
			run(i)
		}
	} else {
		// Workers pull segments from a shared counter: segments differ
		// widely in size, so static partitioning would leave cores idle.
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= len(segs) {
						return
					}
					run(i)
				}
			})
		}
		wg.Wait()
	}
	stats := SearchStats{SegmentsSearched: len(segs)}
	var all []Hit
	for i := range segs {
		if errs[i] != nil {
			return nil, SearchStats{}, fmt.Errorf("detection index search segment %s: %w",
				time.Unix(0, segs[i].start).UTC(), errs[i])
		}
		stats.VectorsSearched += scanned[i]
		all = append(all, hits[i]...)
	}
	slices.SortFunc(all, func(a, b Hit) int {
		if c := cmp.Compare(b.Similarity, a.Similarity); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return all[:min(k, len(all))], stats, nil
}

// searchSegment returns the segment's top k live hits in [fromN, toN] and
// how many vectors it compared. The caller holds d.mu for reading.
func (d *DetectionIndex) searchSegment(seg *segment, q []float32, fromN, toN int64, k int) ([]Hit, int, error) {
	n, err := seg.idx.Count()
	if err != nil {
		return nil, 0, err
	}
	if n == 0 || seg.live == 0 {
		return nil, 0, nil
	}
	// Every live detection is at or after the retention horizon, so a range
	// starting before it starts, for this purpose, there.
	lo := max(fromN, d.horizon)
	covered := max(seg.minT, d.horizon) >= fromN && seg.maxT <= toN
	hnsw := seg.idx.Kind() == faiss.HNSW
	if covered && !hnsw {
		return d.searchWidening(seg, n, k, k+seg.deadInIndex, func(fetch int) ([]faiss.Neighbor, error) {
			return seg.idx.Search(q, fetch)
		})
	}
	eligible, scanned := seg.live, n
	if !covered {
		// Counting first, removed ids included: the graph walk needs only
		// the share, and a large segment's candidate list would be a
		// per-query allocation of its whole size.
		eligible = 0
		for _, t := range seg.times {
			if t >= lo && t <= toN {
				eligible++
			}
		}
		scanned = eligible
	}
	if eligible == 0 {
		return nil, 0, nil
	}
	if hnsw && eligible*filteredGraphMinShare >= n {
		// The walk skips tombstones and out-of-range detections by their
		// stamps (toHits still checks the maps), so k results are enough
		// however many removed vectors a merged graph still holds; efSearch
		// widens by the inverse of the eligible share to keep recall.
		ef := d.cfg.HNSW.EfSearch * n / eligible
		hits, _, err := d.searchWidening(seg, eligible, k, k, func(fetch int) ([]faiss.Neighbor, error) {
			return seg.idx.SearchHNSWRange(q, lo, toN, fetch, max(ef, fetch))
		})
		return hits, scanned, err
	}
	// Exact among the candidates: one dot product per eligible vector and,
	// unlike over-fetching then filtering, never a second pass when the
	// range holds few of them. Only in-range ids pay for the liveness
	// lookup. A covered segment gets here only as a graph holding more
	// tombstones than live vectors, until Compact rebuilds it.
	live := make([]int64, 0, eligible)
	for i, t := range seg.times {
		if t < lo || t > toN {
			continue
		}
		if l, ok := d.loc[seg.ids[i]]; ok && l.seg == seg.start {
			live = append(live, seg.ids[i])
		}
	}
	if len(live) == 0 {
		return nil, 0, nil
	}
	res, err := seg.idx.SearchIDs(q, live, k)
	if err != nil {
		return nil, 0, err
	}
	return d.toHits(seg, res, k), len(live), nil
}

// filteredGraphMinShare is the in-range share of an HNSW segment from
// which it is searched through its graph with a stamp filter instead of
// exactly: below it the exact scan over the few candidates is cheaper than
// the walk, and the walk's recall falls (it crosses nodes it may not
// return). At a quarter eligible the walk uses 4x efSearch (recall@10 0.99
// in TestSearchHNSWRange and TestDetectionCutHNSWFiltered).
const filteredGraphMinShare = 4

// removedStamps returns n tombstone stamps.
func removedStamps(n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = faiss.Removed
	}
	return s
}

// searchWidening runs search for fetch results and, if that came back
// short of k live hits, widens and retries up to limit results. It returns
// the hits and limit.
func (d *DetectionIndex) searchWidening(seg *segment, limit, k, fetch int, search func(fetch int) ([]faiss.Neighbor, error)) ([]Hit, int, error) {
	fetch = min(fetch, limit)
	for {
		res, err := search(fetch)
		if err != nil {
			return nil, 0, err
		}
		hits := d.toHits(seg, res, k)
		if len(hits) >= k || fetch >= limit || seg.idx.Kind() == faiss.Flat && seg.deadInIndex == 0 {
			return hits, limit, nil
		}
		fetch = min(2*fetch, limit)
	}
}

// toHits keeps the live results of seg, at most k.
func (d *DetectionIndex) toHits(seg *segment, res []faiss.Neighbor, k int) []Hit {
	hits := make([]Hit, 0, min(k, len(res)))
	for _, r := range res {
		l, ok := d.loc[r.ID]
		if !ok || l.seg != seg.start {
			continue
		}
		hits = append(hits, Hit{ID: r.ID, Similarity: r.Score, Time: time.Unix(0, l.t).UTC()})
		if len(hits) == k {
			break
		}
	}
	return hits
}

// CompactDue applies the production compaction policy at time now: it is
// what the replica runs on every tick and what the benchmarks build with,
// so the two cannot drift apart. First it merges consecutive sealed
// segments (ending at or before the start of the segment now falls in)
// into HNSW segments of at most MergeMaxVectors live vectors (mergeGroups
// says when a merge is worth its build). Then every segment up to the one
// now falls in, sealed or still receiving detections, becomes HNSW once it
// holds HNSWMinVectors; later detections of the open segment go into its
// graph one by one. A 7-day query then walks about two graphs, where eight
// daily ones cost it four times as much (docs/bench-vector-index.md).
//
// Builds run without blocking searches or adds. Once ctx is done no further
// build starts; one under way runs to its end (a merge of 260k vectors
// takes about 13 minutes at 1 thread).
func (d *DetectionIndex) CompactDue(ctx context.Context, now time.Time) (int, error) {
	merged, err := d.merge(ctx, d.segStart(now.UnixNano()))
	if err != nil {
		return merged, err
	}
	n, err := d.Compact(ctx, now.Add(d.cfg.SegmentDuration))
	return merged + n, err
}

// merge rebuilds each group of consecutive segments ending at or before
// sealedBefore (Unix ns) that mergeGroups picks as one HNSW segment, and
// returns how many segments it built.
func (d *DetectionIndex) merge(ctx context.Context, sealedBefore int64) (int, error) {
	if d.cfg.HNSWMinVectors < 0 || d.cfg.MergeMaxVectors < 0 {
		return 0, nil
	}
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return 0, fmt.Errorf("detection index merge: %w", ErrClosed)
	}
	var sealed []*segment
	for _, s := range d.sortedSegments() {
		if s.end <= sealedBefore {
			sealed = append(sealed, s)
		}
	}
	sizes := make([]int, len(sealed))
	versions := make([]uint64, len(sealed))
	for i, s := range sealed {
		sizes[i], versions[i] = s.live, s.version
	}
	d.mu.RUnlock()
	done := 0
	for _, g := range mergeGroups(sizes, d.cfg.MergeMaxVectors, d.cfg.HNSWMinVectors) {
		ok, err := d.rebuild(ctx, sealed[g[0]:g[1]], versions[g[0]:g[1]])
		if err != nil {
			return done, fmt.Errorf("detection index merge segments %s..%s: %w",
				time.Unix(0, sealed[g[0]].start).UTC(), time.Unix(0, sealed[g[1]-1].end).UTC(), err)
		}
		if ok {
			done++
		}
	}
	return done, nil
}

// mergeGroups picks the merges among consecutive segments of sizes (live
// vectors, oldest first) as [from, to) ranges. Groups are taken newest
// first, each as long as its total stays within maxVectors, so the oldest
// data, the next to expire, ends up in the smallest group. A group is
// merged only when it has several segments and all but its largest hold at
// least minAdded vectors: every rebuild then takes in that much new data,
// which bounds how often one vector is rebuilt, instead of rebuilding a
// large graph for every small segment that seals.
func mergeGroups(sizes []int, maxVectors, minAdded int) [][2]int {
	var out [][2]int
	for hi := len(sizes); hi > 0; {
		lo, total, largest := hi-1, sizes[hi-1], sizes[hi-1]
		for lo > 0 && total+sizes[lo-1] <= maxVectors {
			lo--
			total += sizes[lo]
			largest = max(largest, sizes[lo])
		}
		if hi-lo >= 2 && total-largest >= minAdded {
			out = append(out, [2]int{lo, hi})
		}
		hi = lo
	}
	return out
}

// Compact rebuilds segments ending at or before sealedBefore as HNSW when
// they hold at least HNSWMinVectors live vectors, and rebuilds HNSW
// segments whose tombstones reach a quarter of their live vectors. It
// returns how many segments it rebuilt. Builds run without blocking
// searches or adds; detections added to a segment during its build are
// copied into the new index before the swap, so passing a time after the
// current segment's end converts the segment still receiving detections
// too (useful with long segments). Run it from a background job, e.g. a
// few minutes past every segment boundary; no build starts once ctx is done.
func (d *DetectionIndex) Compact(ctx context.Context, sealedBefore time.Time) (int, error) {
	if d.cfg.HNSWMinVectors < 0 {
		return 0, nil
	}
	limit := sealedBefore.UnixNano()
	type job struct {
		seg     *segment
		version uint64
	}
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return 0, fmt.Errorf("detection index compact: %w", ErrClosed)
	}
	var jobs []job
	for _, s := range d.sortedSegments() {
		if s.end > limit {
			continue
		}
		flatBig := s.idx.Kind() == faiss.Flat && s.live >= d.cfg.HNSWMinVectors
		hnswDirty := s.idx.Kind() == faiss.HNSW && s.deadInIndex > 0 && 4*s.deadInIndex >= s.live
		if flatBig || hnswDirty {
			jobs = append(jobs, job{s, s.version})
		}
	}
	d.mu.RUnlock()
	done := 0
	for _, j := range jobs {
		ok, err := d.rebuild(ctx, []*segment{j.seg}, []uint64{j.version})
		if err != nil {
			return done, fmt.Errorf("detection index compact segment %s: %w", time.Unix(0, j.seg.start).UTC(), err)
		}
		if ok {
			done++
		}
	}
	return done, nil
}

// rebuild replaces srcs, consecutive segments oldest first, by one HNSW
// segment spanning them, holding their live vectors. It reports false,
// changing nothing, when a source is gone or changed before the build
// began, or when a segment appeared inside the span during the build.
// The build runs without holding d.mu; detections added to a source during
// it are copied in and those removed become tombstones before the swap.
func (d *DetectionIndex) rebuild(ctx context.Context, srcs []*segment, versions []uint64) (bool, error) {
	dim := d.cfg.Model.Dim
	d.mu.RLock()
	if d.closed || !d.holds(srcs, versions) {
		d.mu.RUnlock()
		return false, nil
	}
	exported := make([]int, len(srcs))
	total := 0
	for _, s := range srcs {
		total += s.live
	}
	ids, stamps, vecs := make([]int64, 0, total), make([]int64, 0, total), make([]float32, 0, total*dim)
	for i, s := range srcs {
		sids, svecs, err := s.idx.Export()
		if err != nil {
			d.mu.RUnlock()
			return false, err
		}
		exported[i] = len(s.ids)
		// Keep only live vectors: this is also how tombstones disappear.
		for r, id := range sids {
			if l, ok := d.loc[id]; ok && l.seg == s.start {
				ids, stamps = append(ids, id), append(stamps, l.t)
				vecs = append(vecs, svecs[r*dim:(r+1)*dim]...)
			}
		}
	}
	d.mu.RUnlock()

	h, err := faiss.NewHNSW(dim, d.cfg.HNSW)
	if err != nil {
		return false, err
	}
	// One call: FAISS inserts a batch's nodes highest level first, and the
	// same 260k vectors added in chunks of 4096 (to stop between them)
	// gave a 7-day query recall@10 0.9365 instead of 0.9505 (efSearch 64).
	// So a build once begun runs to its end; ctx is checked before it.
	if err := ctx.Err(); err != nil {
		h.Close()
		return false, err
	}
	h.SetThreads(d.cfg.BuildThreads)
	if err := h.AddStamped(ids, stamps, vecs); err != nil {
		h.Close()
		return false, err
	}
	h.SetThreads(1)
	if d.afterBuild != nil {
		d.afterBuild()
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || !d.holds(srcs, nil) || d.overlapsOthers(srcs) {
		h.Close()
		return false, nil
	}
	if err := d.catchUp(h, srcs, versions, exported, ids); err != nil {
		h.Close()
		return false, err
	}
	merged := d.mergedSegment(srcs, h)
	n, err := h.Count()
	if err != nil || n < merged.live {
		h.Close()
		return false, fmt.Errorf("rebuilt segment holds %d vectors for %d live (%v)", n, merged.live, err)
	}
	merged.deadInIndex = n - merged.live
	var closeErr error
	for _, s := range srcs {
		delete(d.segs, s.start)
		closeErr = errors.Join(closeErr, s.idx.Close())
	}
	d.segs[merged.start] = merged
	d.relocate(srcs, merged)
	return true, closeErr
}

// holds tells whether every source is still in the index and, if versions
// is not nil, unchanged. The caller holds d.mu.
func (d *DetectionIndex) holds(srcs []*segment, versions []uint64) bool {
	for i, s := range srcs {
		if d.segs[s.start] != s || versions != nil && s.version != versions[i] {
			return false
		}
	}
	return true
}

// overlapsOthers tells whether a segment other than srcs lies within their
// span: an add into a gap between them during a merge's build creates one.
// The caller holds d.mu.
func (d *DetectionIndex) overlapsOthers(srcs []*segment) bool {
	from, to := srcs[0].start, srcs[len(srcs)-1].end
	for _, s := range d.segs {
		if s.start < to && s.end > from && !slices.Contains(srcs, s) {
			return true
		}
	}
	return false
}

// catchUp applies to h, built from the sources at versions, what changed
// in them since: detections added are copied in, and those removed (ids
// was built from) become tombstones. The caller holds d.mu.
func (d *DetectionIndex) catchUp(h *faiss.Index, srcs []*segment, versions []uint64, exported []int, ids []int64) error {
	changed := false
	for i, s := range srcs {
		if s.version == versions[i] {
			continue
		}
		changed = true
		var late, lateT []int64
		for _, id := range s.ids[exported[i]:] {
			if l, ok := d.loc[id]; ok && l.seg == s.start {
				late, lateT = append(late, id), append(lateT, l.t)
			}
		}
		if len(late) == 0 {
			continue
		}
		lv, err := s.idx.Reconstruct(late)
		if err != nil {
			return err
		}
		if err := h.AddStamped(late, lateT, lv); err != nil {
			return err
		}
	}
	if !changed {
		return nil
	}
	var gone []int64
	for _, id := range ids {
		if _, ok := d.loc[id]; !ok {
			gone = append(gone, id)
		}
	}
	_, err := h.SetStamps(gone, removedStamps(len(gone)))
	return err
}

// mergedSegment returns the segment over h that replaces srcs: their span,
// their live detections and the removed ones still needed to stop a
// redelivery from bringing them back. Removed ids older than the retention
// horizon are left out (AddBatch refuses their times anyway), so retention
// frees them from a merged segment that outlives them. The caller holds
// d.mu.
func (d *DetectionIndex) mergedSegment(srcs []*segment, h *faiss.Index) *segment {
	m := &segment{start: srcs[0].start, end: srcs[len(srcs)-1].end, idx: h, minT: maxInt64, maxT: minInt64}
	for _, s := range srcs {
		m.version = max(m.version, s.version+1)
		m.live += s.live
		for i, id := range s.ids {
			t := s.times[i]
			if l, ok := d.loc[id]; ok && l.seg == s.start {
				m.minT, m.maxT = min(m.minT, t), max(m.maxT, t)
			} else if ds, ok := d.dead[id]; !ok || ds != s.start || t < d.horizon {
				continue
			}
			m.ids, m.times = append(m.ids, id), append(m.times, t)
		}
	}
	return m
}

// relocate points the id maps of srcs' detections at merged, and forgets
// the removed ids merged left out. The caller holds d.mu.
func (d *DetectionIndex) relocate(srcs []*segment, merged *segment) {
	for _, s := range srcs {
		for _, id := range s.ids {
			if l, ok := d.loc[id]; ok && l.seg == s.start {
				d.loc[id] = loc{seg: merged.start, t: l.t}
			} else if ds, ok := d.dead[id]; ok && ds == s.start {
				delete(d.dead, id)
			}
		}
	}
	for _, id := range merged.ids {
		if _, ok := d.loc[id]; !ok {
			d.dead[id] = merged.start
		}
	}
}

// Close frees every segment. It is idempotent.
func (d *DetectionIndex) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	for _, s := range d.segs {
		s.idx.Close()
	}
	d.segs = nil
	return nil
}

const (
	detectionSnapshotKind = "detection"
	// detectionMetaMagic names the metadata layout: version 2 added each
	// segment's end and removed ids' times (merged segments). A version 1
	// file fails to load as corrupt, and the replica rebuilds.
	detectionMetaMagic = "POIDET02"
)

// detectionExtra is the detection-specific part of the manifest.
type detectionExtra struct {
	SegmentNanos int64 `json:"segment_ns"`
	Horizon      int64 `json:"horizon_ns"`
}

// Snapshot writes the index to dir with the position it reflects (every
// update applied before the call). Segments unchanged since the last
// snapshot into the same directory keep their files, so periodic snapshots
// rewrite only the segments that changed, in practice the current hour.
// Updates wait while it writes; searches do not.
func (d *DetectionIndex) Snapshot(dir string, position uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("detection snapshot: %w", err)
	}
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return fmt.Errorf("detection snapshot: %w", ErrClosed)
	}
	gen := newGeneration()
	segs := d.sortedSegments()
	entries := make([]indexEntry, 0, len(segs))
	for _, s := range segs {
		if s.snapDir == dir && s.snapVersion == s.version && s.snapFile.Name != "" {
			if st, err := os.Stat(filepath.Join(dir, s.snapFile.Name)); err == nil && st.Size() == s.snapFile.Size {
				entries = append(entries, indexEntry{Key: s.start, Version: s.version, File: s.snapFile})
				continue
			}
		}
		name := snapshotPrefix + "seg-" + strconv.FormatInt(s.start, 10) + "-" + gen + ".faiss"
		if err := s.idx.Write(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("detection snapshot: %w", err)
		}
		fe, err := sealFile(dir, name)
		if err != nil {
			return fmt.Errorf("detection snapshot: %w", err)
		}
		entries = append(entries, indexEntry{Key: s.start, Version: s.version, File: fe})
	}
	meta, err := writeGoFile(dir, snapshotPrefix+"det-"+gen+".meta", func(w io.Writer) error {
		if _, err := io.WriteString(w, detectionMetaMagic); err != nil {
			return err
		}
		bw := &binWriter{w: w}
		bw.u64(uint64(len(segs)))
		for _, s := range segs {
			bw.i64(s.start)
			bw.i64(s.end)
			var live, dead []int
			for i, id := range s.ids {
				if l, ok := d.loc[id]; ok && l.seg == s.start {
					live = append(live, i)
				} else if st, ok := d.dead[id]; ok && st == s.start {
					dead = append(dead, i)
				}
			}
			for _, list := range [][]int{live, dead} {
				bw.u64(uint64(len(list)))
				for _, i := range list {
					bw.i64(s.ids[i])
					bw.i64(s.times[i])
				}
			}
		}
		return bw.err
	})
	if err != nil {
		return fmt.Errorf("detection snapshot: %w", err)
	}
	extra, err := json.Marshal(detectionExtra{SegmentNanos: d.dur, Horizon: d.horizon})
	if err != nil {
		return fmt.Errorf("detection snapshot: %w", err)
	}
	m := manifest{
		Format: manifestFormat, Kind: detectionSnapshotKind, Model: d.cfg.Model, Position: position,
		Written: time.Now().UTC(), Meta: meta, Indexes: entries, Extra: extra,
	}
	if err := commitManifest(dir, m); err != nil {
		return fmt.Errorf("detection snapshot: %w", err)
	}
	for i, s := range segs {
		s.snapDir, s.snapVersion, s.snapFile = dir, entries[i].Version, entries[i].File
	}
	return nil
}

// LoadDetectionIndex loads the snapshot in dir and returns the index with
// the position it reflects. Errors wrap ErrNoSnapshot, ErrCorruptSnapshot
// or ErrModelMismatch (or an I/O error); in every case the caller rebuilds
// from the store or a stream replay.
func LoadDetectionIndex(dir string, cfg DetectionConfig) (*DetectionIndex, uint64, error) {
	d, err := NewDetectionIndex(cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("load detection index: %w", err)
	}
	m, err := readManifest(dir, detectionSnapshotKind, d.cfg.Model)
	if err != nil {
		return nil, 0, fmt.Errorf("load detection index: %w", err)
	}
	var extra detectionExtra
	if err := json.Unmarshal(m.Extra, &extra); err != nil {
		return nil, 0, fmt.Errorf("load detection index: %w: extra: %v", ErrCorruptSnapshot, err)
	}
	if extra.SegmentNanos != d.dur {
		// Segment boundaries are part of the data layout; a snapshot with
		// other boundaries would misplace every time-range search.
		return nil, 0, fmt.Errorf("load detection index: %w: segment duration %v, configured %v",
			ErrCorruptSnapshot, time.Duration(extra.SegmentNanos), time.Duration(d.dur))
	}
	d.horizon = extra.Horizon
	if err := verifyFile(dir, m.Meta); err != nil {
		return nil, 0, fmt.Errorf("load detection index: %w", err)
	}
	for _, e := range m.Indexes {
		if err := verifyFile(dir, e.File); err != nil {
			return nil, 0, fmt.Errorf("load detection index: %w", err)
		}
	}
	if err := d.loadSegments(dir, m); err != nil {
		d.Close()
		return nil, 0, fmt.Errorf("load detection index: %w", err)
	}
	return d, m.Position, nil
}

func (d *DetectionIndex) loadSegments(dir string, m manifest) error {
	for _, e := range m.Indexes {
		if _, dup := d.segs[e.Key]; dup || d.segStart(e.Key) != e.Key {
			return fmt.Errorf("%w: bad segment key %d", ErrCorruptSnapshot, e.Key)
		}
		idx, err := faiss.Read(filepath.Join(dir, e.File.Name))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
		}
		idx.SetThreads(1)
		d.segs[e.Key] = &segment{start: e.Key, idx: idx, version: e.Version, minT: maxInt64, maxT: minInt64,
			snapDir: dir, snapVersion: e.Version, snapFile: e.File}
		if idx.Dim() != d.cfg.Model.Dim {
			return fmt.Errorf("%w: segment %d has dimension %d", ErrCorruptSnapshot, e.Key, idx.Dim())
		}
		if idx.Kind() == faiss.HNSW {
			// efSearch is configuration, not data: apply the current one.
			if err := idx.SetEfSearch(d.cfg.HNSW.EfSearch); err != nil {
				return err
			}
		}
	}
	f, br, err := openMeta(dir, m.Meta, detectionMetaMagic)
	if err != nil {
		return err
	}
	defer f.Close()
	nseg := br.count(1 << 32)
	if br.err == nil && nseg != len(d.segs) {
		return fmt.Errorf("%w: metadata lists %d segments, manifest %d", ErrCorruptSnapshot, nseg, len(d.segs))
	}
	for range nseg {
		start, end := br.i64(), br.i64()
		seg := d.segs[start]
		if br.err != nil {
			break
		}
		if seg == nil || seg.end != 0 || end <= start || d.segStart(end) != end {
			return fmt.Errorf("%w: metadata for unknown, repeated or misaligned segment %d..%d", ErrCorruptSnapshot, start, end)
		}
		seg.end = end
		if err := d.loadEntries(br, seg); err != nil {
			return err
		}
		if br.err != nil {
			break
		}
	}
	if br.err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorruptSnapshot, m.Meta.Name, br.err)
	}
	segs := d.sortedSegments()
	for i := 1; i < len(segs); i++ {
		if segs[i-1].end > segs[i].start {
			return fmt.Errorf("%w: segments overlap at %d", ErrCorruptSnapshot, segs[i].start)
		}
	}
	return nil
}

// loadEntries reads one segment's live and removed detections from the
// metadata and checks them against its index file.
func (d *DetectionIndex) loadEntries(br *binReader, seg *segment) error {
	var stamps []int64
	counts := [2]int{}
	for pass := range counts {
		counts[pass] = br.count(1 << 32)
		for range counts[pass] {
			id, t := br.i64(), br.i64()
			if br.err != nil {
				return nil
			}
			_, isLive := d.loc[id]
			_, isDead := d.dead[id]
			if isLive || isDead || t < seg.start || t >= seg.end {
				return fmt.Errorf("%w: bad entry %d in segment %d", ErrCorruptSnapshot, id, seg.start)
			}
			seg.ids = append(seg.ids, id)
			seg.times = append(seg.times, t)
			if pass == 0 {
				d.loc[id] = loc{seg: seg.start, t: t}
				seg.minT, seg.maxT = min(seg.minT, t), max(seg.maxT, t)
				stamps = append(stamps, t)
			} else {
				d.dead[id] = seg.start
				stamps = append(stamps, faiss.Removed)
			}
		}
	}
	nlive, ndead := counts[0], counts[1]
	seg.live = nlive
	n, err := seg.idx.Count()
	if err != nil {
		return err
	}
	if n < nlive || n > nlive+ndead {
		return fmt.Errorf("%w: segment %d holds %d vectors for %d live, %d removed",
			ErrCorruptSnapshot, seg.start, n, nlive, ndead)
	}
	seg.deadInIndex = n - nlive
	if seg.idx.Kind() == faiss.HNSW {
		// FAISS files do not keep stamps: the live ones' times, and
		// faiss.Removed (a tombstone) for the removed ones.
		if _, err := seg.idx.SetStamps(seg.ids, stamps); err != nil {
			return err
		}
	}
	return nil
}
