// Package outbox publishes enrolments on POI_CONTROL so that no POI written
// to Redis stays unknown to the index replicas of other processes.
//
// store.CreatePOI puts the POI in the control outbox in the same Redis step
// that writes it. Publish then stores the enrolment event on POI_CONTROL
// (with a Nats-Msg-Id, so a repeat within the duplicate window is stored
// once) and takes the POI out of the outbox. When the publish fails, or the
// process dies first, the Relay publishes it: at start and every interval.
// The relay also finishes purges that began and did not finish.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/erasure"
	"poi/internal/store"
	"poi/streams"
)

// Outbox publishes the enrolment events of the POIs in the control outbox.
type Outbox struct {
	st  *store.Store
	js  jetstream.JetStream
	log *slog.Logger
}

// New returns the outbox of st.
func New(st *store.Store, js jetstream.JetStream, log *slog.Logger) *Outbox {
	return &Outbox{st: st, js: js, log: log.With("component", "outbox")}
}

// EnrolledEvent is the control event of a POI's enrolment, or of a change
// of its references (RefsVersion above 0): its whole set of reference
// vectors, for every replica to hold.
func EnrolledEvent(p store.POI) streams.ControlEvent {
	op := streams.OpEnrolled
	if p.RefsVersion > 0 {
		op = streams.OpRefs
	}
	ev := streams.ControlEvent{Header: streams.Current(), Op: op, POIID: p.ID, Model: p.Model}
	for _, r := range p.Refs {
		ev.Refs = append(ev.Refs, streams.RefVector{EmbeddingID: r.EmbeddingID, Vector: r.Vector})
	}
	return ev
}

// MsgID is the Nats-Msg-Id of a POI's enrolment event.
func MsgID(poiID string) string { return "enrolled:" + poiID }

// msgIDOf names the event of p's references as they are now: each change
// is stored once, and is not taken for a repeat of the enrolment.
func msgIDOf(p store.POI) string {
	if p.RefsVersion == 0 {
		return MsgID(p.ID)
	}
	return fmt.Sprintf("refs:%s:%d", p.ID, p.RefsVersion)
}

// Publish stores the enrolment event of p on POI_CONTROL and takes p out of
// the outbox. Should the POI have been erased meanwhile, the event it just
// stored is erased again: a purge that swept POI_CONTROL before this
// publish landed would otherwise leave the vectors there.
func (o *Outbox) Publish(ctx context.Context, p store.POI) error {
	ev := EnrolledEvent(p)
	msg, err := streams.NewMsg(streams.ControlSubject(ev.Op, p.ID), &ev)
	if err != nil {
		return err
	}
	msg.Header.Set(jetstream.MsgIDHeader, msgIDOf(p))
	ack, err := o.js.PublishMsg(ctx, msg)
	if err != nil {
		return fmt.Errorf("publish enrolment %s: %w", p.ID, err)
	}
	erased, err := o.st.Erased(ctx, p.ID)
	if err != nil {
		return fmt.Errorf("publish enrolment %s: %w", p.ID, err)
	}
	if erased {
		if err := erasure.EraseMessage(ctx, o.js, streams.Control, ack.Sequence); err != nil {
			return fmt.Errorf("publish enrolment %s: erased meanwhile: %w", p.ID, err)
		}
	}
	return o.st.EnrolmentPublished(ctx, p.ID)
}

// Relay publishes what the outbox still holds and finishes pending purges.
type Relay struct {
	o     *Outbox
	every time.Duration
	purge func(ctx context.Context, id string) (bool, error)
}

// NewRelay returns a relay that runs every interval; purge finishes a
// pending purge (erasure.Purger.Purge).
func NewRelay(o *Outbox, every time.Duration, purge func(ctx context.Context, id string) (bool, error)) *Relay {
	return &Relay{o: o, every: every, purge: purge}
}

// Run relays at once and then every interval until ctx ends. A failed
// round is logged and tried again at the next tick.
func (r *Relay) Run(ctx context.Context) error {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		if err := r.Once(ctx); err != nil && ctx.Err() == nil {
			r.o.log.Warn("outbox relay round failed; retrying next round", "every", r.every, "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once publishes every pending enrolment and finishes every pending purge.
// It goes through all of them whatever fails, and returns the failures.
func (r *Relay) Once(ctx context.Context) error {
	var errs []error
	ids, err := r.o.st.PendingEnrolments(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := r.relay(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	ids, err = r.o.st.PendingErasures(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, id := range ids {
		if _, err := r.purge(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		r.o.log.Info("pending purge finished by the relay", "poi_id", id)
	}
	return errors.Join(errs...)
}

func (r *Relay) relay(ctx context.Context, id string) error {
	p, err := r.o.st.GetPOI(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// Erased since (BeginErase also clears the entry): nothing to tell.
		return r.o.st.EnrolmentPublished(ctx, id)
	}
	if err != nil {
		return err
	}
	if err := r.o.Publish(ctx, p); err != nil {
		return err
	}
	r.o.log.Info("pending enrolment published by the relay", "poi_id", id)
	return nil
}
