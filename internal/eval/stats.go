// Package eval measures how well the face engine tells people apart on a
// folder of labelled photos: the cosine similarity of every pair of faces,
// split into genuine pairs (same identity) and impostor pairs (different
// identities); the true-accept rate (TAR) at fixed false-accept rates (FAR)
// and the thresholds they imply; the rates at the configured thresholds; and,
// with a split of identities, thresholds calibrated on one half and tested
// on the other. Every rate carries a confidence interval and every operating
// point says whether the set is large enough for it, because a small set
// proves little and the report must say so.
//
// The statistics (this file, split.go, report.go) are pure functions of
// labelled embeddings; load.go and command.go are the I/O around them.
package eval

import (
	"math"
	"slices"

	"poi/internal/face"
)

// Face is one labelled embedding: the largest face of one photo.
type Face struct {
	Identity string
	Photo    string
	Vector   []float32
}

// Scores are the similarities of every unordered pair of faces.
type Scores struct {
	Genuine  []float64
	Impostor []float64
}

// PairScores scores every pair of faces once.
func PairScores(faces []Face) Scores {
	var s Scores
	for i := range faces {
		for j := i + 1; j < len(faces); j++ {
			v := float64(face.Similarity(faces[i].Vector, faces[j].Vector))
			if faces[i].Identity == faces[j].Identity {
				s.Genuine = append(s.Genuine, v)
			} else {
				s.Impostor = append(s.Impostor, v)
			}
		}
	}
	return s
}

// Distribution summarises a set of scores. All fields are zero when Count
// is.
type Distribution struct {
	Count  int     `json:"count"`
	Min    float64 `json:"min"`
	P1     float64 `json:"p1"`
	P5     float64 `json:"p5"`
	Median float64 `json:"median"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
}

// Summarize returns the distribution of scores (left unchanged).
func Summarize(scores []float64) Distribution {
	if len(scores) == 0 {
		return Distribution{}
	}
	x := slices.Clone(scores)
	slices.Sort(x)
	return Distribution{
		Count: len(x), Min: x[0], Max: x[len(x)-1],
		P1: quantile(x, 0.01), P5: quantile(x, 0.05), Median: quantile(x, 0.5),
		P95: quantile(x, 0.95), P99: quantile(x, 0.99),
	}
}

// quantile interpolates linearly between the order statistics of sorted x
// (the usual "type 7" definition), so that p99 of 58 scores is not simply
// the maximum.
func quantile(x []float64, p float64) float64 {
	h := p * float64(len(x)-1)
	lo := int(math.Floor(h))
	if lo >= len(x)-1 {
		return x[len(x)-1]
	}
	return x[lo] + (h-float64(lo))*(x[lo+1]-x[lo])
}

// Z95 is the standard normal quantile for two-sided 95% intervals.
const Z95 = 1.959963984540054

// Interval is a confidence interval on a proportion.
type Interval struct {
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// Wilson returns the Wilson score interval for k successes in n trials at
// normal quantile z. Unlike the textbook p ± z·sqrt(p(1-p)/n), it stays
// inside [0, 1] and does not collapse to a point at 0 or n successes, which
// is where a small evaluation set usually is. With no trials it is [0, 1].
func Wilson(k, n int, z float64) Interval {
	if n <= 0 {
		return Interval{0, 1}
	}
	nf := float64(n)
	p := float64(k) / nf
	z2 := z * z
	centre := (p + z2/(2*nf)) / (1 + z2/nf)
	half := z / (1 + z2/nf) * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return Interval{Lo: math.Max(0, centre-half), Hi: math.Min(1, centre+half)}
}

// Rates are what a threshold does to a set of scores: a pair is accepted
// when its score is at least the threshold, as in the service.
type Rates struct {
	Threshold        float64  `json:"threshold"`
	GenuineAccepted  int      `json:"genuine_accepted"`
	Genuine          int      `json:"genuine"`
	TAR              float64  `json:"tar"`
	TARInterval      Interval `json:"tar_ci95"`
	ImpostorAccepted int      `json:"impostor_accepted"`
	Impostor         int      `json:"impostor"`
	FAR              float64  `json:"far"`
	FARInterval      Interval `json:"far_ci95"`
}

// RatesAt applies threshold t to s. A rate over no pairs is 0 with the
// interval [0, 1].
func RatesAt(s Scores, t float64) Rates {
	r := Rates{Threshold: t, Genuine: len(s.Genuine), Impostor: len(s.Impostor)}
	for _, v := range s.Genuine {
		if v >= t {
			r.GenuineAccepted++
		}
	}
	for _, v := range s.Impostor {
		if v >= t {
			r.ImpostorAccepted++
		}
	}
	if r.Genuine > 0 {
		r.TAR = float64(r.GenuineAccepted) / float64(r.Genuine)
	}
	if r.Impostor > 0 {
		r.FAR = float64(r.ImpostorAccepted) / float64(r.Impostor)
	}
	r.TARInterval = Wilson(r.GenuineAccepted, r.Genuine, Z95)
	r.FARInterval = Wilson(r.ImpostorAccepted, r.Impostor, Z95)
	return r
}

// ThresholdForFAR returns the lowest threshold at which at most a fraction
// far of the impostor scores are accepted: just above the (k+1)-th highest
// impostor score, k = floor(far·n) being the false accepts allowed. ok is
// false when there are no impostor scores to calibrate on.
func ThresholdForFAR(impostor []float64, far float64) (t float64, ok bool) {
	n := len(impostor)
	if n == 0 {
		return 0, false
	}
	x := slices.Clone(impostor)
	slices.SortFunc(x, func(a, b float64) int { return -cmpFloat(a, b) })
	k := allowedFalseAccepts(n, far)
	if k >= n {
		// Every impostor may be accepted: the threshold accepts everything.
		return -1, true
	}
	return math.Nextafter(x[k], math.Inf(1)), true
}

// allowedFalseAccepts is floor(far·n), tolerant of far·n landing a hair
// below an integer in floating point (1e-3 · 3000 = 2.9999999999999996).
func allowedFalseAccepts(n int, far float64) int {
	if far <= 0 {
		return 0
	}
	return int(math.Floor(far*float64(n) + 1e-9))
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// MinFalseAccepts is how many false accepts an operating point must expect
// before its FAR is worth stating: Doddington's "rule of 30" (30 errors
// give 90% confidence that the true rate is within ±30% of the observed
// one). An operating point at FAR f thus needs 30/f impostor pairs.
const MinFalseAccepts = 30

// ImpostorsNeeded is the number of impostor pairs an operating point at
// FAR far needs (see MinFalseAccepts).
func ImpostorsNeeded(far float64) int {
	return int(math.Ceil(MinFalseAccepts/far - 1e-9))
}

// ZeroErrorFARBound is the FAR that zero false accepts among n impostor
// pairs rules out at 95% confidence ("rule of three": 3/n): with none
// observed, the FAR may still be anything below it.
func ZeroErrorFARBound(n int) float64 {
	if n <= 0 {
		return 1
	}
	return math.Min(1, 3/float64(n))
}
