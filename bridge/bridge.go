// Package bridge moves camera input from MQTT into JetStream: it validates
// and size-limits every message, stamps it with a dedup id, and publishes it
// to POI_INGEST. The MQTT callback only queues; a few bridge workers do the
// parsing and publishing, and the MQTT acknowledgement is sent only once
// JetStream has stored the message.
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
	// QueueSize bounds messages received but not yet published; when it is
	// full the MQTT handlers wait, which holds back acknowledgements and so
	// slows the broker down instead of dropping anything.
	QueueSize int
	// PublishTimeout is how long a message is retried while JetStream is
	// full or unreachable before it is counted as rejected.
	PublishTimeout time.Duration
	// Window bounds each worker's publishes awaiting JetStream's ack: a
	// worker sends the next message without waiting for the last one's
	// round trip, and acknowledges MQTT as the acks come back, in order.
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

// DefaultConfig is what `poi run` uses.
func DefaultConfig() Config {
	return Config{Limits: DefaultLimits(), Workers: 4, QueueSize: 256, PublishTimeout: 30 * time.Second, Window: 128, MaxClockSkew: 5 * time.Minute,
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
	queues   []chan paho.Message
	stopping chan struct{}
	now      func() time.Time

	seenMu sync.Mutex
	seen   map[string]time.Time
}

// New returns a bridge; Run starts it.
func New(cfg Config, mq *mqttclient.Client, js jetstream.JetStream, st *store.Store, m *metrics.Metrics, log *slog.Logger) *Bridge {
	qs := make([]chan paho.Message, max(1, cfg.Workers))
	for i := range qs {
		qs[i] = make(chan paho.Message, max(1, cfg.QueueSize/len(qs)))
	}
	return &Bridge{cfg: cfg, mqtt: mq, js: js, store: st, m: m, log: log.With("component", "bridge"),
		queues: qs, stopping: make(chan struct{}), now: time.Now, seen: map[string]time.Time{}}
}

// Subscribe registers the ingest subscriptions (now, and after every
// reconnect); call it before Run, so the bridge is listening by the time the
// process reports ready.
func (b *Bridge) Subscribe(ctx context.Context) error {
	handler := func(_ paho.Client, msg paho.Message) {
		select {
		case b.queues[b.route(msg.Topic())] <- msg:
		case <-b.stopping:
			// Not acknowledged: the broker redelivers it to the next session.
		}
	}
	for _, t := range Topics() {
		if err := b.mqtt.Subscribe(ctx, t, 1, handler); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
	}
	b.log.Info("bridge subscribed", "topics", Topics())
	return nil
}

// Run bridges until ctx ends; then it unsubscribes first (no new input) and
// lets the workers finish what is queued.
func (b *Bridge) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, q := range b.queues {
		wg.Add(2)
		window := make(chan inflight, max(1, b.cfg.Window))
		go func() {
			defer wg.Done()
			defer close(window)
			for msg := range q {
				if f, ok := b.process(context.WithoutCancel(ctx), msg); ok {
					window <- f
				}
			}
		}()
		go func() {
			defer wg.Done()
			for f := range window {
				b.complete(context.WithoutCancel(ctx), f)
			}
		}()
	}
	<-ctx.Done()
	b.mqtt.Unsubscribe(Topics()...)
	close(b.stopping)
	// Handlers still blocked on a queue now give up; wait a moment for
	// any handler that already won its select.
	time.Sleep(50 * time.Millisecond)
	for _, q := range b.queues {
		close(q)
	}
	wg.Wait()
	b.log.Info("bridge stopped")
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
	msg    paho.Message
	out    *nats.Msg
	fut    jetstream.PubAckFuture // nil: the async publish could not start
	camera string
	start  time.Time
}

// process turns one MQTT message into one JetStream message and starts
// publishing it; complete finishes it. Rejected input is acknowledged here.
func (b *Bridge) process(ctx context.Context, msg paho.Message) (inflight, bool) {
	b.m.Received.WithLabelValues("bridge").Inc()
	start := time.Now()
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
		msg.Ack() // bad input does not get better by redelivery
		return inflight{}, false
	}
	out.Header.Set(jetstream.MsgIDHeader, MsgID(msg.Topic(), msg.Payload()))
	f := inflight{msg: msg, out: out, camera: camera, start: start}
	if fut, err := b.js.PublishMsgAsync(out); err == nil {
		f.fut = fut
	}
	return f, true
}

// complete waits for a publish's ack (retrying it while JetStream is full
// or unreachable) and then acknowledges the MQTT message. Acks come back
// in the order of the publishes, so a camera's MQTT messages are
// acknowledged in order. A publish that failed is redone after later ones
// of its worker were sent: its camera's order can break at the edge of a
// JetStream outage, which the tracker logs when it sees it.
func (b *Bridge) complete(ctx context.Context, f inflight) {
	defer func() { b.m.Latency.WithLabelValues("bridge").Observe(time.Since(f.start).Seconds()) }()
	var err error = errPublishNotStarted
	if f.fut != nil {
		t := time.NewTimer(b.cfg.PublishTimeout)
		select {
		case <-f.fut.Ok():
			err = nil
		case err = <-f.fut.Err():
		case <-t.C:
			err = fmt.Errorf("publish %s: no ack within %s", f.out.Subject, b.cfg.PublishTimeout)
		}
		t.Stop()
	}
	if err != nil {
		err = b.publish(ctx, f.out)
	}
	if err != nil {
		b.m.Rejected.WithLabelValues("bridge", "jetstream_unavailable").Inc()
		b.log.Error("dropping mqtt message after retries: jetstream did not store it", "topic", f.msg.Topic(), "error", err)
		f.msg.Ack()
		return
	}
	f.msg.Ack()
	b.m.Processed.WithLabelValues("bridge").Inc()
	if f.camera != "" {
		b.markSeen(ctx, f.camera)
	}
}

// errPublishNotStarted marks a message whose asynchronous publish could not
// be started (too many in flight): it is published synchronously instead.
var errPublishNotStarted = errors.New("asynchronous publish not started")

// publish retries while JetStream is full (DiscardNew) or unreachable, so a
// burst is absorbed by waiting, bounded by PublishTimeout.
func (b *Bridge) publish(ctx context.Context, msg *nats.Msg) error {
	deadline := time.Now().Add(b.cfg.PublishTimeout)
	wait := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := b.js.PublishMsg(pctx, msg)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("publish %s: %w", msg.Subject, err)
		}
		b.log.Warn("jetstream publish failed; retrying", "subject", msg.Subject, "error", err, "wait", wait)
		time.Sleep(wait)
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
