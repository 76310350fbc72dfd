package api

import (
	"context"

	"poi/internal/outbox"
	"poi/internal/store"
)

// enrol stores p create-if-absent (should its id be taken, it is enrolled
// under a fresh one, never over the other POI), adds it to this process's
// replica, and publishes it to the others through the outbox. A failed
// publish is not the client's failure: the POI and its outbox entry are in
// Redis, and the relay publishes it within outbox.relay_interval.
func (s *Server) enrol(ctx context.Context, p store.POI) (store.POI, error) {
	first := true
	ids := func() (string, error) {
		if first {
			first = false
			return p.ID, nil
		}
		return store.NewPOIID()
	}
	stored, err := s.deps.Store.EnrolPOI(ctx, p, ids)
	if err != nil {
		return store.POI{}, err
	}
	if err := s.deps.POI.Apply(outbox.EnrolledEvent(stored)); err != nil {
		return store.POI{}, err
	}
	if err := s.deps.Outbox.Publish(ctx, stored); err != nil {
		s.deps.Log.Warn("enrolment not published yet; the outbox relay will", "poi_id", stored.ID, "error", err)
	}
	return stored, nil
}

// renamed is the answer for the POI as stored: its id and embedding ids
// differ from those the body was built with when the first id was taken.
func (b poiBody) renamed(p store.POI) poiBody {
	if b.POIID == p.ID {
		return b
	}
	b.POIID = p.ID
	b.ReferenceImages = append([]referenceImage(nil), b.ReferenceImages...)
	for i := range b.ReferenceImages {
		b.ReferenceImages[i].EmbeddingID = p.Refs[i].EmbeddingID
	}
	b.Images = append([]enrolledImage(nil), b.Images...)
	n := 0
	for i := range b.Images {
		if b.Images[i].EmbeddingID != "" {
			b.Images[i].EmbeddingID = p.Refs[n].EmbeddingID
			b.Images[i].PhotoURL = photoURL(p.ID, p.Refs[n].EmbeddingID)
			n++
		}
	}
	return b
}
