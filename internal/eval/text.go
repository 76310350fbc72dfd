package eval

import (
	"fmt"
	"io"
	"strings"
)

// independenceCaveat is printed under every table of intervals: the Wilson
// intervals count pairs as independent trials, which they are not.
const independenceCaveat = `Intervals are 95% Wilson score intervals that count pairs as independent trials.
They are not: every photo is in many pairs, and most genuine pairs may come from
one person, so the real uncertainty is wider than shown.`

// WriteText writes r for a person to read.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	title := "poi eval"
	if r.Dir != "" {
		title += " " + r.Dir
	}
	if r.Model != "" {
		title += " (model " + r.Model + ")"
	}
	fmt.Fprintln(&b, title)
	fmt.Fprintf(&b, "photos: %d embedded, %d skipped; identities: %d, %d with two or more photos\n",
		r.Photos, len(r.Skipped), r.Identities, len(r.MultiPhoto))
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "  skipped %s: %s\n", s.Photo, s.Reason)
	}
	var per []string
	for _, m := range r.MultiPhoto {
		per = append(per, fmt.Sprintf("%s %d", m.Identity, m.Pairs))
	}
	fmt.Fprintf(&b, "pairs: %d genuine", r.Genuine.Count)
	if len(per) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(per, ", "))
	}
	fmt.Fprintf(&b, ", %d impostor\n\n", r.Impostor.Count)

	fmt.Fprintf(&b, "%-10s %6s %7s %7s %7s %7s %7s %7s %7s\n", "similarity", "count", "min", "p1", "p5", "median", "p95", "p99", "max")
	for _, d := range []struct {
		name string
		d    Distribution
	}{{"genuine", r.Genuine}, {"impostor", r.Impostor}} {
		if d.d.Count == 0 {
			fmt.Fprintf(&b, "%-10s %6d %7s\n", d.name, 0, "-")
			continue
		}
		fmt.Fprintf(&b, "%-10s %6d %7.3f %7.3f %7.3f %7.3f %7.3f %7.3f %7.3f\n", d.name, d.d.Count,
			d.d.Min, d.d.P1, d.d.P5, d.d.Median, d.d.P95, d.d.P99, d.d.Max)
	}
	b.WriteString("\n")
	writePoints(&b, append(append([]OperatingPoint{}, r.AtFAR...), r.AtThreshold...))
	b.WriteString(independenceCaveat + "\n")

	if sp := r.Split; sp != nil {
		fmt.Fprintf(&b, "\nidentity split (seed %d): identities, never photos, are divided; pairs across halves are unused\n", sp.Seed)
		for _, h := range sp.Halves {
			fmt.Fprintf(&b, "  %s: %d identities, %d photos, %d genuine and %d impostor pairs: %s\n",
				h.Name, len(h.Identities), h.Photos, h.GenuinePairs, h.ImpostorPairs, strings.Join(h.Identities, " "))
		}
		for _, f := range sp.Folds {
			fmt.Fprintf(&b, "\nthresholds calibrated on %s, rates measured on %s:\n", f.Calibration, f.Test)
			var pts []OperatingPoint
			for _, cp := range f.AtFAR {
				p := cp.Test
				p.Name += " (" + f.Calibration + ")"
				pts = append(pts, p)
			}
			writePoints(&b, append(pts, f.AtThreshold...))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writePoints(b *strings.Builder, pts []OperatingPoint) {
	fmt.Fprintf(b, "%-22s %9s  %-5s %-16s %9s  %-6s %-16s %9s\n",
		"operating point", "threshold", "TAR", "95% CI", "accepted", "FAR", "95% CI", "accepted")
	for _, p := range pts {
		t := fmt.Sprintf("%9.3f", p.Threshold)
		if p.NoThreshold {
			t = fmt.Sprintf("%9s", "-")
		}
		fmt.Fprintf(b, "%-22s %s  %5.3f [%5.3f, %5.3f] %9s  %6.4f [%6.4f, %6.4f] %9s\n", p.Name, t,
			p.TAR, p.TARInterval.Lo, p.TARInterval.Hi, fmt.Sprintf("%d/%d", p.GenuineAccepted, p.Genuine),
			p.FAR, p.FARInterval.Lo, p.FARInterval.Hi, fmt.Sprintf("%d/%d", p.ImpostorAccepted, p.Impostor))
		if p.Note != "" {
			fmt.Fprintf(b, "  ! %s\n", p.Note)
		}
	}
}
