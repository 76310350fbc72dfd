package api

import (
	"testing"
	"time"

	"poi/internal/store"
)

func TestDueForExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pois := []store.POI{
		{ID: "never", Status: store.StatusActive},
		{ID: "future", Status: store.StatusActive, ExpiresAt: now.Add(time.Minute)},
		{ID: "past", Status: store.StatusActive, ExpiresAt: now.Add(-time.Minute)},
		{ID: "now", Status: store.StatusActive, ExpiresAt: now},
		{ID: "past-inactive", Status: store.StatusInactive, ExpiresAt: now.Add(-time.Minute)},
	}
	ids := func(ps []store.POI) (out []string) {
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	if got := ids(dueForExpiry(pois, now, ExpiryDeactivate)); len(got) != 2 || got[0] != "past" || got[1] != "now" {
		t.Errorf("deactivate: %v", got)
	}
	// An inactive POI past its expiry is still erased.
	if got := ids(dueForExpiry(pois, now, ExpiryErase)); len(got) != 3 || got[2] != "past-inactive" {
		t.Errorf("erase: %v", got)
	}
}
