package eval

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func testOptions() Options {
	return Options{
		TargetFARs: DefaultTargetFARs(),
		Thresholds: []Threshold{{"face.match_threshold", 0.40}, {"face.search_threshold", 0.30}},
	}
}

func TestEvaluate(t *testing.T) {
	faces := syntheticSet(17) // 34 faces: 58 genuine pairs, 503 impostor pairs
	r := Evaluate(faces, testOptions())
	if r.Photos != 34 || r.Identities != 21 || r.Genuine.Count != 58 || r.Impostor.Count != 503 {
		t.Fatalf("report counts %d photos %d identities %d/%d pairs, want 34, 21, 58/503",
			r.Photos, r.Identities, r.Genuine.Count, r.Impostor.Count)
	}
	if len(r.MultiPhoto) != 4 || r.MultiPhoto[0] != (IdentityPairs{"franck", 11, 55}) {
		t.Errorf("multi-photo identities %+v, want franck (11 photos, 55 pairs) first of 4", r.MultiPhoto)
	}
	if len(r.AtFAR) != 2 || r.AtFAR[0].Name != "FAR 1e-2" || r.AtFAR[1].Name != "FAR 1e-3" {
		t.Fatalf("operating points %+v", r.AtFAR)
	}
	for _, p := range r.AtFAR {
		// 503 impostor pairs are far from the 3000 and 30000 needed: the
		// report must say so.
		if p.Enough || !strings.Contains(p.Note, "too few impostor pairs") {
			t.Errorf("%s: enough %v note %q, want flagged as too few impostor pairs", p.Name, p.Enough, p.Note)
		}
		if p.FAR > p.TargetFAR {
			t.Errorf("%s: FAR %v above the target", p.Name, p.FAR)
		}
	}
	// Orthogonal identities: every impostor scores 0, every genuine pair
	// near 1, so every threshold above 0 separates them perfectly.
	for _, p := range r.AtThreshold {
		if p.TAR != 1 || p.FAR != 0 || p.Threshold != map[string]float64{"face.match_threshold": 0.4, "face.search_threshold": 0.3}[p.Name] {
			t.Errorf("%s: %+v, want TAR 1 FAR 0 at the configured value", p.Name, p)
		}
		if !strings.Contains(p.Note, "FAR < 0.006") {
			t.Errorf("%s: note %q, want the rule-of-three bound 3/503", p.Name, p.Note)
		}
	}
}

func TestEvaluateEnoughImpostors(t *testing.T) {
	// 80 single-photo identities and two of 2 photos: 84 faces, 3484
	// impostor pairs, enough for FAR 1e-2 but not 1e-3.
	var faces []Face
	for i := range 80 {
		faces = append(faces, Face{Identity: string(rune(0x100 + i)), Vector: unit(128, i, 0)})
	}
	for i := range 2 {
		for p := range 2 {
			faces = append(faces, Face{Identity: "m" + string(rune('0'+i)), Vector: unit(128, 100+i, 0.1*float64(p))})
		}
	}
	r := Evaluate(faces, testOptions())
	if r.Impostor.Count != 84*83/2-2 {
		t.Fatalf("%d impostor pairs", r.Impostor.Count)
	}
	if p := r.AtFAR[0]; !p.Enough || p.Note != "" {
		t.Errorf("FAR 1e-2 over %d impostors: enough %v note %q, want enough and no note", r.Impostor.Count, p.Enough, p.Note)
	}
	if p := r.AtFAR[1]; p.Enough {
		t.Errorf("FAR 1e-3 over %d impostors: enough, want not", r.Impostor.Count)
	}
}

func TestEvaluateSplit(t *testing.T) {
	faces := syntheticSet(17)
	opt := testOptions()
	sp := EvaluateSplit(faces, 42, opt)
	a, b := SplitIdentities(faces, 42)
	sa, sb := PairScores(a), PairScores(b)
	if sp.Halves[0].Photos != len(a) || sp.Halves[1].Photos != len(b) ||
		sp.Halves[0].ImpostorPairs != len(sa.Impostor) || sp.Halves[1].GenuinePairs != len(sb.Genuine) {
		t.Fatalf("halves %+v do not match the split", sp.Halves)
	}
	if len(sp.Folds) != 2 || sp.Folds[0].Calibration != "A" || sp.Folds[0].Test != "B" || sp.Folds[1].Calibration != "B" {
		t.Fatalf("folds %+v, want A->B then B->A", sp.Folds)
	}
	for i, f := range sp.Folds {
		cal, test := []Scores{sa, sb}[i], []Scores{sb, sa}[i]
		for j, cp := range f.AtFAR {
			want, _ := ThresholdForFAR(cal.Impostor, opt.TargetFARs[j])
			if cp.Test.Threshold != want {
				t.Errorf("fold %d FAR %v: threshold %v, want %v from the calibration half", i, cp.TargetFAR, cp.Test.Threshold, want)
			}
			if got := RatesAt(test, want); got != cp.Test.Rates {
				t.Errorf("fold %d FAR %v: rates %+v, want those of the test half %+v", i, cp.TargetFAR, cp.Test.Rates, got)
			}
			if cp.CalibrationEnough || !strings.Contains(cp.Test.Note, "calibrated on") {
				t.Errorf("fold %d: %+v, want the small calibration half flagged", i, cp)
			}
		}
		if len(f.AtThreshold) != 2 || f.AtThreshold[0].Impostor != len(test.Impostor) {
			t.Errorf("fold %d: configured thresholds %+v not measured on the test half", i, f.AtThreshold)
		}
	}
}

// TestReportWithoutImpostors: one identity only. Nothing can be calibrated,
// and the report must still encode (JSON has no infinity) and print.
func TestReportWithoutImpostors(t *testing.T) {
	faces := []Face{{Identity: "x", Vector: unit(4, 0, 0)}, {Identity: "x", Vector: unit(4, 0, 0.1)}}
	r := Evaluate(faces, testOptions())
	sp := EvaluateSplit(faces, 1, testOptions())
	r.Split = &sp
	for _, p := range r.AtFAR {
		if !p.NoThreshold || p.GenuineAccepted != 0 || !strings.Contains(p.Note, "no impostor pairs") {
			t.Errorf("%s: %+v, want no threshold, nothing accepted", p.Name, p)
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatalf("json: %v", err)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "NaN") || strings.Contains(b.String(), "Inf") {
		t.Errorf("text report shows NaN or Inf:\n%s", b.String())
	}
}

func TestWriteText(t *testing.T) {
	r := Evaluate(syntheticSet(17), testOptions())
	r.Dir, r.Model = "set", "fr_feature-test"
	r.Skipped = []Skip{{Photo: "set/x/blank.png", Reason: "no face found"}}
	sp := EvaluateSplit(syntheticSet(17), 1, testOptions())
	r.Split = &sp
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"poi eval set (model fr_feature-test)",
		"photos: 34 embedded, 1 skipped; identities: 21, 4 with two or more photos",
		"skipped set/x/blank.png: no face found",
		"pairs: 58 genuine (franck 55, bieber 1, cage 1, connery 1), 503 impostor",
		"FAR 1e-3", "face.match_threshold", "0.400", "58/58",
		"! too few impostor pairs: 503, where FAR 1e-3 needs 30000",
		"count pairs as independent trials",
		"identity split (seed 1)",
		"thresholds calibrated on A, rates measured on B:",
		"thresholds calibrated on B, rates measured on A:",
		"FAR 1e-2 (A)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestNames(t *testing.T) {
	for f, want := range map[float64]string{1e-2: "1e-2", 1e-3: "1e-3", 5e-3: "5e-3", 0.1: "1e-1", 2.5e-4: "2.5e-4"} {
		if got := farName(f); got != want {
			t.Errorf("farName(%v) = %q, want %q", f, got, want)
		}
	}
	for n, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 21: "21st", 113: "113th"} {
		if got := ordinal(n); got != want {
			t.Errorf("ordinal(%d) = %q, want %q", n, got, want)
		}
	}
	if math.IsNaN(ZeroErrorFARBound(0)) {
		t.Errorf("ZeroErrorFARBound(0) is NaN")
	}
}
