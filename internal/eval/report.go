package eval

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Threshold is a configured similarity threshold and the key it comes from.
type Threshold struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// DefaultTargetFARs are the false-accept rates `poi eval` finds thresholds
// for.
func DefaultTargetFARs() []float64 { return []float64{1e-2, 1e-3} }

// Options choose the operating points of a report.
type Options struct {
	// TargetFARs are the false-accept rates to find thresholds for, for
	// example 1e-2 and 1e-3.
	TargetFARs []float64
	// Thresholds are the configured thresholds to report the rates at.
	Thresholds []Threshold
}

// OperatingPoint is one threshold and its rates, with what the set can and
// cannot say about them.
type OperatingPoint struct {
	// Name is "FAR 1e-2" for a target FAR, the configuration key for a
	// configured threshold.
	Name      string  `json:"name"`
	TargetFAR float64 `json:"target_far,omitempty"`
	Rates
	// NoThreshold is set when no threshold could be calibrated (no
	// impostor pairs): Threshold is then 0 and nothing is accepted.
	NoThreshold bool `json:"no_threshold,omitempty"`
	// ImpostorsNeeded (target FARs only) is MinFalseAccepts/TargetFAR.
	ImpostorsNeeded int `json:"impostors_needed,omitempty"`
	// Enough reports whether the FAR is worth stating: at least
	// MinFalseAccepts false accepts expected (target FAR) or observed
	// (configured threshold).
	Enough bool `json:"enough_impostors"`
	// Note says in words why a point is weak; empty when it is not.
	Note string `json:"note,omitempty"`
}

// IdentityPairs counts the photos of an identity and the genuine pairs they
// make.
type IdentityPairs struct {
	Identity string `json:"identity"`
	Photos   int    `json:"photos"`
	Pairs    int    `json:"genuine_pairs"`
}

// Report is the evaluation of one set of faces.
type Report struct {
	// Model and Dir are set by the caller that embedded the photos.
	Model   string `json:"model,omitempty"`
	Dir     string `json:"dir,omitempty"`
	Photos  int    `json:"photos"`
	Skipped []Skip `json:"skipped"`

	Identities int `json:"identities"`
	// MultiPhoto lists the identities with two or more photos: the only
	// source of genuine pairs, largest first.
	MultiPhoto []IdentityPairs `json:"multi_photo_identities"`

	Genuine  Distribution `json:"genuine"`
	Impostor Distribution `json:"impostor"`

	AtFAR       []OperatingPoint `json:"at_far"`
	AtThreshold []OperatingPoint `json:"at_threshold"`

	Split *Split `json:"split,omitempty"`
}

// Skip is a photo left out of the evaluation, and why.
type Skip struct {
	Photo  string `json:"photo"`
	Reason string `json:"reason"`
}

// Evaluate scores every pair of faces and reports the distributions and the
// operating points of opt.
func Evaluate(faces []Face, opt Options) Report {
	s := PairScores(faces)
	r := Report{
		Photos:     len(faces),
		Skipped:    []Skip{},
		Identities: len(identities(faces)),
		MultiPhoto: multiPhoto(faces),
		Genuine:    Summarize(s.Genuine),
		Impostor:   Summarize(s.Impostor),
	}
	for _, far := range opt.TargetFARs {
		t, ok := ThresholdForFAR(s.Impostor, far)
		r.AtFAR = append(r.AtFAR, atFAR(s, far, t, ok))
	}
	r.AtThreshold = atThresholds(s, opt.Thresholds)
	return r
}

func atFAR(s Scores, far, t float64, ok bool) OperatingPoint {
	n := len(s.Impostor)
	p := OperatingPoint{Name: "FAR " + farName(far), TargetFAR: far, ImpostorsNeeded: ImpostorsNeeded(far)}
	p.Enough = n >= p.ImpostorsNeeded
	if !ok {
		p.Rates = RatesAt(s, math.Inf(1))
		p.Threshold, p.NoThreshold = 0, true // JSON has no infinity
		p.Note = "no impostor pairs: no threshold can be calibrated"
		return p
	}
	p.Rates = RatesAt(s, t)
	if p.Enough {
		return p
	}
	k := allowedFalseAccepts(n, far)
	p.Note = fmt.Sprintf("too few impostor pairs: %d, where FAR %s needs %d (%d expected false accepts); ",
		n, farName(far), p.ImpostorsNeeded, MinFalseAccepts)
	if k == 0 {
		p.Note += fmt.Sprintf("the threshold is just above the highest impostor score, and no false accept in %d pairs only shows FAR < %.2g (95%%)",
			n, ZeroErrorFARBound(n))
	} else {
		p.Note += fmt.Sprintf("the threshold rests on the %s highest impostor score alone", ordinal(k+1))
	}
	return p
}

func atThresholds(s Scores, ts []Threshold) []OperatingPoint {
	var out []OperatingPoint
	for _, t := range ts {
		p := OperatingPoint{Name: t.Name, Rates: RatesAt(s, t.Value)}
		p.Enough = p.ImpostorAccepted >= MinFalseAccepts
		switch {
		case p.Impostor == 0:
			p.Note = "no impostor pairs"
		case p.ImpostorAccepted == 0:
			p.Note = fmt.Sprintf("no false accept in %d impostor pairs only shows FAR < %.2g (95%%)", p.Impostor, ZeroErrorFARBound(p.Impostor))
		case !p.Enough:
			p.Note = fmt.Sprintf("%s: fewer than %d, so the FAR is known only to within its interval",
				plural(p.ImpostorAccepted, "false accept"), MinFalseAccepts)
		}
		out = append(out, p)
	}
	return out
}

func multiPhoto(faces []Face) []IdentityPairs {
	n := map[string]int{}
	for _, f := range faces {
		n[f.Identity]++
	}
	var out []IdentityPairs
	for id, k := range n {
		if k >= 2 {
			out = append(out, IdentityPairs{Identity: id, Photos: k, Pairs: k * (k - 1) / 2})
		}
	}
	slices.SortFunc(out, func(a, b IdentityPairs) int {
		if a.Pairs != b.Pairs {
			return b.Pairs - a.Pairs
		}
		return strings.Compare(a.Identity, b.Identity)
	})
	return out
}

// Split is the identity-split evaluation: thresholds calibrated on the
// impostor pairs of one half of the identities, rates measured on the
// other half, both ways round.
type Split struct {
	Seed   uint64  `json:"seed"`
	Halves [2]Half `json:"halves"`
	Folds  []Fold  `json:"folds"`
}

// Half is one half of a split. Pairs are counted within the half: pairs
// across halves belong to neither.
type Half struct {
	Name          string   `json:"name"`
	Identities    []string `json:"identities"`
	Photos        int      `json:"photos"`
	GenuinePairs  int      `json:"genuine_pairs"`
	ImpostorPairs int      `json:"impostor_pairs"`
}

// Fold is one direction of a split.
type Fold struct {
	Calibration string `json:"calibration"`
	Test        string `json:"test"`
	// AtFAR has, for each target FAR, the threshold calibrated on the
	// calibration half and the rates it gives on the test half.
	AtFAR []CalibratedPoint `json:"at_far"`
	// AtThreshold is the configured thresholds on the test half.
	AtThreshold []OperatingPoint `json:"at_threshold"`
}

// CalibratedPoint is a threshold calibrated on one half and tested on the
// other.
type CalibratedPoint struct {
	TargetFAR            float64 `json:"target_far"`
	CalibrationImpostors int     `json:"calibration_impostors"`
	// CalibrationEnough reports whether the calibration half had the
	// impostor pairs the target FAR needs (see MinFalseAccepts).
	CalibrationEnough bool `json:"calibration_enough"`
	// Test is the rates on the test half at the calibrated threshold; its
	// Enough and Note are about the test half.
	Test OperatingPoint `json:"test"`
}

// EvaluateSplit splits the identities of faces with SplitIdentities and
// evaluates both folds.
func EvaluateSplit(faces []Face, seed uint64, opt Options) Split {
	a, b := SplitIdentities(faces, seed)
	halves := [2][]Face{a, b}
	scores := [2]Scores{PairScores(a), PairScores(b)}
	sp := Split{Seed: seed}
	for i, name := range []string{"A", "B"} {
		sp.Halves[i] = Half{
			Name: name, Identities: identities(halves[i]), Photos: len(halves[i]),
			GenuinePairs: len(scores[i].Genuine), ImpostorPairs: len(scores[i].Impostor),
		}
	}
	for cal := range 2 {
		test := 1 - cal
		f := Fold{Calibration: sp.Halves[cal].Name, Test: sp.Halves[test].Name}
		for _, far := range opt.TargetFARs {
			t, ok := ThresholdForFAR(scores[cal].Impostor, far)
			cp := CalibratedPoint{
				TargetFAR:            far,
				CalibrationImpostors: len(scores[cal].Impostor),
				CalibrationEnough:    len(scores[cal].Impostor) >= ImpostorsNeeded(far),
				Test:                 atFAR(scores[test], far, t, ok),
			}
			if !ok {
				cp.Test.Note = "no impostor pairs in the calibration half: no threshold"
			} else {
				// atFAR judged the test half as if it had been calibrated
				// on itself; say what matters for a held-out test instead.
				cp.Test.Note = heldOutNote(cp, len(scores[test].Impostor))
			}
			f.AtFAR = append(f.AtFAR, cp)
		}
		f.AtThreshold = atThresholds(scores[test], opt.Thresholds)
		sp.Folds = append(sp.Folds, f)
	}
	return sp
}

func heldOutNote(cp CalibratedPoint, testImpostors int) string {
	need := ImpostorsNeeded(cp.TargetFAR)
	var parts []string
	if !cp.CalibrationEnough {
		how := ""
		if allowedFalseAccepts(cp.CalibrationImpostors, cp.TargetFAR) == 0 {
			how = " (so just above the highest of them)"
		}
		parts = append(parts, fmt.Sprintf("calibrated on %d impostor pairs%s, where FAR %s needs %d",
			cp.CalibrationImpostors, how, farName(cp.TargetFAR), need))
	}
	if testImpostors < need {
		parts = append(parts, fmt.Sprintf("tested on %d", testImpostors))
	}
	if cp.Test.ImpostorAccepted == 0 && testImpostors > 0 {
		parts = append(parts, fmt.Sprintf("no false accept on the test half only shows FAR < %.2g (95%%)", ZeroErrorFARBound(testImpostors)))
	}
	return strings.Join(parts, "; ")
}

// farName writes 0.01 as "1e-2" and 0.005 as "5e-3".
func farName(f float64) string {
	if f <= 0 {
		return "0"
	}
	e := math.Floor(math.Log10(f) + 1e-9)
	m := f / math.Pow(10, e)
	return fmt.Sprintf("%se%d", strings.TrimSuffix(fmt.Sprintf("%.2g", m), ".0"), int(e))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}
