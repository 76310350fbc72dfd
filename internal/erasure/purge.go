// Package erasure forgets a POI completely: DELETE /api/v1/poi/{id} and
// `poi erase` run its purge, `poi erase --verify` its proof.
//
// A purge starts by writing a tombstone (in the same Redis step that removes
// the POI's metadata) and then runs steps that can each be run again. A purge
// that fails part-way stays pending: the next DELETE, `poi erase`, or the
// outbox relay's next round finishes it. Writers that could race a purge (the
// alert stage, the enrolment outbox, the index replicas) check the
// tombstone, so they cannot bring back what the purge removed.
package erasure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/store"
	"poi/streams"
)

// Config tunes purges.
type Config struct {
	// TombstoneTTL is how long an erased POI's tombstone lives.
	TombstoneTTL time.Duration
	// ReplicaWait bounds how long a purge waits for every POI index replica
	// to be handed the deletion before the POI's control messages go.
	ReplicaWait time.Duration
}

// Step names a step of the purge, in order.
type Step string

// The steps of a purge.
const (
	StepTombstone Step = "tombstone" // Redis: tombstone, metadata, creation index, outbox
	StepReplicas  Step = "replicas"  // POI_CONTROL: the deletion, handed to every replica
	StepControl   Step = "control"   // POI_CONTROL: every message of the POI erased
	StepAlerts    Step = "alerts"    // POI_ALERTS: every alert of the POI, and every review of one, erased
	StepRedis     Step = "redis"     // Redis: vectors, photos, negatives, appearances, alerts and their faces, markers
	StepFinish    Step = "finish"    // Redis: tombstone marked purged, pending entry cleared
)

// Local is this process's own POI index replica, which the purge updates
// directly (it would hear of the deletion on POI_CONTROL a moment later).
type Local interface {
	Apply(ev streams.ControlEvent) error
}

// Purger runs purges.
type Purger struct {
	cfg   Config
	st    *store.Store
	js    jetstream.JetStream
	local Local
	log   *slog.Logger
	// afterStep, when set (by tests), runs after each step that succeeded;
	// an error it returns fails the purge there.
	afterStep func(Step) error
}

// NewPurger returns a purger. local may be nil (a process without a POI
// index replica, such as the `poi erase` command).
func NewPurger(cfg Config, st *store.Store, js jetstream.JetStream, local Local, log *slog.Logger) *Purger {
	return &Purger{cfg: cfg, st: st, js: js, local: local, log: log.With("component", "erasure")}
}

// Purge erases the POI, or finishes an earlier purge of it. It returns
// false when Redis holds nothing of the POI and no tombstone (never
// enrolled, or erased so long ago that the tombstone expired).
func (p *Purger) Purge(ctx context.Context, id string) (bool, error) {
	state, err := p.st.BeginErase(ctx, id, p.cfg.TombstoneTTL)
	if err != nil {
		return false, err
	}
	switch state {
	case store.EraseAbsent:
		return false, nil
	case store.ErasePurged:
		return true, nil
	}
	if err := p.after(StepTombstone); err != nil {
		return true, err
	}
	steps := []struct {
		step Step
		run  func(context.Context, string) error
	}{
		{StepReplicas, p.tellReplicas},
		{StepControl, func(ctx context.Context, id string) error {
			return eraseMessages(ctx, p.js, streams.Control, controlFilters(id), id)
		}},
		{StepAlerts, func(ctx context.Context, id string) error {
			return eraseMessages(ctx, p.js, streams.Alerts, alertFilters(id), id)
		}},
		{StepRedis, p.st.DeletePOIData},
		{StepFinish, func(ctx context.Context, id string) error { return p.st.FinishErase(ctx, id, p.cfg.TombstoneTTL) }},
	}
	for _, s := range steps {
		if err := s.run(ctx, id); err != nil {
			return true, fmt.Errorf("erase %s: %s: %w", id, s.step, err)
		}
		if err := p.after(s.step); err != nil {
			return true, err
		}
	}
	p.log.Info("poi erased", "poi_id", id, "resumed", state == store.ErasePurging)
	return true, nil
}

func (p *Purger) after(s Step) error {
	if p.afterStep == nil {
		return nil
	}
	if err := p.afterStep(s); err != nil {
		return fmt.Errorf("after %s: %w", s, err)
	}
	return nil
}

// tellReplicas publishes the deletion (the POI id only) and waits until
// every consumer of POI_CONTROL, one per replica, has been handed it: only
// then may the next step erase the POI's control messages, the deletion
// among them. A retried purge publishes it again (no Nats-Msg-Id: a
// deduplicated repeat would point at a message already erased).
func (p *Purger) tellReplicas(ctx context.Context, id string) error {
	ev := streams.ControlEvent{Header: streams.Current(), Op: streams.OpDeleted, POIID: id}
	if p.local != nil {
		if err := p.local.Apply(ev); err != nil {
			return fmt.Errorf("local replica: %w", err)
		}
	}
	msg, err := streams.NewMsg(streams.ControlSubject(streams.OpDeleted, id), &ev)
	if err != nil {
		return err
	}
	ack, err := p.js.PublishMsg(ctx, msg)
	if err != nil {
		return fmt.Errorf("publish deletion: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, p.cfg.ReplicaWait)
	defer cancel()
	return waitDelivered(wctx, p.js, streams.Control, ack.Sequence)
}

// waitDelivered waits until every consumer of stream has been delivered
// stream sequence seq.
func waitDelivered(ctx context.Context, js jetstream.JetStream, stream string, seq uint64) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	wait := 5 * time.Millisecond
	for {
		behind, err := consumersBehind(ctx, s, seq)
		if err != nil {
			return err
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replicas not handed sequence %d of %s: consumers %v: %w", seq, stream, behind, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func consumersBehind(ctx context.Context, s jetstream.Stream, seq uint64) ([]string, error) {
	var behind []string
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		if ci.Delivered.Stream < seq {
			behind = append(behind, fmt.Sprintf("%s at %d", ci.Name, ci.Delivered.Stream))
		}
	}
	if err := l.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	return behind, nil
}
