package vectorindex

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// unitVec returns one random unit vector.
func unitVec(rng *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	var s float64
	for i := range v {
		x := rng.NormFloat64()
		v[i] = float32(x)
		s += x * x
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
	return v
}

// faceLike generates "real-like" embeddings: each identity is a random unit
// centre and each observation the centre plus noise, renormalised. With
// noise 0.8 same-identity cosine is about 0.6 and different identities
// about 0, close to what RESEARCH measured for the real embedder.
type faceLike struct {
	rng     *rand.Rand
	dim     int
	centres [][]float32
	noise   float64
}

func newFaceLike(seed uint64, dim, identities int, noise float64) *faceLike {
	f := &faceLike{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), dim: dim, noise: noise}
	for range identities {
		f.centres = append(f.centres, unitVec(f.rng, dim))
	}
	return f
}

// sample returns an observation of identity i (unit length).
func (f *faceLike) sample(i int) []float32 {
	c := f.centres[i]
	v := make([]float32, f.dim)
	var s float64
	for j := range v {
		x := float64(c[j]) + f.noise*f.rng.NormFloat64()/math.Sqrt(float64(f.dim))
		v[j] = float32(x)
		s += x * x
	}
	inv := float32(1 / math.Sqrt(s))
	for j := range v {
		v[j] *= inv
	}
	return v
}

func (f *faceLike) any() []float32 { return f.sample(f.rng.IntN(len(f.centres))) }

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// scored is a brute-force reference result.
type scored struct {
	key string
	id  int64
	sim float32
}

func sortScored(s []scored) {
	slices.SortFunc(s, func(a, b scored) int {
		if c := cmp.Compare(b.sim, a.sim); c != 0 {
			return c
		}
		if c := cmp.Compare(a.id, b.id); c != 0 {
			return c
		}
		return cmp.Compare(a.key, b.key)
	})
}

// checkRanking compares an index ranking with the brute-force one: same
// length, scores equal up to float summation order, and keys equal except
// where two references have (nearly) the same score.
func checkRanking(t *testing.T, gotKeys []string, gotSims []float32, want []scored) {
	t.Helper()
	if len(gotKeys) != len(want) {
		t.Fatalf("got %d results, want %d", len(gotKeys), len(want))
	}
	for i := range want {
		if math.Abs(float64(gotSims[i]-want[i].sim)) > 1e-4 {
			t.Fatalf("rank %d: similarity %v, want %v", i, gotSims[i], want[i].sim)
		}
		if gotKeys[i] != want[i].key && math.Abs(float64(gotSims[i]-want[i].sim)) > 1e-6 {
			t.Fatalf("rank %d: %s, want %s", i, gotKeys[i], want[i].key)
		}
	}
}
