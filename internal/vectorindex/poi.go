package vectorindex

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"poi/internal/faiss"
)

// Ref is one reference embedding of a POI (one enrolled photo).
type Ref struct {
	EmbeddingID string
	Vector      []float32
}

// POIEntry is one stored reference with its owner, as Rebuild takes it from
// the authoritative store.
type POIEntry struct {
	POIID       string
	EmbeddingID string
	Vector      []float32
}

// POIHit is the best-matching reference of one POI.
type POIHit struct {
	POIID       string
	EmbeddingID string
	// Similarity is the cosine similarity in [-1, 1].
	Similarity float32
}

type poiRef struct {
	poiID, embeddingID string
}

// POIIndex is the exact cosine-similarity index over enrolled reference
// embeddings. It is small (POIs x at most a few photos), so an exact flat
// scan is both fastest to keep correct and fast enough. It is safe for
// concurrent use: searches run in parallel and exclude only updates.
type POIIndex struct {
	mu    sync.RWMutex
	model Model
	idx   *faiss.Index // nil after Close
	// refs maps a FAISS id to its owner; byEmb and byPOI are its reverse
	// maps. FAISS ids are private to this index and never reused.
	refs   map[int64]poiRef
	byEmb  map[string]int64
	byPOI  map[string][]int64
	nextID int64
	// maxRefs is the most references any POI has; Search over-fetches by
	// this factor so it can return k distinct POIs.
	maxRefs int
}

// NewPOIIndex creates an empty POI index for model.
func NewPOIIndex(model Model) (*POIIndex, error) {
	if err := model.Validate(); err != nil {
		return nil, fmt.Errorf("new poi index: %w", err)
	}
	idx, err := faiss.NewFlat(model.Dim)
	if err != nil {
		return nil, fmt.Errorf("new poi index: %w", err)
	}
	return newPOIIndexWith(model, idx), nil
}

func newPOIIndexWith(model Model, idx *faiss.Index) *POIIndex {
	// Single queries over a few thousand vectors gain nothing from OpenMP,
	// and the API searches from many goroutines at once.
	idx.SetThreads(1)
	return &POIIndex{
		model:  model,
		idx:    idx,
		refs:   map[int64]poiRef{},
		byEmb:  map[string]int64{},
		byPOI:  map[string][]int64{},
		nextID: 1,
	}
}

// Model returns the model identity of the index.
func (p *POIIndex) Model() Model { return p.model }

// Count returns the number of stored reference embeddings.
func (p *POIIndex) Count() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.refs)
}

// POICount returns the number of POIs with at least one reference.
func (p *POIIndex) POICount() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.byPOI)
}

// Add stores references of poiID. An embedding ID already stored for the
// same POI is replaced (so a redelivered enrollment never duplicates); an
// embedding ID owned by another POI is an error. Invalid input stores
// nothing; should FAISS itself fail while replacing, the replaced
// references are gone and the caller retries the whole Add.
func (p *POIIndex) Add(poiID string, refs []Ref) error {
	if poiID == "" {
		return fmt.Errorf("poi index add: empty POI id")
	}
	vecs, err := p.prepare(poiID, refs)
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idx == nil {
		return fmt.Errorf("poi index add: %w", ErrClosed)
	}
	var replace []int64
	for _, r := range refs {
		if id, ok := p.byEmb[r.EmbeddingID]; ok {
			if owner := p.refs[id].poiID; owner != poiID {
				return fmt.Errorf("poi index add %s: embedding %s belongs to POI %s", poiID, r.EmbeddingID, owner)
			}
			replace = append(replace, id)
		}
	}
	if len(replace) > 0 {
		if _, err := p.idx.Remove(replace...); err != nil {
			return fmt.Errorf("poi index add %s: replace: %w", poiID, err)
		}
		for _, id := range replace {
			p.forget(id)
		}
	}
	ids := make([]int64, len(refs))
	for i := range ids {
		ids[i] = p.nextID
		p.nextID++
	}
	if err := p.idx.Add(ids, vecs); err != nil {
		// The replaced vectors are gone from FAISS and from the maps, so the
		// index stays consistent; the caller retries the whole Add.
		return fmt.Errorf("poi index add %s: %w", poiID, err)
	}
	for i, r := range refs {
		p.remember(ids[i], poiID, r.EmbeddingID)
	}
	return nil
}

// prepare checks references and returns their normalised vectors.
func (p *POIIndex) prepare(poiID string, refs []Ref) ([]float32, error) {
	if poiID == "" {
		return nil, fmt.Errorf("poi index: empty POI id")
	}
	vecs := make([]float32, 0, len(refs)*p.model.Dim)
	seen := make(map[string]bool, len(refs))
	for i, r := range refs {
		if r.EmbeddingID == "" {
			return nil, fmt.Errorf("poi index add %s: reference %d has no embedding id", poiID, i)
		}
		if seen[r.EmbeddingID] {
			return nil, fmt.Errorf("poi index add %s: embedding %s given twice", poiID, r.EmbeddingID)
		}
		seen[r.EmbeddingID] = true
		v, err := normalize(p.model, r.Vector)
		if err != nil {
			return nil, fmt.Errorf("poi index add %s/%s: %w", poiID, r.EmbeddingID, err)
		}
		vecs = append(vecs, v...)
	}
	return vecs, nil
}

// remember records a stored reference in the maps; the caller holds mu.
func (p *POIIndex) remember(id int64, poiID, embID string) {
	p.refs[id] = poiRef{poiID: poiID, embeddingID: embID}
	p.byEmb[embID] = id
	p.byPOI[poiID] = append(p.byPOI[poiID], id)
	p.maxRefs = max(p.maxRefs, len(p.byPOI[poiID]))
}

// forget drops a reference from the maps; the caller holds mu and has
// removed the vector from FAISS.
func (p *POIIndex) forget(id int64) {
	r, ok := p.refs[id]
	if !ok {
		return
	}
	delete(p.refs, id)
	delete(p.byEmb, r.embeddingID)
	left := slices.DeleteFunc(p.byPOI[r.poiID], func(x int64) bool { return x == id })
	if len(left) == 0 {
		delete(p.byPOI, r.poiID)
	} else {
		p.byPOI[r.poiID] = left
	}
	p.recomputeMaxRefs()
}

func (p *POIIndex) recomputeMaxRefs() {
	p.maxRefs = 0
	for _, ids := range p.byPOI {
		p.maxRefs = max(p.maxRefs, len(ids))
	}
}

// Replace makes refs the whole set of poiID's references in one step
// under the lock, so a search never sees a POI whose photos changed
// without any. Invalid input changes nothing; an empty refs removes the POI.
func (p *POIIndex) Replace(poiID string, refs []Ref) error {
	vecs, err := p.prepare(poiID, refs)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idx == nil {
		return fmt.Errorf("poi index replace: %w", ErrClosed)
	}
	for _, r := range refs {
		if id, ok := p.byEmb[r.EmbeddingID]; ok {
			if owner := p.refs[id].poiID; owner != poiID {
				return fmt.Errorf("poi index replace %s: embedding %s belongs to POI %s", poiID, r.EmbeddingID, owner)
			}
		}
	}
	if ids := slices.Clone(p.byPOI[poiID]); len(ids) > 0 {
		if _, err := p.idx.Remove(ids...); err != nil {
			return fmt.Errorf("poi index replace %s: %w", poiID, err)
		}
		for _, id := range ids {
			p.forget(id)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	return p.insert(poiID, refs, vecs)
}

// insert adds validated references; the caller holds mu.
func (p *POIIndex) insert(poiID string, refs []Ref, vecs []float32) error {
	ids := make([]int64, len(refs))
	for i := range ids {
		ids[i] = p.nextID
		p.nextID++
	}
	if err := p.idx.Add(ids, vecs); err != nil {
		return fmt.Errorf("poi index add %s: %w", poiID, err)
	}
	for i, r := range refs {
		p.remember(ids[i], poiID, r.EmbeddingID)
	}
	return nil
}

// Holds returns how many FAISS ids of this index belong to poiID.
func (p *POIIndex) Holds(poiID string) int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.byPOI[poiID])
}

// Remove deletes every reference of poiID and returns how many there were.
func (p *POIIndex) Remove(poiID string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idx == nil {
		return 0, fmt.Errorf("poi index remove: %w", ErrClosed)
	}
	ids := slices.Clone(p.byPOI[poiID])
	if len(ids) == 0 {
		return 0, nil
	}
	if _, err := p.idx.Remove(ids...); err != nil {
		return 0, fmt.Errorf("poi index remove %s: %w", poiID, err)
	}
	for _, id := range ids {
		p.forget(id)
	}
	return len(ids), nil
}

// Search returns the k POIs most similar to q, each with its best
// reference, by descending similarity (ties by POI id).
func (p *POIIndex) Search(q []float32, k int) ([]POIHit, error) {
	if k <= 0 {
		return nil, fmt.Errorf("poi index search: k must be positive, got %d", k)
	}
	qn, err := normalize(p.model, q)
	if err != nil {
		return nil, fmt.Errorf("poi index search: %w", err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.idx == nil {
		return nil, fmt.Errorf("poi index search: %w", ErrClosed)
	}
	if len(p.refs) == 0 {
		return nil, nil
	}
	// With at most R references per POI, the best reference of each of the
	// top k POIs ranks within the first k*R hits, so this fetch is exact.
	fetch := min(len(p.refs), k*max(p.maxRefs, 1))
	res, err := p.idx.Search(qn, fetch)
	if err != nil {
		return nil, fmt.Errorf("poi index search: %w", err)
	}
	hits := make([]POIHit, 0, k)
	seen := make(map[string]bool, k)
	for _, n := range res {
		r, ok := p.refs[n.ID]
		if !ok || seen[r.poiID] {
			continue
		}
		seen[r.poiID] = true
		hits = append(hits, POIHit{POIID: r.poiID, EmbeddingID: r.embeddingID, Similarity: n.Score})
	}
	slices.SortStableFunc(hits, func(a, b POIHit) int {
		if c := cmp.Compare(b.Similarity, a.Similarity); c != 0 {
			return c
		}
		return cmp.Compare(a.POIID, b.POIID)
	})
	return hits[:min(k, len(hits))], nil
}

// Rebuild replaces the whole content with entries, typically read from
// Redis after a failed snapshot load or on an operator request. The new
// index is built without blocking searches, which keep seeing the old
// content until the swap. Invalid entries fail the rebuild and keep the old
// content.
func (p *POIIndex) Rebuild(entries []POIEntry) error {
	next, err := NewPOIIndex(p.model)
	if err != nil {
		return fmt.Errorf("poi index rebuild: %w", err)
	}
	byPOI := map[string][]Ref{}
	var order []string
	for _, e := range entries {
		if _, ok := byPOI[e.POIID]; !ok {
			order = append(order, e.POIID)
		}
		byPOI[e.POIID] = append(byPOI[e.POIID], Ref{EmbeddingID: e.EmbeddingID, Vector: e.Vector})
	}
	for _, poiID := range order {
		if err := next.Add(poiID, byPOI[poiID]); err != nil {
			next.Close()
			return fmt.Errorf("poi index rebuild: %w", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idx == nil {
		next.Close()
		return fmt.Errorf("poi index rebuild: %w", ErrClosed)
	}
	old := p.idx
	p.idx, p.refs, p.byEmb, p.byPOI, p.nextID, p.maxRefs =
		next.idx, next.refs, next.byEmb, next.byPOI, next.nextID, next.maxRefs
	return old.Close()
}

// Reset empties the index.
func (p *POIIndex) Reset() error { return p.Rebuild(nil) }

// Close frees the native index. It is idempotent; later calls fail with
// ErrClosed.
func (p *POIIndex) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idx == nil {
		return nil
	}
	err := p.idx.Close()
	p.idx = nil
	return err
}

const (
	poiSnapshotKind = "poi"
	poiMetaMagic    = "POIMETA1"
)

// Snapshot writes the index to dir, recording position: the stream
// sequence or store watermark whose effects the index includes, so a
// restart replays only what came after. Updates wait while it writes;
// searches do not.
func (p *POIIndex) Snapshot(dir string, position uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("poi snapshot: %w", err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.idx == nil {
		return fmt.Errorf("poi snapshot: %w", ErrClosed)
	}
	gen := newGeneration()
	idxName := snapshotPrefix + "poi-" + gen + ".faiss"
	if err := p.idx.Write(filepath.Join(dir, idxName)); err != nil {
		return fmt.Errorf("poi snapshot: %w", err)
	}
	idxEntry, err := sealFile(dir, idxName)
	if err != nil {
		return fmt.Errorf("poi snapshot: %w", err)
	}
	ids := make([]int64, 0, len(p.refs))
	for id := range p.refs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	meta, err := writeGoFile(dir, snapshotPrefix+"poi-"+gen+".meta", func(w io.Writer) error {
		if _, err := io.WriteString(w, poiMetaMagic); err != nil {
			return err
		}
		bw := &binWriter{w: w}
		bw.i64(p.nextID)
		bw.u64(uint64(len(ids)))
		for _, id := range ids {
			r := p.refs[id]
			bw.i64(id)
			bw.str(r.poiID)
			bw.str(r.embeddingID)
		}
		return bw.err
	})
	if err != nil {
		return fmt.Errorf("poi snapshot: %w", err)
	}
	m := manifest{
		Format: manifestFormat, Kind: poiSnapshotKind, Model: p.model, Position: position,
		Written: time.Now().UTC(), Meta: meta,
		Indexes: []indexEntry{{File: idxEntry}},
	}
	if err := commitManifest(dir, m); err != nil {
		return fmt.Errorf("poi snapshot: %w", err)
	}
	return nil
}

// LoadPOIIndex loads the snapshot in dir and returns the index with the
// position it reflects. Errors wrap ErrNoSnapshot, ErrCorruptSnapshot or
// ErrModelMismatch (or an I/O error); in every case the caller rebuilds
// from the authoritative store.
func LoadPOIIndex(dir string, model Model) (*POIIndex, uint64, error) {
	if err := model.Validate(); err != nil {
		return nil, 0, fmt.Errorf("load poi index: %w", err)
	}
	m, err := readManifest(dir, poiSnapshotKind, model)
	if err != nil {
		return nil, 0, fmt.Errorf("load poi index: %w", err)
	}
	if len(m.Indexes) != 1 {
		return nil, 0, fmt.Errorf("load poi index: %w: %d index files", ErrCorruptSnapshot, len(m.Indexes))
	}
	for _, e := range []fileEntry{m.Meta, m.Indexes[0].File} {
		if err := verifyFile(dir, e); err != nil {
			return nil, 0, fmt.Errorf("load poi index: %w", err)
		}
	}
	idx, err := faiss.Read(filepath.Join(dir, m.Indexes[0].File.Name))
	if err != nil {
		return nil, 0, fmt.Errorf("load poi index: %w: %v", ErrCorruptSnapshot, err)
	}
	p := newPOIIndexWith(model, idx)
	if err := p.loadMeta(dir, m.Meta); err != nil {
		idx.Close()
		return nil, 0, fmt.Errorf("load poi index: %w", err)
	}
	return p, m.Position, nil
}

func (p *POIIndex) loadMeta(dir string, e fileEntry) error {
	if p.idx.Kind() != faiss.Flat || p.idx.Dim() != p.model.Dim {
		return fmt.Errorf("%w: index is %s of dimension %d", ErrCorruptSnapshot, p.idx.Kind(), p.idx.Dim())
	}
	f, br, err := openMeta(dir, e, poiMetaMagic)
	if err != nil {
		return err
	}
	defer f.Close()
	p.nextID = br.i64()
	n := br.count(1 << 32)
	for range n {
		id := br.i64()
		poiID := br.str()
		embID := br.str()
		if br.err != nil {
			break
		}
		_, dupID := p.refs[id]
		_, dupEmb := p.byEmb[embID]
		if dupID || dupEmb || poiID == "" || embID == "" || id <= 0 || id >= p.nextID {
			return fmt.Errorf("%w: bad reference entry %d", ErrCorruptSnapshot, id)
		}
		p.remember(id, poiID, embID)
	}
	if br.err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorruptSnapshot, e.Name, br.err)
	}
	if c, err := p.idx.Count(); err != nil || c != len(p.refs) {
		return fmt.Errorf("%w: index holds %d vectors, metadata %d", ErrCorruptSnapshot, c, len(p.refs))
	}
	return nil
}
