package review

import (
	"errors"
	"testing"
)

func TestTransitionGraph(t *testing.T) {
	all := []string{New, Acknowledged, Confirmed, Dismissed}
	allowed := map[[2]string]bool{
		{New, Acknowledged}: true, {New, Confirmed}: true, {New, Dismissed}: true,
		{Acknowledged, Confirmed}: true, {Acknowledged, Dismissed}: true,
	}
	for _, from := range all {
		for _, to := range all {
			err := Check(from, to)
			switch {
			case to == New:
				if !errors.Is(err, ErrBadStatus) {
					t.Errorf("%s -> %s: %v, want ErrBadStatus", from, to, err)
				}
			case allowed[[2]string{from, to}]:
				if err != nil {
					t.Errorf("%s -> %s: %v, want allowed", from, to, err)
				}
			default:
				if !errors.Is(err, ErrTransition) {
					t.Errorf("%s -> %s: %v, want ErrTransition", from, to, err)
				}
			}
		}
	}
	for _, bad := range []string{"", "confirmed", "Closed"} {
		if err := Check(New, bad); !errors.Is(err, ErrBadStatus) {
			t.Errorf("New -> %q: %v", bad, err)
		}
	}
	if !Final(Confirmed) || !Final(Dismissed) || Final(New) || Final(Acknowledged) {
		t.Error("Confirmed and Dismissed must be the only final statuses")
	}
}

func TestNegativesVeto(t *testing.T) {
	cases := []struct {
		refs   float32
		negs   []float32
		margin float64
		want   bool
	}{
		{0.5, nil, 0, true},
		{0.5, []float32{0.3, 0.49}, 0, true},
		{0.5, []float32{0.3, 0.5}, 0, false}, // a tie is not closer
		{0.5, []float32{0.8}, 0, false},
		{0.5, []float32{0.46}, 0.05, false},
		{0.5, []float32{0.44}, 0.05, true},
	}
	for _, c := range cases {
		if got := Passes(c.refs, c.negs, c.margin); got != c.want {
			t.Errorf("Passes(%v, %v, %v) = %v, want %v", c.refs, c.negs, c.margin, got, c.want)
		}
	}
}
