// Package vectorindex holds the vector indexes of the service, built on the
// FAISS binding in internal/faiss:
//
//   - POIIndex: the small, exact index of enrolled reference embeddings
//     (cosine similarity), rebuilt from Redis at will;
//   - DetectionIndex: every face seen, partitioned into time segments so
//     that a time-range search touches only the overlapping segments and
//     retention drops whole segments.
//
// Both are materialised views: they snapshot themselves to disk together
// with the stream position they reflect, and any failure to load a snapshot
// is a typed error telling the caller to rebuild.
package vectorindex

import (
	"errors"
	"fmt"
	"math"
)

// Model identifies the embedding space an index holds. Vectors of two
// models are never comparable, even at the same dimension, so every index
// and snapshot carries its model and refuses vectors or snapshots of another.
type Model struct {
	Name string `json:"name"`
	Dim  int    `json:"dim"`
}

// maxDim matches the limit of internal/faiss.
const maxDim = 1 << 16

// Validate reports whether the model identity is usable.
func (m Model) Validate() error {
	if m.Name == "" {
		return errors.New("model name is empty")
	}
	if m.Dim <= 0 || m.Dim > maxDim {
		return fmt.Errorf("model %q: dimension %d out of range 1..%d", m.Name, m.Dim, maxDim)
	}
	return nil
}

// String formats the identity for logs and errors.
func (m Model) String() string { return fmt.Sprintf("%s/%d", m.Name, m.Dim) }

var (
	// ErrDimension is returned for a vector whose length is not the index
	// model's dimension: it comes from another model and must not be
	// compared.
	ErrDimension = errors.New("vectorindex: vector dimension does not match the index model")
	// ErrBadVector is returned for vectors that cannot be normalised (zero,
	// NaN or infinite components).
	ErrBadVector = errors.New("vectorindex: vector is zero or not finite")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("vectorindex: index is closed")
	// ErrExpired is returned when adding a detection older than what
	// retention already dropped, so a late redelivery cannot bring back a
	// segment that retention removed.
	ErrExpired = errors.New("vectorindex: detection is older than the retention horizon")
)

// normalize returns a unit-length copy of v. Callers' slices are never
// modified, and normalising again here is cheap insurance: inner product
// equals cosine similarity only on unit vectors, and an embedder that forgot
// to normalise would silently skew every score.
func normalize(m Model, v []float32) ([]float32, error) {
	if len(v) != m.Dim {
		return nil, fmt.Errorf("%w: got %d, model %s", ErrDimension, len(v), m)
	}
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return nil, ErrBadVector
	}
	inv := 1 / math.Sqrt(s)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out, nil
}
