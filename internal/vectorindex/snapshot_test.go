package vectorindex

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"poi/internal/faiss"
)

// snapFiles returns the data files of the snapshot in dir by suffix.
func snapFiles(t *testing.T, dir, suffix string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, snapshotPrefix+"*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x55
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// copyDir makes an independent copy of a snapshot directory, so each
// damage case starts from a good snapshot.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// damages are the ways a snapshot directory can go bad; each must give
// the named error, never a panic or a half-loaded index.
func damages(t *testing.T) map[string]struct {
	apply func(dir string)
	want  error
} {
	return map[string]struct {
		apply func(dir string)
		want  error
	}{
		"missing manifest":    {func(dir string) { os.Remove(filepath.Join(dir, manifestFile)) }, ErrNoSnapshot},
		"corrupt manifest":    {func(dir string) { flipByte(t, filepath.Join(dir, manifestFile), -3) }, ErrCorruptSnapshot},
		"truncated manifest":  {func(dir string) { truncate(t, filepath.Join(dir, manifestFile)) }, ErrCorruptSnapshot},
		"corrupt index file":  {func(dir string) { flipByte(t, snapFiles(t, dir, ".faiss")[0], 200) }, ErrCorruptSnapshot},
		"truncated index":     {func(dir string) { truncate(t, snapFiles(t, dir, ".faiss")[0]) }, ErrCorruptSnapshot},
		"missing index file":  {func(dir string) { os.Remove(snapFiles(t, dir, ".faiss")[0]) }, ErrCorruptSnapshot},
		"corrupt metadata":    {func(dir string) { flipByte(t, snapFiles(t, dir, ".meta")[0], 20) }, ErrCorruptSnapshot},
		"truncated metadata":  {func(dir string) { truncate(t, snapFiles(t, dir, ".meta")[0]) }, ErrCorruptSnapshot},
		"manifest is garbage": {func(dir string) { os.WriteFile(filepath.Join(dir, manifestFile), []byte("{}"), 0o644) }, ErrCorruptSnapshot},
	}
}

func TestPOISnapshotRoundTrip(t *testing.T) {
	f := newFaceLike(20, testModel.Dim, 100, 0.8)
	p := mustPOI(t, testModel)
	all := poiFixture(t, p, f, 120)
	if _, err := p.Remove("poi-007"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := p.Snapshot(dir, 4242); err != nil {
		t.Fatal(err)
	}
	// A second snapshot replaces the first and leaves no stale files.
	if err := p.Snapshot(dir, 4243); err != nil {
		t.Fatal(err)
	}
	if n := len(snapFiles(t, dir, ".faiss")) + len(snapFiles(t, dir, ".meta")); n != 2 {
		t.Fatalf("%d data files after two snapshots, want 2", n)
	}
	back, pos, err := LoadPOIIndex(dir, testModel)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if pos != 4243 || back.Count() != p.Count() || back.POICount() != p.POICount() {
		t.Fatalf("loaded pos %d count %d/%d, want 4243 %d/%d", pos, back.Count(), back.POICount(), p.Count(), p.POICount())
	}
	var kept []POIEntry
	for _, e := range all {
		if e.POIID != "poi-007" {
			kept = append(kept, e)
		}
	}
	for range 10 {
		q := f.any()
		hits, err := back.Search(q, 15)
		if err != nil {
			t.Fatal(err)
		}
		keys, sims := hitKeys(hits)
		checkRanking(t, keys, sims, bestPerPOI(kept, q, 15))
	}
	// The loaded index keeps working: new ids do not collide, duplicates
	// are still recognised.
	if err := back.Add("poi-001", []Ref{{EmbeddingID: "poi-001-e0", Vector: all[1].Vector}}); err != nil {
		t.Fatal(err)
	}
	if err := back.Add("fresh", []Ref{{EmbeddingID: "fresh-0", Vector: f.any()}}); err != nil {
		t.Fatal(err)
	}
	if back.Count() != p.Count()+1 {
		t.Fatalf("count after adds to loaded index %d", back.Count())
	}

	for name, dmg := range damages(t) {
		t.Run(name, func(t *testing.T) {
			d := copyDir(t, dir)
			dmg.apply(d)
			got, _, err := LoadPOIIndex(d, testModel)
			if !errors.Is(err, dmg.want) {
				if got != nil {
					got.Close()
				}
				t.Fatalf("got %v, want %v", err, dmg.want)
			}
			t.Log(err)
		})
	}
	if _, _, err := LoadPOIIndex(dir, Model{Name: "other-model", Dim: testModel.Dim}); !errors.Is(err, ErrModelMismatch) {
		t.Fatalf("other model name: %v", err)
	}
	if _, _, err := LoadPOIIndex(dir, Model{Name: testModel.Name, Dim: 128}); !errors.Is(err, ErrModelMismatch) {
		t.Fatalf("other dimension: %v", err)
	}
	if _, _, err := LoadPOIIndex(filepath.Join(dir, "nope"), testModel); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("missing directory: %v", err)
	}
	// A detection snapshot directory is not a POI snapshot.
	det := mustDet(t, DetectionConfig{})
	ddir := t.TempDir()
	if err := det.Snapshot(ddir, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadPOIIndex(ddir, testModel); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("detection snapshot loaded as POI: %v", err)
	}
}

func TestDetectionSnapshotRoundTrip(t *testing.T) {
	f := newFaceLike(21, testModel.Dim, 100, 0.8)
	cfg := DetectionConfig{HNSWMinVectors: 300}
	d := mustDet(t, cfg)
	refs := fillDet(t, d, f, 2400, 6*time.Hour)
	if _, err := d.Compact(t.Context(), t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	gone := map[int64]bool{}
	var rm []int64
	for i := 0; i < len(refs); i += 37 {
		gone[refs[i].id] = true
		rm = append(rm, refs[i].id)
	}
	if _, err := d.Remove(rm...); err != nil {
		t.Fatal(err)
	}
	d.DropBefore(t0.Add(time.Hour))
	var kept []detRef
	for _, r := range refs {
		if !r.t.Before(t0.Add(time.Hour)) {
			kept = append(kept, r)
		}
	}
	dir := t.TempDir()
	if err := d.Snapshot(dir, 99); err != nil {
		t.Fatal(err)
	}
	first := snapFiles(t, dir, ".faiss")
	if len(first) != 5 {
		t.Fatalf("%d segment files, want 5", len(first))
	}
	// Change only the newest segment: the next snapshot rewrites it alone.
	if err := d.Add(50000, t0.Add(5*time.Hour+time.Minute), f.any()); err != nil {
		t.Fatal(err)
	}
	if err := d.Snapshot(dir, 100); err != nil {
		t.Fatal(err)
	}
	second := snapFiles(t, dir, ".faiss")
	same := 0
	for _, n := range second {
		if slices.Contains(first, n) {
			same++
		}
	}
	if len(second) != 5 || same != 4 {
		t.Fatalf("incremental snapshot kept %d of %d files, want 4 of 5", same, len(second))
	}

	back, pos, err := LoadDetectionIndex(dir, DetectionConfig{Model: testModel, HNSWMinVectors: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if pos != 100 || back.Count() != d.Count() {
		t.Fatalf("loaded pos %d count %d, want 100 %d", pos, back.Count(), d.Count())
	}
	if !slices.Equal(back.Segments(), d.Segments()) {
		t.Fatalf("segments differ:\n%v\n%v", back.Segments(), d.Segments())
	}
	kinds := map[faiss.Kind]int{}
	for _, s := range back.Segments() {
		kinds[s.Kind]++
	}
	if kinds[faiss.HNSW] != 2 || kinds[faiss.Flat] != 3 {
		t.Fatalf("segment kinds after load %v", kinds)
	}
	for range 5 {
		q := f.any()
		a, _, err := d.Search(q, t0, t0.Add(6*time.Hour), 20)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := back.Search(q, t0, t0.Add(6*time.Hour), 20)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Fatalf("results differ after load:\n%v\n%v", a, b)
		}
		for _, h := range b {
			if gone[h.ID] {
				t.Fatalf("removed id %d back after load", h.ID)
			}
		}
	}
	// Exact on a cut range, against brute force (the range ends before the
	// detection added after the first snapshot).
	checkDet(t, back, kept, gone, f.any(), t0.Add(70*time.Minute), t0.Add(4*time.Hour+10*time.Minute), 10)
	// Tombstones and the retention horizon survive the load.
	for i := 0; i < len(refs); i += 37 {
		if r := refs[i]; !r.t.Before(t0.Add(time.Hour)) { // a redelivery of a removed detection
			if err := back.Add(r.id, r.t, r.vec); err != nil {
				t.Fatal(err)
			}
		}
	}
	if back.Count() != d.Count() {
		t.Fatal("removed ids re-added after load")
	}
	if err := back.Add(60000, t0.Add(10*time.Minute), f.any()); !errors.Is(err, ErrExpired) {
		t.Fatalf("horizon lost: %v", err)
	}

	for name, dmg := range damages(t) {
		t.Run(name, func(t *testing.T) {
			c := copyDir(t, dir)
			dmg.apply(c)
			got, _, err := LoadDetectionIndex(c, DetectionConfig{Model: testModel})
			if !errors.Is(err, dmg.want) {
				if got != nil {
					got.Close()
				}
				t.Fatalf("got %v, want %v", err, dmg.want)
			}
		})
	}
	if _, _, err := LoadDetectionIndex(dir, DetectionConfig{Model: Model{Name: "other", Dim: testModel.Dim}}); !errors.Is(err, ErrModelMismatch) {
		t.Fatalf("other model: %v", err)
	}
	if _, _, err := LoadDetectionIndex(dir, DetectionConfig{Model: testModel, SegmentDuration: 30 * time.Minute}); !errors.Is(err, ErrCorruptSnapshot) || !strings.Contains(err.Error(), "segment duration") {
		t.Fatalf("other segment duration: %v", err)
	}
	// Snapshotting into a directory that cannot be created is an error.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Snapshot(filepath.Join(blocker, "sub"), 1); err == nil {
		t.Fatal("snapshot under a file succeeded")
	}
}
