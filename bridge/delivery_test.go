package bridge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/embedded"
	"poi/internal/metrics"
	"poi/internal/mqttclient"
	"poi/internal/store"
	"poi/internal/testenv"
	"poi/streams"
)

// rig is a bridge between a real embedded MQTT broker and a real
// nats-server that a test can stop and start again on the same port and
// store directory.
type rig struct {
	t      *testing.T
	log    *slog.Logger
	port   int
	dir    string
	ns     *embedded.NATS
	js     jetstream.JetStream
	broker *embedded.MQTT
	st     *store.Store
	m      *metrics.Metrics
	client *mqttclient.Client
	stop   context.CancelFunc
	done   chan error
}

func newRig(t *testing.T, brokerLimit int, cfg Config) *rig {
	t.Helper()
	r := &rig{t: t, log: slog.New(slog.NewTextHandler(io.Discard, nil)), dir: t.TempDir(), m: metrics.New()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r.startNATS()
	nc, err := nats.Connect(r.ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if r.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := streams.Declare(context.Background(), r.js, streams.DefaultLimits(), 3, r.log); err != nil {
		t.Fatal(err)
	}
	r.broker = testenv.MQTT(t, embedded.MQTTOptions{MaxInflight: brokerLimit}, r.log)
	redis := testenv.StartRedis(t)
	if r.st, err = store.Open(redis.URL(), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	r.startBridge(cfg)
	r.waitSubscribed()
	return r
}

// waitSubscribed returns once the broker routes ingest topics to the new
// session: it subscribes as it connects, and a frame published before that
// is not the session's to receive. Probes are bad input, counted as
// rejected and acknowledged.
func (r *rig) waitSubscribed() {
	cl, err := mqttclient.Connect(context.Background(), mqttclient.Options{URL: "tcp://" + r.broker.Addr(), ConnectTimeout: 5 * time.Second}, r.log)
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close(0)
	rejected := r.m.Rejected.WithLabelValues("bridge", "not_jpeg")
	testenv.Eventually(r.t, 30*time.Second, "the bridge's subscriptions", func() bool {
		if testutil.ToFloat64(rejected) > 0 {
			return true
		}
		return cl.Publish(context.Background(), "poi/frames/probe", 1, false, []byte("probe")) == nil && testutil.ToFloat64(rejected) > 0
	})
}

func (r *rig) startNATS() {
	ns, err := embedded.StartNATS("127.0.0.1", r.port, r.dir, r.log)
	if err != nil {
		r.t.Fatal(err)
	}
	r.ns = ns
	r.t.Cleanup(func() { _ = ns.Shutdown(context.Background()) })
}

func (r *rig) stopNATS() {
	if err := r.ns.Shutdown(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

// startBridge runs a bridge on a persistent MQTT session with a fixed id,
// as `poi bridge` does; a second call is a restarted bridge process.
func (r *rig) startBridge(cfg Config) {
	cl, err := mqttclient.New(mqttclient.Options{URL: "tcp://" + r.broker.Addr(), ClientID: "poi-bridge-test",
		Persistent: true, ManualAck: true, ConnectTimeout: 5 * time.Second}, r.log)
	if err != nil {
		r.t.Fatal(err)
	}
	b := New(cfg, cl, r.js, r.st, r.m, r.log)
	if err := b.Subscribe(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	if err := cl.Start(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	r.client, r.stop, r.done = cl, stop, make(chan error, 1)
	go func() { r.done <- b.Run(ctx) }()
	r.t.Cleanup(r.stopBridge)
}

// stopBridge shuts the bridge down and drops its connection without
// unsubscribing: the broker keeps the session.
func (r *rig) stopBridge() {
	if r.stop == nil {
		return
	}
	r.stop()
	r.stop = nil
	if err := <-r.done; err != nil {
		r.t.Error(err)
	}
	r.client.Close(250 * time.Millisecond)
}

// stored reads every frame of camera in POI_INGEST and returns how many
// times each frame timestamp is stored.
func (r *rig) stored(ctx context.Context, camera string) map[time.Time]int {
	r.t.Helper()
	subj := fmt.Sprintf("%s.%d.%s", streams.IngestFrame, streams.Partition(camera, streams.DefaultLimits().Partitions), streams.Token(camera))
	c, err := r.js.OrderedConsumer(ctx, streams.Ingest, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[time.Time]int{}
	for left := info.NumPending; left > 0; {
		batch, err := c.Fetch(int(min(left, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			r.t.Fatal(err)
		}
		for msg := range batch.Messages() {
			var f streams.Frame
			if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &f); err != nil {
				r.t.Fatal(err)
			}
			out[f.Timestamp]++
			left--
		}
		if err := batch.Error(); err != nil {
			r.t.Fatal(err)
		}
	}
	return out
}

// publisher sends distinct QoS 1 frames of one camera, each acknowledged
// by the broker, and remembers their timestamps.
type publisher struct {
	cl     *mqttclient.Client
	camera string
	jpeg   []byte
	base   time.Time
	mu     sync.Mutex
	sent   map[time.Time]bool
	n      atomic.Int64
}

func newPublisher(t *testing.T, r *rig, camera string) *publisher {
	t.Helper()
	cl, err := mqttclient.Connect(context.Background(), mqttclient.Options{URL: "tcp://" + r.broker.Addr(), ConnectTimeout: 5 * time.Second}, r.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(0) })
	img := image.NewRGBA(image.Rect(0, 0, 32, 24))
	for i := range img.Pix {
		img.Pix[i] = byte(i)
	}
	img.Set(0, 0, color.White)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return &publisher{cl: cl, camera: camera, jpeg: buf.Bytes(), base: time.Now().UTC().Truncate(time.Second), sent: map[time.Time]bool{}}
}

func (p *publisher) send(ctx context.Context) error {
	ts := p.base.Add(time.Duration(p.n.Add(1)) * time.Millisecond)
	body, _ := json.Marshal(map[string]string{"timestamp": ts.Format(time.RFC3339Nano), "image": base64.StdEncoding.EncodeToString(p.jpeg)})
	if err := p.cl.Publish(ctx, "poi/frames/"+p.camera, 1, false, body); err != nil {
		return err
	}
	p.mu.Lock()
	p.sent[ts] = true
	p.mu.Unlock()
	return nil
}

// flow sends a frame every interval until stop is closed; a publish under
// way then completes, so that every frame the broker accepted is known.
func (p *publisher) flow(ctx context.Context, t *testing.T, interval time.Duration, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := p.send(ctx); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}
	}()
	return done
}

func (p *publisher) accepted() map[time.Time]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[time.Time]bool, len(p.sent))
	for k := range p.sent {
		out[k] = true
	}
	return out
}

// checkExactlyOnce asserts that every frame the broker accepted is stored
// once, except those the broker itself counted as dropped, and that the
// bridge counted each stored frame once.
func checkExactlyOnce(t *testing.T, r *rig, p *publisher, stored map[time.Time]int) {
	t.Helper()
	sent := p.accepted()
	for ts, n := range stored {
		if n != 1 {
			t.Errorf("frame %s stored %d times", ts.Format(time.RFC3339Nano), n)
		}
		if !sent[ts] {
			t.Errorf("frame %s stored but never sent", ts.Format(time.RFC3339Nano))
		}
	}
	dropped := int(r.broker.Dropped())
	if len(stored)+dropped != len(sent) {
		t.Errorf("%d frames accepted by the broker, %d stored + %d dropped by the broker's limit: %d lost",
			len(sent), len(stored), dropped, len(sent)-len(stored)-dropped)
	}
	if got := testutil.ToFloat64(r.m.Processed.WithLabelValues("bridge")); int(got) != len(stored) {
		t.Errorf("bridge counted %v processed, %d stored", got, len(stored))
	}
}

// TestJetStreamOutageLosesNothing stops nats-server for 60 s while frames
// flow, then starts it again: the bridge holds the MQTT acknowledgements
// instead of dropping anything, its queue (64) overflows into the broker,
// and the broker's own inflight limit (300) is the only place a frame can
// be refused, where it is counted.
// outageFor is the outage the requirement names.
const outageFor = 60 * time.Second

func TestJetStreamOutageLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a 60 s outage")
	}
	cfg := DefaultConfig()
	cfg.QueueSize, cfg.PublishTimeout = 64, time.Second
	r := newRig(t, 300, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := newPublisher(t, r, "outage-cam")
	stopFlow := make(chan struct{})
	flowDone := p.flow(ctx, t, 50*time.Millisecond, stopFlow) // 20 frames a second
	processed := func() int { return int(testutil.ToFloat64(r.m.Processed.WithLabelValues("bridge"))) }
	testenv.Eventually(t, time.Minute, "the bridge to store 20 frames", func() bool { return processed() >= 20 })

	r.stopNATS()
	down := processed()
	// The outage itself is the requirement's 60 s; everything else waits
	// on conditions.
	outage := time.NewTimer(outageFor)
	select {
	case <-outage.C:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if !r.client.IsConnected() {
		t.Error("the bridge's MQTT connection dropped during the outage: its keepalives were starved")
	}
	if got := testutil.ToFloat64(r.m.BridgeUnacked); got < 1 {
		t.Errorf("%v messages held unacknowledged during the outage, want the queue's", got)
	}
	// At most the publishes in flight when it stopped got stored.
	if processed() > down+int(cfg.Window) {
		t.Errorf("%d frames counted stored during the outage", processed()-down)
	}
	r.startNATS()
	testenv.Eventually(t, time.Minute, "frames stored again after the restart", func() bool { return processed() > down+20 })
	close(stopFlow)
	<-flowDone

	total := len(p.accepted())
	state := func() string {
		return fmt.Sprintf("accepted %d, processed %d, redelivered %v, broker dropped %d, unacked %v, deferred %v, resumes %v, publish retries %v, connected %v",
			total, processed(), testutil.ToFloat64(r.m.Redelivered.WithLabelValues("bridge")), r.broker.Dropped(), testutil.ToFloat64(r.m.BridgeUnacked),
			testutil.ToFloat64(r.m.BridgeDeferred), testutil.ToFloat64(r.m.BridgeResumes), testutil.ToFloat64(r.m.BridgePublishRetries), r.client.IsConnected())
	}
	testenv.EventuallyNil(t, 2*time.Minute, "every accepted frame stored or counted as dropped by the broker", func() error {
		if processed()+int(r.broker.Dropped()) >= total && testutil.ToFloat64(r.m.BridgeUnacked) == 0 {
			return nil
		}
		return errors.New(state())
	})
	checkExactlyOnce(t, r, p, r.stored(ctx, "outage-cam"))
	if testutil.ToFloat64(r.m.BridgeDeferred) == 0 || testutil.ToFloat64(r.m.BridgeResumes) == 0 {
		t.Errorf("deferred %v, resumes %v: the full-queue path was not taken", testutil.ToFloat64(r.m.BridgeDeferred), testutil.ToFloat64(r.m.BridgeResumes))
	}
	t.Log(state())
}

// TestPersistentSessionLosesNoQoS1Message drops the bridge's MQTT
// connection while frames flow and reconnects it on the same session: the
// broker resends what was not acknowledged, and each frame is stored once.
// (A bridge replaced by a new process is TestRestartedBridgeTakesOverItsSession,
// under -tags sessiontakeover: README, "Delivery guarantees".)
func TestPersistentSessionLosesNoQoS1Message(t *testing.T) {
	r := newRig(t, 4096, DefaultConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := newPublisher(t, r, "session-cam")
	stopFlow := make(chan struct{})
	flowDone := p.flow(ctx, t, 5*time.Millisecond, stopFlow)
	processed := func() int { return int(testutil.ToFloat64(r.m.Processed.WithLabelValues("bridge"))) }
	testenv.Eventually(t, time.Minute, "50 frames stored", func() bool { return processed() >= 50 })

	if err := r.client.Reconnect(ctx, func() {}); err != nil {
		t.Fatal(err)
	}
	at := processed()
	testenv.Eventually(t, time.Minute, "frames stored after the reconnect", func() bool { return processed() >= at+50 })

	close(stopFlow)
	<-flowDone

	total := len(p.accepted())
	testenv.EventuallyNil(t, time.Minute, "every accepted frame stored", func() error {
		if processed() >= total && testutil.ToFloat64(r.m.BridgeUnacked) == 0 {
			return nil
		}
		return fmt.Errorf("accepted %d, processed %d, redelivered %v, unacked %v, broker dropped %d, connected %v", total, processed(),
			testutil.ToFloat64(r.m.Redelivered.WithLabelValues("bridge")), testutil.ToFloat64(r.m.BridgeUnacked), r.broker.Dropped(), r.client.IsConnected())
	})
	if r.broker.Dropped() != 0 {
		t.Errorf("the broker dropped %d messages under its 4096 limit", r.broker.Dropped())
	}
	checkExactlyOnce(t, r, p, r.stored(ctx, "session-cam"))
	t.Logf("accepted %d, redelivered %v", total, testutil.ToFloat64(r.m.Redelivered.WithLabelValues("bridge")))
}
