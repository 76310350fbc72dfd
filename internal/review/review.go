// Package review holds the pure rules of alert review: which status may
// follow which, and when a dismissed face vetoes a later match.
package review

import (
	"errors"
	"fmt"
)

// Alert statuses. New is the seed's status of a fresh alert.
const (
	New          = "New"
	Acknowledged = "Acknowledged"
	Confirmed    = "Confirmed"
	Dismissed    = "Dismissed"
)

// ErrBadStatus is a status no review may set.
var ErrBadStatus = errors.New("not a review status")

// ErrTransition is a review the alert's current status does not allow.
var ErrTransition = errors.New("transition not allowed")

// next is the transition graph: Confirmed and Dismissed are final, so a
// decision that taught the system something (a negative, a reference) is
// never silently reversed by a later click.
var next = map[string][]string{
	New:          {Acknowledged, Confirmed, Dismissed},
	Acknowledged: {Confirmed, Dismissed},
}

// Valid reports whether s is a status a review may set.
func Valid(s string) bool { return s == Acknowledged || s == Confirmed || s == Dismissed }

// Check reports whether an alert in status from may be reviewed to to: nil,
// ErrBadStatus for a status no review sets, or ErrTransition.
func Check(from, to string) error {
	if !Valid(to) {
		return fmt.Errorf("%q: %w (want %s, %s or %s)", to, ErrBadStatus, Acknowledged, Confirmed, Dismissed)
	}
	for _, s := range next[from] {
		if s == to {
			return nil
		}
	}
	return fmt.Errorf("%s to %s: %w", from, to, ErrTransition)
}

// Final reports whether no review can follow status s.
func Final(s string) bool { return len(next[s]) == 0 }

// Passes reports whether a sighting that matched a POI's references with
// similarity toRefs may alert for it, given its similarities to the POI's
// negatives (faces dismissed as not the POI): only when it is closer to the
// references than to every negative by more than margin.
func Passes(toRefs float32, toNegatives []float32, margin float64) bool {
	for _, n := range toNegatives {
		if float64(toRefs) <= float64(n)+margin {
			return false
		}
	}
	return true
}
