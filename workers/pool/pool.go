// Package pool runs one stage of the pipeline: a JetStream pull consumer
// with bounded in-flight work, explicit acks, backoff on failure, a
// dead-letter stream after the last attempt, and a drain on shutdown.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/metrics"
	"poi/streams"
)

// Handler processes one message. Returning nil acknowledges it; an error
// wrapped with Permanent sends it to the dead-letter stream at once (bad
// input will not get better); any other error is retried with backoff.
// Handlers must be idempotent: JetStream delivers at least once.
type Handler func(ctx context.Context, msg jetstream.Msg) error

type permanentError struct {
	reason string
	err    error
}

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying; reason is a short metric label.
func Permanent(reason string, err error) error { return permanentError{reason: reason, err: err} }

// PermanentReason reports whether err was marked Permanent, and why.
func PermanentReason(err error) (string, bool) {
	var perm permanentError
	if errors.As(err, &perm) {
		return perm.reason, true
	}
	return "", false
}

// Config configures a pool.
type Config struct {
	// Stage names the pool in logs and metrics.
	Stage    string
	Stream   string
	Consumer string
	// Concurrency bounds the messages handled at once by this process.
	Concurrency int
	// MaxDeliver must match the consumer's: on the last attempt a failure
	// goes to the dead-letter stream instead of back to the queue.
	MaxDeliver int
	// Backoff is the delay before the n-th redelivery (n from 1).
	Backoff func(n int) time.Duration
	// DrainTimeout bounds how long in-flight handlers may run after
	// shutdown begins.
	DrainTimeout time.Duration
	// RetryFor is how long a failing message is retried in place (keeping
	// it in progress) before it goes back to JetStream: an outage of Redis
	// or of the embedding service shorter than this costs no delivery
	// attempt, so it can never push a good message to the dead letters.
	RetryFor time.Duration
	// FetchWait bounds one pull request: the pool asks for as many messages
	// as it has free slots, for up to this long, then asks again.
	FetchWait time.Duration
}

// DefaultBackoff doubles from 500 ms up to 30 s.
func DefaultBackoff(n int) time.Duration {
	d := 500 * time.Millisecond << min(n-1, 6)
	return min(d, 30*time.Second)
}

// Pool consumes one durable consumer.
type Pool struct {
	cfg     Config
	js      jetstream.JetStream
	handler Handler
	m       *metrics.Metrics
	log     *slog.Logger
}

// New returns a pool; Run starts it.
func New(cfg Config, js jetstream.JetStream, h Handler, m *metrics.Metrics, log *slog.Logger) *Pool {
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.RetryFor < 0 {
		cfg.RetryFor = 0
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = time.Second
	}
	return &Pool{cfg: cfg, js: js, handler: h, m: m, log: log.With("stage", cfg.Stage)}
}

// Run consumes until ctx is cancelled, then stops pulling and waits (at most
// DrainTimeout) for the messages in hand. Messages never acknowledged are
// redelivered by JetStream to another worker after AckWait.
func (p *Pool) Run(ctx context.Context) error {
	cons, err := p.js.Consumer(ctx, p.cfg.Stream, p.cfg.Consumer)
	if err != nil {
		return fmt.Errorf("pool %s: consumer %s/%s: %w", p.cfg.Stage, p.cfg.Stream, p.cfg.Consumer, err)
	}
	// Handlers get a context that outlives ctx by the drain timeout, so that
	// work in hand can finish instead of failing half way.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stopped := make(chan struct{})
	go p.reportLag(ctx, cons, stopped)

	// Explicit pulls, each for the slots free at the time, rather than the
	// client's Messages iterator: under load the iterator was seen holding
	// no pull request at the server while believing it had one (consumer
	// info: 0 waiting, 0 ack pending, a growing backlog) until a missed
	// heartbeat woke it 20 to 30 s later. A pull here always ends within
	// FetchWait, and the next one is made from what is actually free.
	sem := make(chan struct{}, p.cfg.Concurrency)
	var wg sync.WaitGroup
	p.log.Info("pool started", "stream", p.cfg.Stream, "consumer", p.cfg.Consumer, "concurrency", p.cfg.Concurrency)
	var runErr error
	failures := 0
	for ctx.Err() == nil {
		n := acquire(ctx, sem)
		if n == 0 {
			break
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(p.cfg.FetchWait))
		if err != nil {
			release(sem, n)
			if failures++; failures == 1 || failures%60 == 0 {
				p.log.Warn("pull failed; pulling on", "error", err, "failures", failures)
			}
			sleepCtx(ctx, min(time.Duration(failures)*100*time.Millisecond, p.cfg.FetchWait))
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				p.handle(hctx, msg)
			}()
		}
		release(sem, n-got)
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				runErr = fmt.Errorf("pool %s: pull: %w", p.cfg.Stage, err)
				break
			}
			if failures++; failures == 1 || failures%60 == 0 {
				p.log.Warn("pull ended with an error; pulling on", "error", err, "failures", failures)
			}
			sleepCtx(ctx, min(time.Duration(failures)*100*time.Millisecond, p.cfg.FetchWait))
			continue
		}
		failures = 0
	}
	close(stopped)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.cfg.DrainTimeout):
		p.log.Warn("drain timeout: abandoning in-flight messages to redelivery")
		hcancel()
		<-done
	}
	p.log.Info("pool stopped")
	return runErr
}

// acquire waits for one free slot of sem, then takes every other slot free
// at this moment, and returns how many it took (0: ctx ended first).
func acquire(ctx context.Context, sem chan struct{}) int {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < cap(sem) {
		select {
		case sem <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

// release gives n slots of sem back.
func release(sem chan struct{}, n int) {
	for range n {
		<-sem
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// reportLag keeps the stage's lag gauges current (every pool process
// reports the same consumer-wide figures).
func (p *Pool) reportLag(ctx context.Context, cons jetstream.Consumer, stopped <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stopped:
			return
		case <-t.C:
		}
		info, err := cons.Info(ctx)
		if err != nil {
			continue // a passing error: the next tick reports
		}
		p.m.ConsumerPending.WithLabelValues(p.cfg.Stage).Set(float64(info.NumPending))
		p.m.AckPending.WithLabelValues(p.cfg.Stage).Set(float64(info.NumAckPending))
	}
}

func (p *Pool) handle(ctx context.Context, msg jetstream.Msg) {
	stage := p.cfg.Stage
	p.m.Received.WithLabelValues(stage).Inc()
	meta, err := msg.Metadata()
	delivered := 1
	if err == nil {
		delivered = int(meta.NumDelivered)
	}
	if delivered > 1 {
		p.m.Redelivered.WithLabelValues(stage).Inc()
	}
	start := time.Now()
	// While the handler works, tell JetStream the message is in progress,
	// so a slow handler is not mistaken for a dead one.
	hb := time.NewTicker(3 * time.Second)
	hbDone := make(chan struct{})
	go func() {
		for {
			select {
			case <-hb.C:
				_ = msg.InProgress()
			case <-hbDone:
				return
			}
		}
	}()
	herr := p.retrying(ctx, msg)
	hb.Stop()
	close(hbDone)
	p.m.Latency.WithLabelValues(stage).Observe(time.Since(start).Seconds())
	if herr == nil {
		// Not waiting for the server to confirm the ack saves a round trip a
		// message: the work is done and idempotent, so an ack that is lost
		// costs one redelivery, which is recognised and acknowledged then.
		if err := msg.Ack(); err != nil {
			p.log.Warn("ack failed", "subject", msg.Subject(), "error", err)
			return
		}
		p.m.Processed.WithLabelValues(stage).Inc()
		return
	}
	var perm permanentError
	if errors.As(herr, &perm) {
		p.m.Rejected.WithLabelValues(stage, perm.reason).Inc()
		p.log.Warn("rejected", "subject", msg.Subject(), "reason", perm.reason, "error", herr)
		p.deadLetter(ctx, msg, herr)
		return
	}
	if delivered >= p.cfg.MaxDeliver {
		p.m.Rejected.WithLabelValues(stage, "max_deliver").Inc()
		p.log.Error("giving up after last delivery", "subject", msg.Subject(), "delivered", delivered, "error", herr)
		p.deadLetter(ctx, msg, herr)
		return
	}
	p.log.Warn("will retry", "subject", msg.Subject(), "delivered", delivered, "error", herr)
	if err := msg.NakWithDelay(p.cfg.Backoff(delivered)); err != nil {
		p.log.Warn("nak failed", "subject", msg.Subject(), "error", err)
	}
}

// retrying runs the handler, retrying transient failures in place for up to
// RetryFor with a growing pause (the heartbeat of handle keeps the message
// from being redelivered elsewhere meanwhile).
func (p *Pool) retrying(ctx context.Context, msg jetstream.Msg) error {
	deadline := time.Now().Add(p.cfg.RetryFor)
	wait := 100 * time.Millisecond
	for {
		err := p.safeHandle(ctx, msg)
		var perm permanentError
		if err == nil || errors.As(err, &perm) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return err
		}
		p.log.Warn("retrying in place", "subject", msg.Subject(), "error", err, "wait", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// safeHandle keeps a handler bug on one message from killing the worker.
func (p *Pool) safeHandle(ctx context.Context, msg jetstream.Msg) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent("panic", fmt.Errorf("handler panic: %v", r))
		}
	}()
	return p.handler(ctx, msg)
}

func (p *Pool) deadLetter(ctx context.Context, msg jetstream.Msg, cause error) {
	if err := DeadLetter(ctx, p.js, p.cfg.Consumer, msg, cause); err != nil {
		p.log.Error("dead-letter publish failed; leaving message for redelivery", "error", err)
		_ = msg.NakWithDelay(p.cfg.Backoff(1))
		return
	}
	p.m.DeadLettered.WithLabelValues(p.cfg.Stage).Inc()
}

// DeadLetter copies the message with its failure to the dead-letter stream,
// then terminates it. If the copy fails the message is left alone for the
// caller to nak: nothing is dropped without a trace.
func DeadLetter(ctx context.Context, js jetstream.JetStream, consumer string, msg jetstream.Msg, cause error) error {
	delivered := 1
	if meta, err := msg.Metadata(); err == nil {
		delivered = int(meta.NumDelivered)
	}
	dl := nats.NewMsg(streams.Subject(streams.DeadLetterSubj, consumer))
	dl.Data = msg.Data()
	for k, v := range msg.Headers() { // the envelope's metadata travels in headers
		dl.Header[k] = v
	}
	dl.Header.Set("Poi-Error", cause.Error())
	dl.Header.Set("Poi-Subject", msg.Subject())
	dl.Header.Set("Poi-Delivered", strconv.Itoa(delivered))
	if meta, err := msg.Metadata(); err == nil {
		dl.Header.Set("Poi-Stream-Seq", strconv.FormatUint(meta.Sequence.Stream, 10))
		dl.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", consumer, meta.Sequence.Stream))
	}
	if _, err := js.PublishMsg(ctx, dl); err != nil {
		return fmt.Errorf("dead-letter %s: %w", msg.Subject(), err)
	}
	// A failed Term leaves the message to be redelivered: the copy is then
	// repeated under the same id, which the dead-letter stream drops.
	_ = msg.Term()
	return nil
}
