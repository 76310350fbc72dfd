package api

import (
	"context"
	"time"

	"poi/internal/audit"
	"poi/internal/store"
	"poi/streams"
)

// Expiry actions (review.expiry_action).
const (
	ExpiryDeactivate = "deactivate"
	ExpiryErase      = "erase"
)

// expiryActor is who the audit trail names for what the loop does.
func expiryActor() streams.AuditActor { return streams.AuditActor{Name: "expiry", Role: "system"} }

// dueForExpiry is the pure part of the loop: the POIs past their
// expires_at that the action still has to do something to.
func dueForExpiry(pois []store.POI, now time.Time, action string) []store.POI {
	var out []store.POI
	for _, p := range pois {
		if p.ExpiresAt.IsZero() || p.ExpiresAt.After(now) {
			continue
		}
		if action == ExpiryDeactivate && p.Status == store.StatusInactive {
			continue
		}
		out = append(out, p)
	}
	return out
}

// RunExpiry deactivates or erases (review.expiry_action) the POIs past
// their expires_at, at once and then every review.expiry_interval, until
// ctx ends. Every API process runs it: both actions are idempotent, so two
// processes doing one POI at once do no harm.
func (s *Server) RunExpiry(ctx context.Context) error {
	t := time.NewTicker(s.deps.Config.Review.ExpiryInterval)
	defer t.Stop()
	for {
		if err := s.expireOnce(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.deps.Log.Warn("poi expiry round failed; retrying next round", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Server) expireOnce(ctx context.Context, now time.Time) error {
	pois, err := s.deps.Store.ListPOIs(ctx, false)
	if err != nil {
		return err
	}
	action := s.deps.Config.Review.ExpiryAction
	for _, p := range dueForExpiry(pois, now, action) {
		if action == ExpiryErase {
			if _, err := s.deps.Erase.Purge(ctx, p.ID); err != nil {
				return err
			}
		} else {
			inactive := store.StatusInactive
			if err := s.deps.Store.UpdatePOI(ctx, p.ID, store.POIUpdate{Status: &inactive}); err != nil {
				return err
			}
		}
		s.deps.Log.Info("poi expired", "poi_id", p.ID, "action", action, "expires_at", p.ExpiresAt)
		ev := streams.AuditEvent{Action: audit.POIExpire, Actor: expiryActor(), Details: map[string]any{"poi_id": p.ID, "action": action}}
		if err := s.recorder.Record(ctx, ev); err != nil {
			s.deps.Log.Error("audit record not stored", "action", audit.POIExpire, "poi_id", p.ID, "error", err)
		}
	}
	return nil
}
