package eval

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestSummarize(t *testing.T) {
	// 1..101: the type-7 quantile of p is 1 + 100p exactly.
	var x []float64
	for i := 101; i >= 1; i-- { // unsorted on purpose
		x = append(x, float64(i))
	}
	d := Summarize(x)
	want := Distribution{Count: 101, Min: 1, P1: 2, P5: 6, Median: 51, P95: 96, P99: 100, Max: 101}
	if d != want {
		t.Errorf("Summarize(1..101) = %+v, want %+v", d, want)
	}
	if x[0] != 101 {
		t.Errorf("Summarize reordered its input")
	}
	// Interpolation between order statistics: 4 values, p99 = x3 + 0.97(x4-x3).
	d = Summarize([]float64{0, 1, 2, 10})
	if !near(d.P99, 2+0.97*8, 1e-12) || d.Median != 1.5 {
		t.Errorf("Summarize(0,1,2,10) = %+v, want median 1.5, p99 %.2f", d, 2+0.97*8)
	}
	if d := Summarize(nil); d != (Distribution{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", d)
	}
	if d := Summarize([]float64{0.3}); d.Min != 0.3 || d.P1 != 0.3 || d.P99 != 0.3 || d.Max != 0.3 {
		t.Errorf("Summarize(one) = %+v, want every field 0.3", d)
	}
}

func TestWilson(t *testing.T) {
	// Reference values: Newcombe (1998), "Two-sided confidence intervals
	// for the single proportion", Table I, method 3 (score, no correction).
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{
		{0, 10, 0, 0.2775},
		{5, 10, 0.2366, 0.7634},
		{81, 263, 0.2553, 0.3662},
		{15, 148, 0.0624, 0.1605},
		{0, 20, 0, 0.1611},
		{1, 29, 0.0061, 0.1718},
	} {
		got := Wilson(c.k, c.n, Z95)
		if !near(got.Lo, c.lo, 1e-4) || !near(got.Hi, c.hi, 1e-4) {
			t.Errorf("Wilson(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", c.k, c.n, got.Lo, got.Hi, c.lo, c.hi)
		}
	}
	if got := Wilson(0, 0, Z95); got != (Interval{0, 1}) {
		t.Errorf("Wilson(0, 0) = %+v, want [0, 1]", got)
	}
}

func TestRatesAtAcceptsTheThresholdItself(t *testing.T) {
	s := Scores{Genuine: []float64{0.4, 0.39, 0.9}, Impostor: []float64{0.4, 0.1, 0.2, 0.3}}
	r := RatesAt(s, 0.4)
	if r.GenuineAccepted != 2 || r.Genuine != 3 || r.ImpostorAccepted != 1 || r.Impostor != 4 {
		t.Fatalf("RatesAt = %+v, want 2/3 genuine and 1/4 impostor accepted (score >= threshold)", r)
	}
	if !near(r.TAR, 2.0/3, 1e-12) || r.FAR != 0.25 {
		t.Errorf("TAR %v FAR %v, want 2/3 and 1/4", r.TAR, r.FAR)
	}
	if r.TARInterval != Wilson(2, 3, Z95) || r.FARInterval != Wilson(1, 4, Z95) {
		t.Errorf("intervals %+v %+v are not the Wilson intervals of the counts", r.TARInterval, r.FARInterval)
	}
	if r := RatesAt(Scores{}, 0.5); r.TAR != 0 || r.FAR != 0 || r.TARInterval != (Interval{0, 1}) {
		t.Errorf("RatesAt(no pairs) = %+v, want zero rates with [0, 1] intervals", r)
	}
}

func TestThresholdForFAR(t *testing.T) {
	// 0.01, 0.02, ..., 1.00: FAR 5% allows 5 false accepts, so the
	// threshold is just above the 6th highest score, 0.95.
	var imp []float64
	for i := 1; i <= 100; i++ {
		imp = append(imp, float64(i)/100)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(imp), func(i, j int) { imp[i], imp[j] = imp[j], imp[i] })
	th, ok := ThresholdForFAR(imp, 0.05)
	if !ok || !(th > 0.95) || th != math.Nextafter(0.95, 2) {
		t.Fatalf("ThresholdForFAR(0.05) = %v %v, want just above 0.95", th, ok)
	}
	if r := RatesAt(Scores{Impostor: imp}, th); r.ImpostorAccepted != 5 {
		t.Errorf("at the FAR 5%% threshold %d of 100 impostors accepted, want 5", r.ImpostorAccepted)
	}
	// FAR below 1/n: no false accept allowed, just above the maximum.
	if th, _ := ThresholdForFAR(imp, 1e-3); th != math.Nextafter(1, 2) {
		t.Errorf("ThresholdForFAR(1e-3) over 100 = %v, want just above the maximum", th)
	}
	// Ties at the boundary are all rejected: FAR may fall below the target,
	// never above.
	th, _ = ThresholdForFAR([]float64{0.5, 0.5, 0.5, 0.1}, 0.25)
	if r := RatesAt(Scores{Impostor: []float64{0.5, 0.5, 0.5, 0.1}}, th); r.ImpostorAccepted != 0 {
		t.Errorf("tied scores: %d accepted at %v, want 0", r.ImpostorAccepted, th)
	}
	if _, ok := ThresholdForFAR(nil, 0.01); ok {
		t.Errorf("ThresholdForFAR(no impostors) ok, want not ok")
	}
	if th, ok := ThresholdForFAR([]float64{0.2, 0.3}, 1); !ok || th != -1 {
		t.Errorf("ThresholdForFAR(FAR 1) = %v %v, want -1 (accept all)", th, ok)
	}
}

// TestThresholdForFARIsTheLowest checks on random scores, ties included,
// that the threshold meets the target and that the next lower candidate
// (the impostor score it sits just above) would not.
func TestThresholdForFARIsTheLowest(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for trial := range 200 {
		n := 1 + rng.IntN(500)
		imp := make([]float64, n)
		for i := range imp {
			imp[i] = math.Round(rng.NormFloat64()*100) / 1000 // coarse: many ties
		}
		for _, far := range []float64{1e-3, 1e-2, 0.1, 0.5} {
			th, ok := ThresholdForFAR(imp, far)
			if !ok {
				t.Fatalf("trial %d: not ok", trial)
			}
			r := RatesAt(Scores{Impostor: imp}, th)
			if r.FAR > far {
				t.Fatalf("trial %d n %d: FAR %v at %v exceeds the target %v", trial, n, r.FAR, th, far)
			}
			below := math.Nextafter(th, math.Inf(-1))
			if rb := RatesAt(Scores{Impostor: imp}, below); rb.FAR <= far && below >= slices.Min(imp) {
				t.Fatalf("trial %d n %d: a lower threshold %v still meets FAR %v (%v)", trial, n, below, far, rb.FAR)
			}
		}
	}
}

func TestEnoughImpostors(t *testing.T) {
	if got := ImpostorsNeeded(1e-2); got != 3000 {
		t.Errorf("ImpostorsNeeded(1e-2) = %d, want 3000", got)
	}
	if got := ImpostorsNeeded(1e-3); got != 30000 {
		t.Errorf("ImpostorsNeeded(1e-3) = %d, want 30000", got)
	}
	if got := allowedFalseAccepts(3000, 1e-3); got != 3 {
		t.Errorf("allowedFalseAccepts(3000, 1e-3) = %d, want 3 (despite 1e-3*3000 < 3 in floating point)", got)
	}
	if got := ZeroErrorFARBound(300); got != 0.01 {
		t.Errorf("ZeroErrorFARBound(300) = %v, want 0.01", got)
	}
}

// unit returns a unit vector along axis i of dim dimensions, nudged by eps
// along axis (i+1)%dim so that faces of one identity are not identical.
func unit(dim, i int, eps float64) []float32 {
	v := make([]float32, dim)
	n := math.Sqrt(1 + eps*eps)
	v[i] = float32(1 / n)
	v[(i+1)%dim] += float32(eps / n)
	return v
}

func TestPairScores(t *testing.T) {
	var faces []Face
	for id, photos := range []int{3, 1, 2} {
		for p := range photos {
			faces = append(faces, Face{Identity: string(rune('a' + id)), Vector: unit(8, 2*id, 0.1*float64(p))})
		}
	}
	s := PairScores(faces)
	if len(s.Genuine) != 3+0+1 || len(s.Impostor) != 15-4 {
		t.Fatalf("%d genuine and %d impostor pairs, want 4 and 11", len(s.Genuine), len(s.Impostor))
	}
	for _, g := range s.Genuine {
		if g < 0.98 {
			t.Errorf("genuine score %v, want about 1", g)
		}
	}
	for _, i := range s.Impostor {
		if i != 0 {
			t.Errorf("impostor score %v, want 0 (orthogonal identities)", i)
		}
	}
}
