// Package faiss is a small cgo binding over the FAISS C++ library as Debian
// packages it (1.7.3, static libfaiss.a, no C API library). It exposes only
// what the service needs: an exact inner-product index and an HNSW index,
// both addressed by caller-chosen int64 ids.
//
// Every native failure, including C++ exceptions, comes back as a Go error;
// native memory is released by Close, and an Index is safe for concurrent
// use (searches run in parallel, mutations are exclusive).
package faiss

/*
#cgo CXXFLAGS: -std=c++17 -O2 -fopenmp
#cgo LDFLAGS: -lfaiss -fopenmp -llapack -lblas -lstdc++ -lm
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Kind tells which FAISS structure backs an Index.
type Kind int

const (
	// Flat is an exact inner-product scan (IndexIDMap2 over IndexFlatIP).
	Flat Kind = C.POI_KIND_FLAT
	// HNSW is an approximate graph index (IndexIDMap2 over IndexHNSWFlat,
	// inner product).
	HNSW Kind = C.POI_KIND_HNSW
)

// String names the kind for logs and errors.
func (k Kind) String() string {
	switch k {
	case Flat:
		return "flat"
	case HNSW:
		return "hnsw"
	default:
		return fmt.Sprintf("kind(%d)", int(k))
	}
}

var (
	// ErrClosed is returned by every method called after Close, so a
	// use-after-close bug surfaces as an error instead of a crash.
	ErrClosed = errors.New("faiss: index is closed")
	// ErrUnsupported is returned for operations the index kind cannot do,
	// such as removing ids from an HNSW index.
	ErrUnsupported = errors.New("faiss: operation not supported by this index kind")
	// ErrDimension is returned when a vector buffer does not match the
	// index dimension.
	ErrDimension = errors.New("faiss: vector length does not match the index dimension")
)

// errLen bounds native error messages; FAISS messages include file and line
// and fit comfortably.
const errLen = 1024

// maxDim guards against absurd dimensions that would only end in a huge
// native allocation.
const maxDim = 1 << 16

// Neighbor is one search result: the id given at Add and its inner product
// with the query (cosine similarity when both are L2-normalised).
type Neighbor struct {
	ID    int64
	Score float32
}

// HNSWParams configures an HNSW index. M is the graph degree (memory grows
// by about 8*M bytes per vector), EfConstruction the build-time beam width
// (build time vs graph quality) and EfSearch the search-time beam width
// (latency vs recall).
type HNSWParams struct {
	M              int
	EfConstruction int
	EfSearch       int
}

// Index is one native FAISS index. The zero value is not usable; create
// indexes with NewFlat, NewHNSW or Read.
type Index struct {
	// mu makes Close safe against in-flight calls: searches share it,
	// mutations and Close take it exclusively, so the native pointer is
	// never freed under a running call.
	mu      sync.RWMutex
	p       *C.poi_index
	dim     int
	kind    Kind
	threads atomic.Int32
	// efSearch mirrors the native HNSW efSearch so SearchBatch can decide
	// without a native call whether k needs a wider beam.
	efSearch atomic.Int32
	cleanup  runtime.Cleanup
}

// nativeErr turns a shim failure message into a Go error.
func nativeErr(buf []C.char) error {
	return errors.New(C.GoString(&buf[0]))
}

func wrap(p *C.poi_index) *Index {
	ix := &Index{p: p, dim: int(C.poi_dim(p)), kind: Kind(C.poi_kind(p))}
	var m, efc, efs C.int
	if C.poi_get_hnsw_params(p, &m, &efc, &efs) == 0 {
		ix.efSearch.Store(int32(efs))
	}
	// A safety net only: an Index dropped without Close would otherwise
	// leak its native memory forever. Close stays the deterministic path.
	ix.cleanup = runtime.AddCleanup(ix, func(p *C.poi_index) { C.poi_free(p) }, p)
	return ix
}

// NewFlat creates an exact inner-product index of dimension dim.
func NewFlat(dim int) (*Index, error) {
	if dim <= 0 || dim > maxDim {
		return nil, fmt.Errorf("faiss new flat: dimension %d out of range 1..%d", dim, maxDim)
	}
	var p *C.poi_index
	buf := make([]C.char, errLen)
	if C.poi_new_flat_ip(C.int(dim), &p, &buf[0], errLen) != 0 {
		return nil, fmt.Errorf("faiss new flat: %w", nativeErr(buf))
	}
	return wrap(p), nil
}

// NewHNSW creates an HNSW inner-product index of dimension dim.
func NewHNSW(dim int, params HNSWParams) (*Index, error) {
	if dim <= 0 || dim > maxDim {
		return nil, fmt.Errorf("faiss new hnsw: dimension %d out of range 1..%d", dim, maxDim)
	}
	if params.M < 2 || params.M > 512 || params.EfConstruction <= 0 || params.EfSearch <= 0 {
		return nil, fmt.Errorf("faiss new hnsw: invalid parameters %+v", params)
	}
	var p *C.poi_index
	buf := make([]C.char, errLen)
	if C.poi_new_hnsw_ip(C.int(dim), C.int(params.M), C.int(params.EfConstruction),
		C.int(params.EfSearch), &p, &buf[0], errLen) != 0 {
		return nil, fmt.Errorf("faiss new hnsw: %w", nativeErr(buf))
	}
	return wrap(p), nil
}

// Read loads an index written by Write. Only the two kinds this package
// creates are accepted; anything else is an error, never a crash.
func Read(path string) (*Index, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var p *C.poi_index
	buf := make([]C.char, errLen)
	if C.poi_read(cpath, &p, &buf[0], errLen) != 0 {
		return nil, fmt.Errorf("faiss read %s: %w", path, nativeErr(buf))
	}
	return wrap(p), nil
}

// Dim returns the vector dimension.
func (ix *Index) Dim() int { return ix.dim }

// Kind returns the index structure.
func (ix *Index) Kind() Kind { return ix.kind }

// SetThreads sets the OpenMP thread count used by this index's calls; n <= 0
// leaves the OpenMP default. Batched searches and HNSW builds use OpenMP, and
// on a small machine several goroutines each starting a full OpenMP team
// oversubscribe the cores badly, so callers that search from many
// goroutines set 1. The count is applied per call because OpenMP keeps it
// per OS thread and goroutines move between OS threads.
func (ix *Index) SetThreads(n int) {
	if n < 0 {
		n = 0
	}
	ix.threads.Store(int32(min(n, math.MaxInt32)))
}

// Count returns the number of stored vectors (FAISS ntotal).
func (ix *Index) Count() (int, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.p == nil {
		return 0, ErrClosed
	}
	return int(C.poi_ntotal(ix.p)), nil
}

// Add stores vectors (len(vectors) == len(ids)*Dim(), row-major) under the
// given ids. Ids must be new: FAISS's IndexIDMap2 would otherwise keep two
// vectors for one id, so a duplicate is reported as an error and nothing is
// added. HNSW indexes give them stamp 0 (see AddStamped).
func (ix *Index) Add(ids []int64, vectors []float32) error {
	return ix.AddStamped(ids, nil, vectors)
}

// AddStamped is Add with a stamp per vector (nil for zeros), which HNSW
// indexes keep for SearchHNSWRange and flat ones ignore. A caller's stamp
// is typically a time: a range of stamps is then a time filter of the
// graph walk, and Removed marks a tombstone.
func (ix *Index) AddStamped(ids, stamps []int64, vectors []float32) error {
	if stamps != nil && len(stamps) != len(ids) {
		return fmt.Errorf("faiss add: %d stamps for %d ids", len(stamps), len(ids))
	}
	if len(ids) == 0 {
		if len(vectors) != 0 {
			return fmt.Errorf("faiss add: %w: %d floats for 0 ids", ErrDimension, len(vectors))
		}
		return nil
	}
	if len(vectors) != len(ids)*ix.dim {
		return fmt.Errorf("faiss add: %w: %d floats for %d ids of dimension %d",
			ErrDimension, len(vectors), len(ids), ix.dim)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.p == nil {
		return fmt.Errorf("faiss add: %w", ErrClosed)
	}
	var cstamps *C.int64_t
	if stamps != nil {
		cstamps = (*C.int64_t)(&stamps[0])
	}
	buf := make([]C.char, errLen)
	if C.poi_add(ix.p, C.int64_t(len(ids)), (*C.float)(&vectors[0]),
		(*C.int64_t)(&ids[0]), cstamps, C.int(ix.threads.Load()), &buf[0], errLen) != 0 {
		return fmt.Errorf("faiss add: %w", nativeErr(buf))
	}
	return nil
}

// Search returns up to k nearest vectors to query by inner product, best
// first. Fewer than k come back when the index holds fewer vectors.
func (ix *Index) Search(query []float32, k int) ([]Neighbor, error) {
	if len(query) != ix.dim {
		return nil, fmt.Errorf("faiss search: %w: %d floats, want %d", ErrDimension, len(query), ix.dim)
	}
	res, err := ix.SearchBatch(query, k)
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0], nil
}

// SearchBatch searches len(queries)/Dim() queries at once (row-major). One
// call amortises the cgo crossing and lets FAISS use BLAS for flat indexes,
// which is much faster than the same queries one by one.
func (ix *Index) SearchBatch(queries []float32, k int) ([][]Neighbor, error) {
	if k <= 0 {
		return nil, fmt.Errorf("faiss search: k must be positive, got %d", k)
	}
	if len(queries)%ix.dim != 0 {
		return nil, fmt.Errorf("faiss search: %w: %d floats is not a multiple of %d",
			ErrDimension, len(queries), ix.dim)
	}
	n := len(queries) / ix.dim
	// HNSW returns at most efSearch results, so a k above it widens the
	// beam for this call; that changes shared index state, so such calls
	// run exclusively. They are rare (efSearch is normally well above k).
	wide := ix.kind == HNSW && k > int(ix.efSearch.Load())
	if wide {
		ix.mu.Lock()
		defer ix.mu.Unlock()
	} else {
		ix.mu.RLock()
		defer ix.mu.RUnlock()
	}
	if ix.p == nil {
		return nil, fmt.Errorf("faiss search: %w", ErrClosed)
	}
	out := make([][]Neighbor, n)
	if n == 0 {
		return out, nil
	}
	total := int(C.poi_ntotal(ix.p))
	if total == 0 {
		return out, nil
	}
	// k above ntotal only adds -1 padding, and clamping keeps a huge k from
	// turning into a huge allocation.
	k = min(k, total)
	ef := 0
	if wide && k > int(ix.efSearch.Load()) {
		ef = k
	}
	dist := make([]float32, n*k)
	labels := make([]int64, n*k)
	buf := make([]C.char, errLen)
	if C.poi_search(ix.p, C.int64_t(n), (*C.float)(&queries[0]), C.int64_t(k),
		(*C.float)(&dist[0]), (*C.int64_t)(&labels[0]), C.int(ef), C.int(ix.threads.Load()),
		&buf[0], errLen) != 0 {
		return nil, fmt.Errorf("faiss search: %w", nativeErr(buf))
	}
	for q := range n {
		row := make([]Neighbor, 0, k)
		for j := q * k; j < (q+1)*k; j++ {
			if labels[j] < 0 {
				// HNSW may find fewer than k; FAISS pads with -1.
				continue
			}
			row = append(row, Neighbor{ID: labels[j], Score: dist[j]})
		}
		out[q] = row
	}
	return out, nil
}

// SearchIDs is an exact search restricted to the given ids, best first;
// ids not in the index are ignored. It reads the stored vectors directly,
// so its cost is proportional to len(ids), not to the index size, and it is
// exact for HNSW indexes too. Callers use it when a filter (for example a
// time range) leaves only part of an index eligible: FAISS 1.7.3 cannot
// filter through IndexIDMap2, and over-fetching then filtering could need
// to scan everything.
func (ix *Index) SearchIDs(query []float32, ids []int64, k int) ([]Neighbor, error) {
	if k <= 0 {
		return nil, fmt.Errorf("faiss search ids: k must be positive, got %d", k)
	}
	if len(query) != ix.dim {
		return nil, fmt.Errorf("faiss search ids: %w: %d floats, want %d", ErrDimension, len(query), ix.dim)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.p == nil {
		return nil, fmt.Errorf("faiss search ids: %w", ErrClosed)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	k = min(k, len(ids))
	dist := make([]float32, k)
	labels := make([]int64, k)
	var found C.int64_t
	buf := make([]C.char, errLen)
	if C.poi_search_ids(ix.p, (*C.float)(&query[0]), C.int64_t(len(ids)), (*C.int64_t)(&ids[0]),
		C.int64_t(k), (*C.float)(&dist[0]), (*C.int64_t)(&labels[0]), &found, &buf[0], errLen) != 0 {
		return nil, fmt.Errorf("faiss search ids: %w", nativeErr(buf))
	}
	return neighbors(dist, labels, int(found)), nil
}

// Removed is the stamp of a tombstone: SearchHNSWRange never returns it
// (its lo bound is always above it).
const Removed = math.MinInt64

// SetStamps sets the stamps of ids (HNSW only; ids not in the index are
// ignored) and returns how many it set. Read gives every vector stamp 0,
// since FAISS files do not hold them; a caller that filters by stamps sets
// them again after loading.
func (ix *Index) SetStamps(ids, stamps []int64) (int, error) {
	if ix.kind != HNSW {
		return 0, fmt.Errorf("faiss set stamps: %w (%s)", ErrUnsupported, ix.kind)
	}
	if len(ids) != len(stamps) {
		return 0, fmt.Errorf("faiss set stamps: %d stamps for %d ids", len(stamps), len(ids))
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.p == nil {
		return 0, fmt.Errorf("faiss set stamps: %w", ErrClosed)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	var set C.int64_t
	buf := make([]C.char, errLen)
	if C.poi_set_stamps(ix.p, C.int64_t(len(ids)), (*C.int64_t)(&ids[0]), (*C.int64_t)(&stamps[0]),
		&set, &buf[0], errLen) != 0 {
		return 0, fmt.Errorf("faiss set stamps: %w", nativeErr(buf))
	}
	return int(set), nil
}

// SearchHNSWRange is an HNSW graph search among the vectors whose stamp
// lies in [lo, hi], best first. The filter costs one compare per node the
// walk visits, nothing per query, but the search is approximate and the
// smaller the eligible share the wider ef must be to keep recall (the walk
// crosses nodes it may not return). ef <= 0 uses the index's efSearch; lo
// is raised above Removed, so tombstones never come back. Flat indexes
// return ErrUnsupported: for them SearchIDs is exact and as cheap.
func (ix *Index) SearchHNSWRange(query []float32, lo, hi int64, k, ef int) ([]Neighbor, error) {
	if ix.kind != HNSW {
		return nil, fmt.Errorf("faiss search hnsw range: %w (%s)", ErrUnsupported, ix.kind)
	}
	if k <= 0 {
		return nil, fmt.Errorf("faiss search hnsw range: k must be positive, got %d", k)
	}
	if len(query) != ix.dim {
		return nil, fmt.Errorf("faiss search hnsw range: %w: %d floats, want %d", ErrDimension, len(query), ix.dim)
	}
	if ef <= 0 {
		ef = int(ix.efSearch.Load())
	}
	ef = min(max(ef, k), math.MaxInt32)
	lo = max(lo, Removed+1)
	// A beam other than the index's efSearch is set on the index for the
	// call (FAISS 1.7.3 sizes the walk's queue by it), so such calls run
	// exclusively. (efSearch changes only under the write lock, so the
	// compare under the read lock holds for the call.)
	ix.mu.RLock()
	if ef != int(ix.efSearch.Load()) {
		ix.mu.RUnlock()
		ix.mu.Lock()
		defer ix.mu.Unlock()
	} else {
		defer ix.mu.RUnlock()
	}
	if ix.p == nil {
		return nil, fmt.Errorf("faiss search hnsw range: %w", ErrClosed)
	}
	if hi < lo {
		return nil, nil
	}
	dist := make([]float32, k)
	labels := make([]int64, k)
	var found C.int64_t
	buf := make([]C.char, errLen)
	if C.poi_search_hnsw_range(ix.p, (*C.float)(&query[0]), C.int64_t(lo), C.int64_t(hi),
		C.int64_t(k), C.int(ef), (*C.float)(&dist[0]), (*C.int64_t)(&labels[0]), &found, &buf[0], errLen) != 0 {
		return nil, fmt.Errorf("faiss search hnsw range: %w", nativeErr(buf))
	}
	return neighbors(dist, labels, int(found)), nil
}

// neighbors pairs the first n scores and labels of a native result.
func neighbors(dist []float32, labels []int64, n int) []Neighbor {
	out := make([]Neighbor, n)
	for i := range out {
		out[i] = Neighbor{ID: labels[i], Score: dist[i]}
	}
	return out
}

// Remove deletes the given ids and returns how many were present. Only flat
// indexes support it (FAISS HNSW cannot unlink graph nodes); HNSW returns
// ErrUnsupported so the caller can fall back to tombstones. Removal from a
// flat index is O(ntotal) per call, so batch ids.
func (ix *Index) Remove(ids ...int64) (int, error) {
	if ix.kind != Flat {
		return 0, fmt.Errorf("faiss remove: %w (%s)", ErrUnsupported, ix.kind)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.p == nil {
		return 0, fmt.Errorf("faiss remove: %w", ErrClosed)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	var removed C.int64_t
	buf := make([]C.char, errLen)
	if C.poi_remove(ix.p, C.int64_t(len(ids)), (*C.int64_t)(&ids[0]), &removed, &buf[0], errLen) != 0 {
		return 0, fmt.Errorf("faiss remove: %w", nativeErr(buf))
	}
	return int(removed), nil
}

// SetEfSearch sets the HNSW search beam width. It is stored on the inner
// HNSW index because FAISS 1.7.3's IndexIDMap rejects per-search parameters.
func (ix *Index) SetEfSearch(ef int) error {
	if ix.kind != HNSW {
		return fmt.Errorf("faiss set efSearch: %w (%s)", ErrUnsupported, ix.kind)
	}
	if ef <= 0 || ef > math.MaxInt32 {
		return fmt.Errorf("faiss set efSearch: %d out of range", ef)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.p == nil {
		return fmt.Errorf("faiss set efSearch: %w", ErrClosed)
	}
	buf := make([]C.char, errLen)
	if C.poi_set_ef_search(ix.p, C.int(ef), &buf[0], errLen) != 0 {
		return fmt.Errorf("faiss set efSearch: %w", nativeErr(buf))
	}
	ix.efSearch.Store(int32(ef))
	return nil
}

// HNSWParams returns the parameters of an HNSW index (M as stored in the
// graph, so it survives Write/Read).
func (ix *Index) HNSWParams() (HNSWParams, error) {
	if ix.kind != HNSW {
		return HNSWParams{}, fmt.Errorf("faiss hnsw params: %w (%s)", ErrUnsupported, ix.kind)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.p == nil {
		return HNSWParams{}, fmt.Errorf("faiss hnsw params: %w", ErrClosed)
	}
	var m, efc, efs C.int
	if C.poi_get_hnsw_params(ix.p, &m, &efc, &efs) != 0 {
		return HNSWParams{}, fmt.Errorf("faiss hnsw params: not an HNSW index")
	}
	return HNSWParams{M: int(m), EfConstruction: int(efc), EfSearch: int(efs)}, nil
}

// Export copies every stored vector and its id out of the index, in storage
// order. It lets a caller rebuild the same data as another index kind (for
// example convert a flat segment to HNSW) without keeping a second copy of
// the vectors in Go.
func (ix *Index) Export() (ids []int64, vectors []float32, err error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.p == nil {
		return nil, nil, fmt.Errorf("faiss export: %w", ErrClosed)
	}
	n := int(C.poi_ntotal(ix.p))
	if n == 0 {
		return nil, nil, nil
	}
	ids = make([]int64, n)
	vectors = make([]float32, n*ix.dim)
	buf := make([]C.char, errLen)
	if C.poi_export(ix.p, (*C.float)(&vectors[0]), (*C.int64_t)(&ids[0]), &buf[0], errLen) != 0 {
		return nil, nil, fmt.Errorf("faiss export: %w", nativeErr(buf))
	}
	return ids, vectors, nil
}

// Reconstruct returns the stored vectors of ids (row-major, in the order
// given). It lets a caller catch up vectors added to an index while a
// replacement for it was being built. An unknown id is an error.
func (ix *Index) Reconstruct(ids []int64) ([]float32, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.p == nil {
		return nil, fmt.Errorf("faiss reconstruct: %w", ErrClosed)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	out := make([]float32, len(ids)*ix.dim)
	buf := make([]C.char, errLen)
	if C.poi_reconstruct(ix.p, C.int64_t(len(ids)), (*C.int64_t)(&ids[0]), (*C.float)(&out[0]), &buf[0], errLen) != 0 {
		return nil, fmt.Errorf("faiss reconstruct: %w", nativeErr(buf))
	}
	return out, nil
}

// Write stores the index in FAISS's own file format at path. It writes the
// file in place; callers that need atomic replacement write to a temporary
// name and rename.
func (ix *Index) Write(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.p == nil {
		return fmt.Errorf("faiss write: %w", ErrClosed)
	}
	buf := make([]C.char, errLen)
	if C.poi_write(ix.p, cpath, &buf[0], errLen) != 0 {
		return fmt.Errorf("faiss write %s: %w", path, nativeErr(buf))
	}
	return nil
}

// Close frees the native index. It waits for in-flight calls, is idempotent,
// and every later call returns ErrClosed.
func (ix *Index) Close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.p == nil {
		return nil
	}
	ix.cleanup.Stop()
	C.poi_free(ix.p)
	ix.p = nil
	return nil
}
