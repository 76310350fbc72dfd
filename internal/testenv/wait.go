package testenv

import (
	"errors"
	"testing"
	"time"
)

var errNotYet = errors.New("condition not met")

// Eventually polls cond until it holds, and fails the test if within passes
// first. Tests wait on the thing they expect, never for a fixed time: a
// fixed sleep is either too short on a loaded machine or wasted on an idle
// one. Give within generously; it bounds a failure, not a success.
func Eventually(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	EventuallyNil(tb, within, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// EventuallyNil is Eventually for a check that says why it is not met yet:
// it polls until check returns nil, and a timeout reports the last error.
func EventuallyNil(tb testing.TB, within time.Duration, what string, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	// Short first polls for conditions that hold almost at once, then no
	// more than ten a second, so a long wait costs the machine nothing.
	pause := 5 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s: %v", within, what, err)
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}
