// Package partition runs a stage whose work must stay in order per key (a
// camera): the stream holds the key's partition in its subjects (a stream
// subject transform), each partition has its own durable consumer pinned to
// one client at a time (a JetStream priority group with the pinned policy),
// and the partitions are spread over the worker processes that run the
// stage.
//
// Who should own what is decided from a membership list: every process
// announces itself in a key-value bucket whose entries expire, and every
// process computes the same assignment from the same list. The assignment is
// a preference, not a lock: exclusivity is the server's pin. A process that
// dies stops pulling; its pin expires PinnedTTL later, by which time all it
// held is due for redelivery (PinnedTTL exceeds the ack wait plus a fetch),
// and JetStream redelivers before it delivers anything newer, so the next
// owner sees the partition's messages in their order.
package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/metrics"
	"poi/streams"
	"poi/workers/pool"
)

// ErrNotTried is the result of a message a batch handler left alone after
// an earlier message of the batch failed: order forbids going past it.
var ErrNotTried = errors.New("not tried: an earlier message of the partition failed")

// Handler handles the messages of one partition, in their order.
type Handler interface {
	// HandleBatch returns one result per message. After a message fails
	// with a transient error, it must leave the later ones alone
	// (ErrNotTried); a Permanent error only stops that one message.
	HandleBatch(ctx context.Context, partition int, msgs []jetstream.Msg) []error
	// Acquired and Released tell the handler when this process starts and
	// stops owning a partition, so that state it caches is reloaded by the
	// next owner.
	Acquired(ctx context.Context, partition int)
	Released(partition int)
}

// Config configures a partitioned stage.
type Config struct {
	// Stage names the stage in logs, metrics and membership keys.
	Stage  string
	Stream string
	// Consumer names partition p's durable consumer.
	Consumer   func(p int) string
	Partitions int
	// Batch bounds the messages of one fetch.
	Batch int
	// FetchWait bounds how long a fetch waits for messages. A pinned owner
	// renews its pin with every fetch.
	FetchWait time.Duration
	// Heartbeat is how often membership is announced and read.
	Heartbeat time.Duration
	// AckWait is the consumers' ack wait: messages in hand are marked in
	// progress three times per ack wait.
	AckWait time.Duration
	// Settle bounds how long a new owner waits, before its first fetch, for
	// what the previous owner was given to be acknowledged. An owner that
	// died leaves deliveries that are redelivered only after the ack wait,
	// and anything newer fetched before then would be applied first: Settle
	// must exceed AckWait + FetchWait (the pinned TTL is used).
	Settle time.Duration
	// MaxDeliver, Backoff and RetryFor are as in package pool.
	MaxDeliver int
	Backoff    func(n int) time.Duration
	RetryFor   time.Duration
	// Member names this process in the group (default: host, pid and a
	// random suffix).
	Member string
}

// Group owns a stage's partitions on behalf of this process.
type Group struct {
	cfg Config
	js  jetstream.JetStream
	h   Handler
	m   *metrics.Metrics
	log *slog.Logger

	mu      sync.Mutex
	running map[int]*runner
	// stopping are runners handing a partition over; the partition is not
	// started again here until its runner is done.
	stopping map[int]*runner
	owned    []int
}

type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a group; Run joins it.
func New(cfg Config, js jetstream.JetStream, h Handler, m *metrics.Metrics, log *slog.Logger) *Group {
	if cfg.Member == "" {
		cfg.Member = DefaultMember()
	}
	if cfg.Backoff == nil {
		cfg.Backoff = pool.DefaultBackoff
	}
	return &Group{cfg: cfg, js: js, h: h, m: m, log: log.With("stage", cfg.Stage, "member", cfg.Member), running: map[int]*runner{}, stopping: map[int]*runner{}}
}

// DefaultMember names a process uniquely: host, pid and a random suffix (a
// restarted process is a new member; its predecessor's entry expires).
func DefaultMember() string {
	host, _ := os.Hostname()
	return keySafe(fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.Uint32()&0xffff))
}

// keySafe keeps the characters a key-value key may hold.
func keySafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// Assign is the partitions member owns among members: sorted members take
// partitions round-robin, so every process computes the same split and it
// is as even as the partition count allows.
func Assign(members []string, partitions int, member string) []int {
	sorted := slices.Clone(members)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	i := slices.Index(sorted, member)
	if i < 0 {
		return nil
	}
	var out []int
	for p := i; p < partitions; p += len(sorted) {
		out = append(out, p)
	}
	return out
}

// Owned returns the partitions this process currently runs.
func (g *Group) Owned() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.owned)
}

// Run announces this process, follows the membership and runs the partitions
// assigned to it until ctx ends; then it leaves the group, finishes the
// messages in hand and hands its partitions over.
func (g *Group) Run(ctx context.Context) error {
	kv, err := g.js.KeyValue(ctx, streams.Members)
	if err != nil {
		return fmt.Errorf("partition %s: members bucket: %w", g.cfg.Stage, err)
	}
	key := g.cfg.Stage + "." + g.cfg.Member
	g.log.Info("joining partitioned stage", "partitions", g.cfg.Partitions)
	// Announcing runs on its own clock: nothing this process does with its
	// partitions (a slow hand-over, a busy machine) may let its entry
	// expire, or the others would take its partitions while it still
	// holds them.
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		t := time.NewTicker(g.cfg.Heartbeat)
		defer t.Stop()
		for {
			if _, err := kv.Put(ctx, key, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil && ctx.Err() == nil {
				g.log.Warn("announcing membership", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	tick := time.NewTicker(g.cfg.Heartbeat)
	defer tick.Stop()
	for {
		g.sync(ctx, kv)
		select {
		case <-ctx.Done():
			<-announced
			// Leave first, so the others take the partitions over as soon as
			// they are released.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.Heartbeat)
			if err := kv.Delete(dctx, key); err != nil {
				g.log.Warn("leaving the group", "error", err)
			}
			cancel()
			g.apply(ctx, nil)
			g.mu.Lock()
			var stopping []*runner
			for _, r := range g.stopping {
				stopping = append(stopping, r)
			}
			g.mu.Unlock()
			for _, r := range stopping {
				<-r.done
			}
			g.log.Info("left partitioned stage")
			return nil
		case <-tick.C:
		}
	}
}

// sync applies the assignment of the members it can read. When the bucket
// cannot be read it keeps what it runs: the pins keep ownership exclusive
// meanwhile.
func (g *Group) sync(ctx context.Context, kv jetstream.KeyValue) {
	lister, err := kv.ListKeysFiltered(ctx, g.cfg.Stage+".*")
	if err != nil {
		g.log.Warn("reading membership", "error", err)
		return
	}
	var members []string
	for k := range lister.Keys() {
		members = append(members, strings.TrimPrefix(k, g.cfg.Stage+"."))
	}
	if !slices.Contains(members, g.cfg.Member) {
		members = append(members, g.cfg.Member)
	}
	g.apply(ctx, Assign(members, g.cfg.Partitions, g.cfg.Member))
	g.reportLag(ctx)
}

// apply starts the runners of newly assigned partitions and stops those no
// longer assigned, without waiting for them: a partition being handed over
// is started again here only once its runner is done.
func (g *Group) apply(ctx context.Context, want []int) {
	g.mu.Lock()
	for p, r := range g.stopping {
		select {
		case <-r.done:
			delete(g.stopping, p)
		default:
		}
	}
	var stopped []int
	for p, r := range g.running {
		if !slices.Contains(want, p) {
			r.cancel()
			g.stopping[p] = r
			stopped = append(stopped, p)
			delete(g.running, p)
		}
	}
	var started []int
	for _, p := range want {
		if _, ok := g.running[p]; ok {
			continue
		}
		if _, ok := g.stopping[p]; ok {
			continue // still handing over from an earlier release
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &runner{cancel: cancel, done: make(chan struct{})}
		g.running[p] = r
		started = append(started, p)
		go func() {
			defer close(r.done)
			g.runPartition(rctx, p)
		}()
	}
	g.owned = slices.Sorted(func(yield func(int) bool) {
		for p := range g.running {
			if !yield(p) {
				return
			}
		}
	})
	owned := len(g.running)
	g.mu.Unlock()
	if len(started) > 0 || len(stopped) > 0 {
		g.m.Rebalances.WithLabelValues(g.cfg.Stage).Inc()
		g.m.PartitionsOwned.WithLabelValues(g.cfg.Stage).Set(float64(owned))
		for _, p := range started {
			g.m.PartitionOwned.WithLabelValues(g.cfg.Stage, strconv.Itoa(p)).Set(1)
		}
		for _, p := range stopped {
			g.m.PartitionOwned.WithLabelValues(g.cfg.Stage, strconv.Itoa(p)).Set(0)
		}
		g.log.Info("partitions changed", "owned", g.Owned(), "acquired", started, "released", stopped)
	}
}

// runPartition fetches and handles one partition until ctx ends, then
// hands it over.
func (g *Group) runPartition(ctx context.Context, p int) {
	name := g.cfg.Consumer(p)
	log := g.log.With("partition", p)
	cons, err := g.consumer(ctx, name)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("partition consumer", "error", err)
		}
		return
	}
	gt := g.settle(ctx, name, log)
	g.h.Acquired(ctx, p)
	pins := &pinWatch{}
	defer g.h.Released(p)
	// Handlers finish what they hold after ctx ends (a handover waits for
	// them); only a fetch stops at once.
	hctx := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(g.cfg.Batch, jetstream.FetchMaxWait(g.cfg.FetchWait), jetstream.FetchPriorityGroup(streams.PriorityGroup))
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("fetch", "error", err)
				sleep(ctx, g.cfg.Heartbeat)
			}
			continue
		}
		g.drain(ctx, hctx, p, batch, gt, pins, func(held []jetstream.Msg) *gate {
			return g.repinned(hctx, p, name, held, log)
		})
		if gt.shut() {
			g.observeGate(ctx, name, gt, log)
		}
		if late := gt.admit(nil, time.Now()); len(late) > 0 {
			g.handleGated(ctx, hctx, p, late, gt)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, jetstream.ErrNoHeartbeat) && ctx.Err() == nil {
			log.Debug("fetch ended", "error", err)
		}
	}
	g.handOver(hctx, name, log)
}

// settle waits until nothing delivered on the partition is unacknowledged
// (a hand-over from a live owner: at once), or Settle passes (an owner that
// died: its deliveries are then due for redelivery, which JetStream serves
// before anything newer).
//
// It returns the gate that holds back anything newer than what the previous
// owner was given until those deliveries have come back: JetStream serves
// redeliveries first, and the gate makes the order independent of that.
func (g *Group) settle(ctx context.Context, name string, log *slog.Logger) *gate {
	quiet, hardSpan := g.gateSpans()
	open := &gate{quiet: quiet, hardSpan: hardSpan}
	deadline := time.Now().Add(g.cfg.Settle)
	var info *jetstream.ConsumerInfo
	for {
		c, err := g.js.Consumer(ctx, g.cfg.Stream, name)
		if err == nil {
			info = c.CachedInfo()
			if info.NumAckPending == 0 {
				return open
			}
		}
		if time.Now().After(deadline) || !sleep(ctx, 100*time.Millisecond) {
			break
		}
	}
	if info == nil {
		return open
	}
	log.Info("took over a partition with unacknowledged deliveries", "waited", g.cfg.Settle, "unacknowledged", info.NumAckPending, "up_to", info.Delivered.Stream)
	return g.shutGate(info, time.Now())
}

// shutGate holds back what is newer than the deliveries info counts as
// unacknowledged until they have come back.
func (g *Group) shutGate(info *jetstream.ConsumerInfo, now time.Time) *gate {
	quiet, hardSpan := g.gateSpans()
	return &gate{upTo: info.Delivered.Stream, remaining: info.NumAckPending, until: now.Add(quiet), quiet: quiet,
		hardSpan: hardSpan, hardUntil: now.Add(hardSpan)}
}

// gateSpans are a gate's quiet time (every old delivery is due for
// redelivery by then) and how long it waits at most for a previous owner
// that is alive: it finishes the batch in its hands, each of its handles
// bounded by RetryFor once it has lost the partition, and a full fetch is
// handled in a few of them. Past that, what it held is taken as lost for
// good.
func (g *Group) gateSpans() (quiet, hardSpan time.Duration) {
	quiet = 2*g.cfg.AckWait + g.cfg.FetchWait
	return quiet, quiet + 4*(g.cfg.RetryFor+g.cfg.AckWait)
}

// repinned takes the partition over again when its pin has changed while
// this process ran it: another process may have been pinned in between
// (this one's membership could not be read, or its pin expired during a
// long retry) and may still hold deliveries, older than the ones just
// fetched, that come back later. The handler forgets the partition's state
// (the other owner may have committed since) and the messages in hand wait
// in a fresh gate for those deliveries. It returns the gate.
func (g *Group) repinned(ctx context.Context, p int, name string, held []jetstream.Msg, log *slog.Logger) *gate {
	g.m.Rebalances.WithLabelValues(g.cfg.Stage).Inc()
	g.h.Released(p)
	g.h.Acquired(ctx, p)
	c, err := g.js.Consumer(ctx, g.cfg.Stream, name)
	if err != nil {
		// Without the consumer's state, wait out the quiet time for
		// redeliveries of whatever the other owner held; what is newer
		// than the messages in hand waits.
		log.Warn("pinned again: consumer info", "error", err)
		var upTo uint64
		for _, m := range held {
			upTo = max(upTo, seqOf(m))
		}
		now := time.Now()
		quiet, hardSpan := g.gateSpans()
		return &gate{upTo: upTo, remaining: len(held) + 1, until: now.Add(quiet), quiet: quiet, hardSpan: hardSpan, hardUntil: now.Add(hardSpan)}
	}
	info := c.CachedInfo()
	log.Info("pinned again after another pin: holding newer messages for deliveries made meanwhile", "unacknowledged", info.NumAckPending, "up_to", info.Delivered.Stream)
	return g.shutGate(info, time.Now())
}

// observeGate feeds the partition consumer's state to a shut gate. When it
// cannot be read the gate keeps what it knew.
func (g *Group) observeGate(ctx context.Context, name string, gt *gate, log *slog.Logger) {
	c, err := g.js.Consumer(ctx, g.cfg.Stream, name)
	if err != nil {
		log.Debug("gate: consumer info", "error", err)
		return
	}
	info := c.CachedInfo()
	gt.observe(info.AckFloor.Stream, info.NumAckPending)
	if gt.outstanding && time.Now().After(gt.until) {
		log.Info("holding newer messages: the previous owner still holds older ones", "up_to", gt.upTo, "ack_floor", info.AckFloor.Stream, "unacknowledged", info.NumAckPending, "held", len(gt.inHand()))
	}
}

// consumer binds the partition's consumer, retrying while the stream is
// being declared by another process.
func (g *Group) consumer(ctx context.Context, name string) (jetstream.Consumer, error) {
	for {
		c, err := g.js.Consumer(ctx, g.cfg.Stream, name)
		if err == nil {
			return c, nil
		}
		if !sleep(ctx, g.cfg.Heartbeat) {
			return nil, fmt.Errorf("consumer %s/%s: %w", g.cfg.Stream, name, err)
		}
	}
}

// drain handles a fetch's messages as they arrive: whatever has arrived is
// handled together, so a busy partition is handled in large batches and an
// idle one without waiting for a batch to fill. Messages that arrived and
// wait their turn (or wait behind the gate) are kept in progress, so that a
// slow batch does not get the ones behind it redelivered.
//
// When the fetched messages carry another pin than the ones before, the
// partition is taken over again (repin returns the new gate, given every
// message in hand).
func (g *Group) drain(live, ctx context.Context, p int, batch jetstream.MessageBatch, gt *gate, pins *pinWatch, repin func(held []jetstream.Msg) *gate) {
	var mu sync.Mutex
	var queue []jetstream.Msg
	arrived := make(chan struct{}, 1)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for m := range batch.Messages() {
			mu.Lock()
			queue = append(queue, m)
			mu.Unlock()
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
	}()
	stopBeat := g.keepInProgress(func() []jetstream.Msg {
		mu.Lock()
		defer mu.Unlock()
		return append(slices.Clone(queue), gt.inHand()...)
	})
	defer stopBeat()
	for {
		mu.Lock()
		n := min(len(queue), g.cfg.Batch)
		msgs := slices.Clone(queue[:n])
		queue = queue[n:]
		if n > 0 && pins.changed(msgs) {
			held := append(gt.inHand(), msgs...)
			mu.Unlock()
			fresh := repin(held)
			mu.Lock()
			*gt = *fresh
			msgs = held
		}
		if n > 0 {
			msgs = gt.admit(msgs, time.Now())
		}
		mu.Unlock()
		if n == 0 {
			select {
			case <-arrived:
				continue
			case <-closed:
				mu.Lock()
				empty := len(queue) == 0
				mu.Unlock()
				if empty {
					return
				}
				continue
			}
		}
		if len(msgs) > 0 {
			g.handleGated(live, ctx, p, msgs, gt)
		}
	}
}

// keepInProgress marks the messages list returns in progress three times
// per ack wait, until the returned function is called.
func (g *Group) keepInProgress(list func() []jetstream.Msg) func() {
	t := time.NewTicker(max(g.cfg.AckWait/3, 100*time.Millisecond))
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				for _, m := range list() {
					_ = m.InProgress()
				}
			case <-done:
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

// handleGated handles msgs and makes the gate wait for what was given back:
// JetStream redelivers it only after a backoff and meanwhile delivers what
// is newer, which must not overtake it.
func (g *Group) handleGated(live, ctx context.Context, p int, msgs []jetstream.Msg, gt *gate) {
	if back, wait := g.handle(live, ctx, p, msgs); len(back) > 0 {
		gt.await(back, time.Now().Add(wait))
	}
}

// handle runs the handler over msgs in order, acknowledging each result;
// transient failures are retried in place (the messages stay in progress),
// then given back to JetStream in order. It returns the messages given back
// for redelivery and the longest backoff before they return.
//
// Handlers run under ctx, which outlives the partition's ownership so that
// work in hand finishes; live is the ownership itself: once it ends, a
// failing message is given back at once instead of being retried, so that
// a shutdown or a hand-over is not held up by an outage.
func (g *Group) handle(live, ctx context.Context, p int, msgs []jetstream.Msg) ([]jetstream.Msg, time.Duration) {
	stage := g.cfg.Stage
	g.m.Received.WithLabelValues(stage).Add(float64(len(msgs)))
	for _, m := range msgs {
		if meta, err := m.Metadata(); err == nil && meta.NumDelivered > 1 {
			g.m.Redelivered.WithLabelValues(stage).Inc()
		}
	}
	// The heartbeat goroutine reads what is still in hand while the loop
	// below shortens it: the list is handed over under a lock.
	var heldMu sync.Mutex
	held := msgs
	stopBeat := g.keepInProgress(func() []jetstream.Msg {
		heldMu.Lock()
		defer heldMu.Unlock()
		return held
	})
	defer stopBeat()
	start := time.Now()
	deadline := start.Add(g.cfg.RetryFor)
	wait := 100 * time.Millisecond
	for len(msgs) > 0 {
		results := g.h.HandleBatch(ctx, p, msgs)
		i := 0
		for ; i < len(msgs); i++ {
			err := results[i]
			if err == nil {
				_ = msgs[i].Ack() // idempotent handlers: a lost ack is a harmless redelivery
				g.m.Processed.WithLabelValues(stage).Inc()
				continue
			}
			if reason, ok := pool.PermanentReason(err); ok {
				g.reject(ctx, msgs[i], reason, err)
				continue
			}
			break
		}
		if n := len(msgs); n > 0 {
			g.m.Latency.WithLabelValues(stage).Observe(time.Since(start).Seconds() / float64(n))
		}
		msgs = msgs[i:]
		heldMu.Lock()
		held = msgs
		heldMu.Unlock()
		if len(msgs) == 0 {
			return nil, 0
		}
		err := results[i]
		if live.Err() != nil || time.Now().Add(wait).After(deadline) {
			return g.giveBack(ctx, msgs, err)
		}
		g.log.Warn("retrying in place", "partition", p, "subject", msgs[0].Subject(), "error", err, "wait", wait)
		sleep(live, wait)
		wait = min(wait*2, 2*time.Second)
	}
	return nil, 0
}

// reject dead-letters a message that will not get better.
func (g *Group) reject(ctx context.Context, msg jetstream.Msg, reason string, err error) {
	g.m.Rejected.WithLabelValues(g.cfg.Stage, reason).Inc()
	g.log.Warn("rejected", "subject", msg.Subject(), "reason", reason, "error", err)
	if derr := pool.DeadLetter(ctx, g.js, g.cfg.Stage, msg, err); derr != nil {
		g.log.Error("dead-letter failed; leaving message for redelivery", "error", derr)
		_ = msg.NakWithDelay(g.cfg.Backoff(1))
		return
	}
	g.m.DeadLettered.WithLabelValues(g.cfg.Stage).Inc()
}

// giveBack returns messages that kept failing to JetStream (the first goes
// to the dead letters after its last delivery), all with the first one's
// backoff so that they come back together. Naks queue them for
// redelivery; the partition's gate keeps anything newer from overtaking
// them meanwhile. It returns the messages given back and their backoff.
func (g *Group) giveBack(ctx context.Context, msgs []jetstream.Msg, cause error) ([]jetstream.Msg, time.Duration) {
	delivered := func(m jetstream.Msg) int {
		if meta, err := m.Metadata(); err == nil {
			return int(meta.NumDelivered)
		}
		return 1
	}
	first := delivered(msgs[0])
	backoff := g.cfg.Backoff(first)
	if first >= g.cfg.MaxDeliver {
		m := msgs[0]
		g.m.Rejected.WithLabelValues(g.cfg.Stage, "max_deliver").Inc()
		g.log.Error("giving up after last delivery", "subject", m.Subject(), "delivered", first, "error", cause)
		if err := pool.DeadLetter(ctx, g.js, g.cfg.Stage, m, cause); err == nil {
			g.m.DeadLettered.WithLabelValues(g.cfg.Stage).Inc()
			msgs = msgs[1:]
		}
	}
	for _, m := range msgs {
		if err := m.NakWithDelay(backoff); err != nil {
			g.log.Warn("nak failed", "subject", m.Subject(), "error", err)
		}
	}
	g.log.Warn("will retry", "messages", len(msgs), "backoff", backoff, "error", cause)
	return msgs, backoff
}

// handOver lets the next owner take the partition at once: when everything
// delivered here is acknowledged, it unpins the consumer. Otherwise (a
// delivery still on the wire, or given back) the pin expires by itself
// after PinnedTTL, which keeps the order.
func (g *Group) handOver(ctx context.Context, name string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.AckWait)
	defer cancel()
	for {
		c, err := g.js.Consumer(ctx, g.cfg.Stream, name)
		if err != nil {
			log.Debug("handover: consumer info", "error", err)
			return
		}
		info := c.CachedInfo()
		if info.NumAckPending == 0 && info.NumRedelivered == 0 {
			s, err := g.js.Stream(ctx, g.cfg.Stream)
			if err == nil {
				err = s.UnpinConsumer(ctx, name, streams.PriorityGroup)
			}
			if err != nil {
				log.Debug("handover: unpin", "error", err)
			}
			return
		}
		if !sleep(ctx, 50*time.Millisecond) {
			log.Debug("handover: messages still pending; the pin will expire", "ack_pending", info.NumAckPending)
			return
		}
	}
}

// reportLag sets the lag gauges from the consumers of the partitions this
// process owns (summed over processes, each partition counts once).
func (g *Group) reportLag(ctx context.Context) {
	var pending, ackPending uint64
	for _, p := range g.Owned() {
		c, err := g.js.Consumer(ctx, g.cfg.Stream, g.cfg.Consumer(p))
		if err != nil {
			g.log.Debug("lag", "partition", p, "error", err)
			return
		}
		info := c.CachedInfo()
		pending += info.NumPending
		ackPending += uint64(info.NumAckPending)
	}
	g.m.ConsumerPending.WithLabelValues(g.cfg.Stage).Set(float64(pending))
	g.m.AckPending.WithLabelValues(g.cfg.Stage).Set(float64(ackPending))
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
