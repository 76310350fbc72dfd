package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/metrics"
	"poi/internal/testenv"
	"poi/streams"
)

func setup(t *testing.T) (jetstream.JetStream, context.Context) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, js := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := streams.Declare(ctx, js, streams.DefaultLimits(), 3, log); err != nil {
		t.Fatal(err)
	}
	return js, ctx
}

func fastBackoff(int) time.Duration { return 10 * time.Millisecond }

func TestPoolRetriesThenDeadLettersAndRecoversPanics(t *testing.T) {
	js, ctx := setup(t)
	m := metrics.New()
	var mu sync.Mutex
	attempts := map[string]int{}
	h := func(_ context.Context, msg jetstream.Msg) error {
		mu.Lock()
		attempts[string(msg.Data())]++
		n := attempts[string(msg.Data())]
		mu.Unlock()
		switch string(msg.Data()) {
		case "flaky":
			if n < 3 {
				return errors.New("transient")
			}
			return nil
		case "bad":
			return Permanent("malformed", errors.New("cannot parse"))
		case "always":
			return errors.New("still failing")
		case "boom":
			panic("handler bug")
		}
		return nil
	}
	p := New(Config{Stage: "alert", Stream: streams.Sightings, Consumer: streams.ConsumerAlert, Concurrency: 4, MaxDeliver: 3, Backoff: fastBackoff},
		js, h, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.Run(rctx) }()
	for _, body := range []string{"ok", "flaky", "bad", "always", "boom"} {
		if _, err := js.Publish(ctx, streams.Subject(streams.SightingsSubj, "cam"), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(m.DeadLettered.WithLabelValues("alert")) < 3 || testutil.ToFloat64(m.Processed.WithLabelValues("alert")) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dead-lettered %v processed %v", testutil.ToFloat64(m.DeadLettered.WithLabelValues("alert")), testutil.ToFloat64(m.Processed.WithLabelValues("alert")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts["flaky"] != 3 || attempts["bad"] != 1 || attempts["always"] != 3 || attempts["ok"] != 1 {
		t.Fatalf("attempts = %v", attempts)
	}
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("alert", "malformed")); got != 1 {
		t.Fatalf("rejected malformed = %v", got)
	}
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("alert", "panic")); got != 1 {
		t.Fatalf("rejected panic = %v", got)
	}
	dlq, err := js.Stream(ctx, streams.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := dlq.Info(ctx)
	if info.State.Msgs != 3 {
		t.Fatalf("dead-letter stream holds %d messages, want 3", info.State.Msgs)
	}
	raw, err := dlq.GetLastMsgForSubject(ctx, streams.Subject(streams.DeadLetterSubj, streams.ConsumerAlert))
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("Poi-Error") == "" || raw.Header.Get("Poi-Subject") != "poi.sighting.cam" {
		t.Fatalf("dead letter lacks its cause: %v", raw.Header)
	}
	// Work queue: everything is settled, nothing left behind.
	s, _ := js.Stream(ctx, streams.Sightings)
	si, _ := s.Info(ctx)
	if si.State.Msgs != 0 {
		t.Fatalf("%d messages left in the work queue", si.State.Msgs)
	}
}

func TestPoolDrainsInFlightOnShutdown(t *testing.T) {
	js, ctx := setup(t)
	m := metrics.New()
	var started, finished atomic.Int32
	release := make(chan struct{})
	h := func(hctx context.Context, _ jetstream.Msg) error {
		started.Add(1)
		<-release
		if hctx.Err() != nil {
			return hctx.Err()
		}
		finished.Add(1)
		return nil
	}
	p := New(Config{Stage: "alert", Stream: streams.Sightings, Consumer: streams.ConsumerAlert, Concurrency: 2, MaxDeliver: 3, DrainTimeout: 10 * time.Second},
		js, h, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for range 2 {
		if _, err := js.Publish(ctx, streams.Subject(streams.SightingsSubj, "cam"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.Run(rctx) }()
	for started.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	stop() // shutdown begins while two messages are in hand
	time.Sleep(100 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if finished.Load() != 2 || testutil.ToFloat64(m.Processed.WithLabelValues("alert")) != 2 {
		t.Fatalf("finished %d processed %v: in-flight work was not drained", finished.Load(), testutil.ToFloat64(m.Processed.WithLabelValues("alert")))
	}
}

// TestAcquireTakesWhatIsFree: a pull is sized to the slots free when it is
// made, at least one (waited for), and none once the pool is stopping.
func TestAcquireTakesWhatIsFree(t *testing.T) {
	sem := make(chan struct{}, 4)
	sem <- struct{}{}
	if n := acquire(context.Background(), sem); n != 3 || len(sem) != 4 {
		t.Fatalf("acquire with 3 of 4 free: %d (held %d), want 3 (held 4)", n, len(sem))
	}
	release(sem, 2)
	if len(sem) != 2 {
		t.Fatalf("after releasing 2: %d held, want 2", len(sem))
	}
	release(sem, 2)
	ctx, cancel := context.WithCancel(context.Background())
	for range 4 {
		sem <- struct{}{}
	}
	got := make(chan int, 1)
	go func() { got <- acquire(ctx, sem) }()
	select {
	case n := <-got:
		t.Fatalf("acquire with nothing free returned %d at once", n)
	case <-time.After(50 * time.Millisecond):
	}
	<-sem // one handler finishes
	if n := <-got; n != 1 {
		t.Fatalf("acquire once one slot freed: %d, want 1", n)
	}
	cancel()
	if n := acquire(ctx, sem); n != 0 {
		t.Fatalf("acquire after the stop: %d, want 0", n)
	}
}
