// Package bridge moves camera input from MQTT into JetStream: it validates
// and size-limits every message, stamps it with a dedup id, and publishes it
// to POI_INGEST. The MQTT callback only queues, without ever waiting; a few
// bridge workers do the parsing and publishing, and the MQTT
// acknowledgements are sent in the order of receipt, each only once
// JetStream has stored its message (or it was rejected as bad input).
package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/camgate"
	"poi/internal/metrics"
	"poi/internal/mqttclient"
	"poi/internal/store"
	"poi/streams"
)

// MQTT ingest topics (a contract with camera publishers).
const (
	TopicSceneScapeData  = "scenescape/data/camera/+"
	TopicSceneScapeImage = "scenescape/image/camera/+"
	TopicRegionEvent     = "scenescape/event/region/+/+/objects"
	TopicFrames          = "poi/frames/+"
)

// Topics are every subscription of the bridge.
func Topics() []string {
	return []string{TopicSceneScapeData, TopicSceneScapeImage, TopicRegionEvent, TopicFrames}
}

// Config configures the bridge.
type Config struct {
	Limits  Limits
	Workers int
	// QueueSize bounds the messages received from MQTT and not yet
	// acknowledged (stored in JetStream or rejected as bad input). The
	// MQTT handler never waits for room: a QoS 1 message that finds none is
	// left unacknowledged and comes back after a session resume (see
	// handle); a QoS 0 message is counted and dropped.
	QueueSize int
	// PublishTimeout is how long an asynchronous publish waits for
	// JetStream's ack before it is redone synchronously, with backoff,
	// until JetStream stores it: a message is never acknowledged unstored.
	PublishTimeout time.Duration
	// Window bounds each worker's publishes awaiting JetStream's ack: a
	// worker sends the next message without waiting for the last one's
	// round trip.
	Window int
	// MaxClockSkew bounds how far a message's timestamp may be from the
	// bridge's clock; further is rejected (reason clock_skew).
	MaxClockSkew time.Duration
	// Cameras decides which camera ids are accepted; nil accepts every id
	// (tests of parsing only: a deployment always has a gate).
	Cameras *camgate.Gate
	// SeenTTL bounds the life of a camera:lastseen entry; SeenMax its size
	// when there is no gate (with one, the gate's cap).
	SeenTTL time.Duration
	SeenMax int
}

// DefaultConfig is what `poi run` uses unless bridge.* is configured.
func DefaultConfig() Config {
	return Config{Limits: DefaultLimits(), Workers: 4, QueueSize: 1024, PublishTimeout: 5 * time.Second, Window: 128, MaxClockSkew: 5 * time.Minute,
		SeenTTL: 24 * time.Hour, SeenMax: 1000}
}

// Bridge is the MQTT → JetStream bridge.
type Bridge struct {
	cfg   Config
	mqtt  *mqttclient.Client
	js    jetstream.JetStream
	store *store.Store
	m     *metrics.Metrics
	log   *slog.Logger
	// queues hold one channel per bridge worker; a camera always maps to
	// the same worker, so its messages reach JetStream in arrival order.
	// Each can hold QueueSize messages, the bound on all of them, so a
	// send to one never blocks.
	queues []chan queued
	now    func() time.Time

	// mu guards the acknowledgement state below; the MQTT handler holds it
	// only for bookkeeping, never while waiting on anything.
	mu     sync.Mutex
	acks   *ackOrder[paho.Message]
	ready  []paho.Message // released by acks, to be acknowledged in order
	closed bool
	// deferring is set when a QoS 1 message found no room: it and every
	// later message stay unacknowledged until the queue has drained and
	// the session is resumed, so the acknowledgements that are sent keep
	// the order of receipt.
	deferring bool
	ackWake   chan struct{}

	seenMu sync.Mutex
	seen   map[string]time.Time
}

// queued is a message admitted to a worker's queue with its place in the
// order of acknowledgements.
type queued struct {
	seq uint64
	msg paho.Message
}

// New returns a bridge; Run starts it.
func New(cfg Config, mq *mqttclient.Client, js jetstream.JetStream, st *store.Store, m *metrics.Metrics, log *slog.Logger) *Bridge {
	cfg.QueueSize = max(1, cfg.QueueSize)
	qs := make([]chan queued, max(1, cfg.Workers))
	for i := range qs {
		qs[i] = make(chan queued, cfg.QueueSize)
	}
	return &Bridge{cfg: cfg, mqtt: mq, js: js, store: st, m: m, log: log.With("component", "bridge"),
		queues: qs, now: time.Now, acks: newAckOrder[paho.Message](cfg.QueueSize), ackWake: make(chan struct{}, 1),
		seen: map[string]time.Time{}}
}

// Subscribe registers the ingest subscriptions (now, and after every
// reconnect); call it before Run, so the bridge is listening by the time the
// process reports ready.
func (b *Bridge) Subscribe(ctx context.Context) error {
	for _, t := range Topics() {
		if err := b.mqtt.Subscribe(ctx, t, 1, b.handle); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
	}
	b.log.Info("bridge subscribed", "topics", Topics())
	return nil
}

// handle runs on paho's one delivery goroutine, which also reads the
// broker's keepalive answers, so it must not wait: it numbers the message
// for the acknowledgement order and queues it, or leaves it
// unacknowledged.
func (b *Bridge) handle(_ paho.Client, msg paho.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return // not acknowledged: the broker redelivers it to the next session
	}
	seq, ok := uint64(0), false
	if !b.deferring {
		seq, ok = b.acks.admit(msg)
	}
	if !ok {
		if msg.Qos() == 0 {
			// At most once by the publisher's choice: there is no
			// redelivery to wait for.
			b.m.Rejected.WithLabelValues("bridge", "queue_full_qos0").Inc()
			return
		}
		if b.deferring {
			b.m.BridgeDeferred.Inc()
			return
		}
		b.deferring = true
		b.m.BridgeDeferred.Inc()
		b.log.Warn("bridge queue full: leaving mqtt messages unacknowledged until it drains, then resuming the session",
			"queue_size", b.cfg.QueueSize)
		return
	}
	b.m.BridgeUnacked.Set(float64(b.acks.pending()))
	b.queues[b.route(msg.Topic())] <- queued{seq: seq, msg: msg}
}

// finish marks a message as stored (or rejected as bad input) and wakes the
// acknowledger for whatever that releases.
func (b *Bridge) finish(seq uint64) {
	b.mu.Lock()
	out := b.acks.finish(seq)
	b.ready = append(b.ready, out...)
	b.m.BridgeUnacked.Set(float64(b.acks.pending()))
	b.mu.Unlock()
	if len(out) > 0 {
		select {
		case b.ackWake <- struct{}{}:
		default:
		}
	}
}

// acknowledge sends the released acknowledgements, in order, from one
// goroutine (paho sends each as it is called). Once a deferral has let the
// queue drain, it resumes the MQTT session so that the broker resends what
// was left unacknowledged.
func (b *Bridge) acknowledge(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-b.ackWake:
		case <-stop:
			b.mu.Lock()
			ready := b.ready
			b.ready = nil
			b.mu.Unlock()
			for _, m := range ready {
				m.Ack()
			}
			return
		}
		b.mu.Lock()
		ready := b.ready
		b.ready = nil
		resume := b.deferring && !b.closed && b.acks.pending() == 0
		b.mu.Unlock()
		for _, m := range ready {
			m.Ack()
		}
		if resume {
			b.resume(ctx)
		}
	}
}

// resume reconnects the MQTT client; the deferral ends while it is
// disconnected, so every message of the new connection is admitted.
func (b *Bridge) resume(ctx context.Context) {
	b.m.BridgeResumes.Inc()
	b.log.Info("bridge queue drained: resuming the mqtt session for the messages left unacknowledged")
	err := b.mqtt.Reconnect(ctx, func() {
		b.mu.Lock()
		b.deferring = false
		b.mu.Unlock()
	})
	if err != nil {
		b.log.Warn("mqtt session resume", "error", err)
	}
}

// Run bridges until ctx ends; then it stops taking input and lets the
// workers finish what is queued.
func (b *Bridge) Run(ctx context.Context) error {
	drain := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for _, q := range b.queues {
		wg.Add(2)
		window := make(chan inflight, max(1, b.cfg.Window))
		go func() {
			defer wg.Done()
			defer close(window)
			for it := range q {
				window <- b.process(drain, it)
			}
		}()
		go func() {
			defer wg.Done()
			for f := range window {
				b.complete(ctx, drain, f)
			}
		}()
	}
	stopAcks := make(chan struct{})
	acksDone := make(chan struct{})
	go func() {
		defer close(acksDone)
		b.acknowledge(ctx, stopAcks)
	}()
	<-ctx.Done()
	// No unsubscribing: the persistent session keeps the subscriptions, so
	// the broker holds what arrives until the next bridge takes over.
	// Messages that arrive now are left unacknowledged for it.
	b.mu.Lock()
	b.closed = true
	for _, q := range b.queues {
		close(q)
	}
	b.mu.Unlock()
	wg.Wait()
	close(stopAcks)
	<-acksDone
	b.mu.Lock()
	left := b.acks.pending()
	b.mu.Unlock()
	b.log.Info("bridge stopped", "left_unacknowledged", left)
	return nil
}

// route picks the worker of a topic's source (camera, or scene/region).
func (b *Bridge) route(topic string) int {
	parts := strings.Split(topic, "/")
	h := fnv.New32a()
	h.Write([]byte(parts[len(parts)-1]))
	if len(parts) == 6 { // region events: scene and region
		h.Write([]byte(parts[3] + "/" + parts[4]))
	}
	return int(h.Sum32() % uint32(len(b.queues)))
}

// inflight is a message handed to JetStream whose ack is awaited.
type inflight struct {
	seq      uint64
	msg      paho.Message
	rejected bool // bad input: acknowledged without a publish
	out      *nats.Msg
	fut      jetstream.PubAckFuture // nil: the async publish could not start
	camera   string
	start    time.Time
}

// process turns one MQTT message into one JetStream message and starts
// publishing it; complete finishes it.
func (b *Bridge) process(ctx context.Context, it queued) inflight {
	msg := it.msg
	b.m.Received.WithLabelValues("bridge").Inc()
	f := inflight{seq: it.seq, msg: msg, start: time.Now()}
	err := b.admit(ctx, msg.Topic())
	var out *nats.Msg
	var camera string
	if err == nil {
		out, camera, err = b.convert(msg.Topic(), msg.Payload())
	}
	if err != nil {
		reason := "invalid"
		var re *RejectError
		if errors.As(err, &re) {
			reason = re.Reason
		}
		b.m.Rejected.WithLabelValues("bridge", reason).Inc()
		b.log.Warn("rejected mqtt message", "topic", msg.Topic(), "bytes", len(msg.Payload()), "reason", reason, "error", err)
		f.rejected = true // bad input does not get better by redelivery
		return f
	}
	out.Header.Set(jetstream.MsgIDHeader, MsgID(msg.Topic(), msg.Payload()))
	f.out, f.camera = out, camera
	if fut, err := b.js.PublishMsgAsync(out); err == nil {
		f.fut = fut
	}
	return f
}

// complete waits for a publish's ack, redoing the publish until JetStream
// stores the message, and only then releases its MQTT acknowledgement. A
// publish that failed is redone after later ones of its worker were sent:
// its camera's order can break at the edge of a JetStream outage, which the
// tracker logs when it sees it. When ctx ends (shutdown) while JetStream is
// still down, the message is left unacknowledged, for the broker to
// redeliver to the next session.
func (b *Bridge) complete(ctx, drain context.Context, f inflight) {
	if f.rejected {
		b.finish(f.seq)
		return
	}
	defer func() { b.m.Latency.WithLabelValues("bridge").Observe(time.Since(f.start).Seconds()) }()
	var ack *jetstream.PubAck
	var err error = errPublishNotStarted
	if f.fut != nil {
		t := time.NewTimer(b.cfg.PublishTimeout)
		select {
		case ack = <-f.fut.Ok():
			err = nil
		case err = <-f.fut.Err():
		case <-t.C:
			err = fmt.Errorf("publish %s: no ack within %s", f.out.Subject, b.cfg.PublishTimeout)
		}
		t.Stop()
	}
	retried := err != nil
	if retried {
		ack, err = b.publish(ctx, drain, f.out, err)
	}
	if err != nil {
		b.log.Warn("mqtt message left unacknowledged at shutdown: jetstream did not store it", "topic", f.msg.Topic(), "error", err)
		return
	}
	b.finish(f.seq)
	if ack.Duplicate && !retried {
		// Stored before: an MQTT redelivery after a reconnect. (A
		// duplicate after a retry is most likely this delivery's own
		// first publish, buffered by the NATS client while it was
		// disconnected and stored on its reconnect.)
		b.m.Redelivered.WithLabelValues("bridge").Inc()
	} else {
		b.m.Processed.WithLabelValues("bridge").Inc()
	}
	if f.camera != "" {
		b.markSeen(drain, f.camera)
	}
}

// errPublishNotStarted marks a message whose asynchronous publish could not
// be started (too many in flight): it is published synchronously instead.
var errPublishNotStarted = errors.New("asynchronous publish not started")

// publish retries while JetStream is full (DiscardNew) or unreachable, with
// backoff up to 5 s, for as long as it takes; it gives up only once ctx
// has ended, after one last attempt.
func (b *Bridge) publish(ctx, drain context.Context, msg *nats.Msg, first error) (*jetstream.PubAck, error) {
	wait := 100 * time.Millisecond
	err := first
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			b.m.BridgePublishRetries.Inc()
		}
		if (attempt == 0 && !errors.Is(err, errPublishNotStarted)) || (attempt > 0 && attempt%50 == 0) {
			b.log.Warn("jetstream publish failed; holding the mqtt acknowledgement and retrying", "subject", msg.Subject, "error", err, "attempt", attempt)
		}
		pctx, cancel := context.WithTimeout(drain, 5*time.Second)
		var ack *jetstream.PubAck
		ack, err = b.js.PublishMsg(pctx, msg)
		cancel()
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("publish %s: %w", msg.Subject, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		wait = min(wait*2, 5*time.Second)
	}
}

// MsgID derives the Nats-Msg-Id from the topic and the payload, so that an
// MQTT redelivery of the same message is stored once.
func MsgID(topic string, payload []byte) string {
	h := sha256.New()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// convert validates a message of any ingest topic and returns the message
// to publish and the camera it came from.
func (b *Bridge) convert(topic string, payload []byte) (*nats.Msg, string, error) {
	parts := strings.Split(topic, "/")
	lim := b.cfg.Limits
	var subject, camera string
	var env any
	var ts time.Time
	switch {
	case len(parts) == 3 && parts[0] == "poi" && parts[1] == "frames":
		camera = parts[2]
		f, err := ParseFrame(camera, payload, b.now(), lim)
		if err != nil {
			return nil, "", err
		}
		subject, env, ts = streams.Subject(streams.IngestFrame, camera), &f, f.Timestamp
	case len(parts) == 4 && parts[0] == "scenescape" && parts[1] == "data" && parts[2] == "camera":
		camera = parts[3]
		d, err := ParseDetections(camera, payload, lim)
		if err != nil {
			return nil, "", err
		}
		subject, env, ts = streams.Subject(streams.IngestSceneScape, camera), &d, d.Timestamp
	case len(parts) == 4 && parts[0] == "scenescape" && parts[1] == "image" && parts[2] == "camera":
		camera = parts[3]
		ci, err := ParseCameraImage(camera, payload, lim)
		if err != nil {
			return nil, "", err
		}
		subject, env, ts = streams.Subject(streams.IngestImage, camera), &ci, ci.Timestamp
	case len(parts) == 6 && parts[0] == "scenescape" && parts[1] == "event" && parts[2] == "region" && parts[5] == "objects":
		ev, err := ParseRegionEvent(parts[3], parts[4], payload, lim)
		if err != nil {
			return nil, "", err
		}
		subject, env, ts = streams.Subject(streams.IngestRegion, parts[3], parts[4]), &ev, ev.Timestamp
	default:
		return nil, "", reject("bad_topic", "no route for topic %q", topic)
	}
	if err := CheckClock(ts, b.now(), b.cfg.MaxClockSkew); err != nil {
		return nil, "", err
	}
	m, err := streams.NewMsg(subject, env)
	return m, camera, err
}

// admit asks the camera gate about the camera of a topic, before anything
// is parsed: a refused id costs no parsing and creates no state.
func (b *Bridge) admit(ctx context.Context, topic string) error {
	if b.cfg.Cameras == nil {
		return nil
	}
	parts := strings.Split(topic, "/")
	var camera string
	switch {
	case len(parts) == 3 && parts[0] == "poi" && parts[1] == "frames":
		camera = parts[2]
	case len(parts) == 4 && parts[0] == "scenescape" && (parts[1] == "data" || parts[1] == "image") && parts[2] == "camera":
		camera = parts[3]
	default:
		return nil // region events name scenes and regions, not cameras
	}
	r, err := b.cfg.Cameras.Admit(ctx, camera, b.now())
	if err != nil {
		b.log.Warn("camera gate", "error", err)
	}
	if r != nil {
		return &RejectError{Reason: r.Reason, Err: r}
	}
	return nil
}

// seenThrottle is how often a camera's camera:lastseen entry is rewritten.
const seenThrottle = 10 * time.Second

// markSeen records the camera for GET /cameras, at most every 10 s per
// camera so that a busy stream does not write Redis on every frame.
func (b *Bridge) markSeen(ctx context.Context, camera string) {
	now := b.now()
	b.seenMu.Lock()
	last, ok := b.seen[camera]
	if ok && now.Sub(last) < seenThrottle {
		b.seenMu.Unlock()
		return
	}
	limit := b.cfg.SeenMax
	if b.cfg.Cameras != nil {
		limit = b.cfg.Cameras.Cap()
	}
	if len(b.seen) >= limit {
		// An entry older than the throttle period changes nothing: drop
		// them all, so the map holds at most the cameras of 10 s.
		for id, at := range b.seen {
			if now.Sub(at) >= seenThrottle {
				delete(b.seen, id)
			}
		}
	}
	b.seen[camera] = now
	b.seenMu.Unlock()
	if err := b.store.MarkCameraSeen(ctx, camera, now, b.cfg.SeenTTL, limit); err != nil {
		b.log.Warn("record camera", "camera", camera, "error", err)
	}
}
