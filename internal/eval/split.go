package eval

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// SplitIdentities deals the identities of faces (never single photos: a
// threshold calibrated on some photos of a person and tested on others of
// the same person would be tested on what it was tuned on) into two halves,
// keeping each face's order. The deal is a function of the seed and the
// identity names alone, so it is the same on every machine and Go version,
// and adding an identity moves no other.
//
// Identities are taken in an order drawn from the seed, those with two or
// more photos first, and each goes to the half with fewer photos so far
// (fewer identities on a tie, A on a full tie): both halves get genuine
// pairs (only multi-photo identities have them), and the photos, hence the
// impostor pairs, are shared as evenly as the identities allow, even when
// one person has many more photos than the rest.
func SplitIdentities(faces []Face, seed uint64) (a, b []Face) {
	photos := map[string]int{}
	for _, f := range faces {
		photos[f.Identity]++
	}
	var multi, single []string
	for id, n := range photos {
		if n >= 2 {
			multi = append(multi, id)
		} else {
			single = append(single, id)
		}
	}
	byKey := func(x, y string) int {
		if c := cmp.Compare(splitKey(seed, x), splitKey(seed, y)); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	}
	slices.SortFunc(multi, byKey)
	slices.SortFunc(single, byKey)
	inA := map[string]bool{}
	var photosA, photosB, idsA, idsB int
	for _, id := range append(multi, single...) {
		if photosA < photosB || (photosA == photosB && idsA <= idsB) {
			inA[id] = true
			photosA, idsA = photosA+photos[id], idsA+1
		} else {
			photosB, idsB = photosB+photos[id], idsB+1
		}
	}
	for _, f := range faces {
		if inA[f.Identity] {
			a = append(a, f)
		} else {
			b = append(b, f)
		}
	}
	return a, b
}

// splitKey orders identities pseudo-randomly for a seed: sha256 rather than
// math/rand, whose sequences Go does not promise to keep across releases.
func splitKey(seed uint64, identity string) uint64 {
	h := sha256.New()
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	h.Write(s[:])
	h.Write([]byte(identity))
	return binary.LittleEndian.Uint64(h.Sum(nil))
}

// identities returns the sorted distinct identities of faces.
func identities(faces []Face) []string {
	var ids []string
	seen := map[string]bool{}
	for _, f := range faces {
		if !seen[f.Identity] {
			seen[f.Identity] = true
			ids = append(ids, f.Identity)
		}
	}
	slices.Sort(ids)
	return ids
}
