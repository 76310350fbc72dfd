package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/mqttclient"
	"poi/streams"
)

// Options configure a run.
type Options struct {
	// Mode is "scenescape" or "frames".
	Mode string
	// Rate is the offered messages per second over all cameras
	// (scenescape); frames mode offers Cameras × FPS.
	Rate    float64
	Cameras int
	FPS     float64
	// Duration of a measured step, after Warmup.
	Duration, Warmup time.Duration
	// Step searches for the highest sustained load: the rate (or, in
	// frames mode, the camera count) grows by StepFactor until a step is
	// not sustained.
	Step       bool
	StepFactor float64
	// MetricsURLs are the /metrics endpoints of the deployment's processes.
	MetricsURLs []string
	// APIKey, when set, is sent as a bearer token with every scrape: the
	// API's own /metrics needs a key (metrics_addr does not).
	APIKey string
	// Stage whose processed messages count as done ("index").
	Stage string
}

// Source produces the messages of one camera.
type Source interface {
	// Next returns the topic and payload of the camera's next message and,
	// when an enrolled face becomes visible with it, the POI.
	Next(r *rand.Rand, now time.Time) (topic string, payload []byte, visit string)
}

// Step is what one measured step saw.
type Step struct {
	Offered, Processed float64 // messages per second
	BacklogStart       uint64
	BacklogEnd         uint64
	Published          int
	PublishErrors      int
	Alerts             int
	Latency            Percentiles // MQTT publish of a visit's first message → its alert on MQTT
	CPU                float64     // cores the deployment's processes used
	Rejected           map[string]float64
	Sustained          bool
	Cameras            int
}

// Percentiles of a latency sample.
type Percentiles struct {
	N             int
	P50, P95, P99 time.Duration
}

// Quantiles computes percentiles by the nearest-rank method.
func Quantiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Percentiles{N: len(s), P50: at(0.50), P95: at(0.95), P99: at(0.99)}
}

// Sustained is the verdict on a step: the deployment kept up if it
// processed at least 97% of what was offered and the backlog did not grow
// by more than a second of traffic.
func Sustained(s Step) bool {
	grew := float64(s.BacklogEnd) - float64(s.BacklogStart)
	return s.Processed >= 0.97*s.Offered && grew <= s.Offered
}

// Runner drives a deployment.
type Runner struct {
	o    Options
	mq   *mqttclient.Client
	js   jetstream.JetStream
	http *http.Client
	log  *slog.Logger

	mu     sync.Mutex
	visits map[string]time.Time // poi/camera → publish time of the visit's first message
	lat    []time.Duration
	alerts int
}

// New returns a runner; Listen must be called before Run.
func New(o Options, mq *mqttclient.Client, js jetstream.JetStream, log *slog.Logger) *Runner {
	return &Runner{o: o, mq: mq, js: js, http: &http.Client{Timeout: 5 * time.Second}, log: log, visits: map[string]time.Time{}}
}

// Listen subscribes to the alerts on MQTT.
func (r *Runner) Listen(ctx context.Context) error {
	return r.mq.Subscribe(ctx, "poi/alerts/#", 1, func(_ paho.Client, m paho.Message) {
		var a streams.Alert
		if json.Unmarshal(m.Payload(), &a) != nil {
			return
		}
		now := time.Now()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.alerts++
		k := a.POIID + "/" + a.Match.CameraID
		if t0, ok := r.visits[k]; ok {
			r.lat = append(r.lat, now.Sub(t0))
			delete(r.visits, k)
		}
	})
}

// Run runs one step (or, with Step, the search) and returns every step.
// sources(n) builds the sources of n cameras.
func (r *Runner) Run(ctx context.Context, sources func(n int) ([]Source, error)) ([]Step, error) {
	rate, cams := r.o.Rate, r.o.Cameras
	var steps []Step
	for {
		src, err := sources(cams)
		if err != nil {
			return steps, err
		}
		offered := rate
		if r.o.Mode == "frames" {
			offered = float64(cams) * r.o.FPS
		}
		st, err := r.step(ctx, src, offered)
		if err != nil {
			return steps, err
		}
		st.Cameras = cams
		steps = append(steps, st)
		r.log.Info("step", "cameras", cams, "offered", round(st.Offered), "processed", round(st.Processed), "backlog", st.BacklogEnd,
			"p50", st.Latency.P50, "p99", st.Latency.P99, "cpu", round(st.CPU), "sustained", st.Sustained)
		if !r.o.Step || !st.Sustained || ctx.Err() != nil {
			return steps, nil
		}
		if r.o.Mode == "frames" {
			cams += max(1, int(float64(cams)*(r.o.StepFactor-1)))
		} else {
			rate *= r.o.StepFactor
		}
		// Let the deployment drain before the next step.
		r.waitDrained(ctx, 30*time.Second)
	}
}

func round(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

// step publishes at offered messages per second over the sources for
// Warmup + Duration and measures the Duration part.
func (r *Runner) step(ctx context.Context, src []Source, offered float64) (Step, error) {
	var published, failed atomic.Int64
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	end := start.Add(r.o.Warmup + r.o.Duration)
	measureAt := start.Add(r.o.Warmup)
	var before snapshot
	measured := false
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sent := 0
	for {
		now := time.Now()
		if !measured && !now.Before(measureAt) {
			before = r.snapshot(ctx)
			r.mu.Lock()
			r.lat, r.alerts = nil, 0
			r.mu.Unlock()
			published.Store(0)
			sent = 0
			measured = true
			start = now
		}
		if !now.Before(end) || ctx.Err() != nil {
			break
		}
		due := int(offered * now.Sub(start).Seconds())
		for ; sent < due; sent++ {
			s := src[sent%len(src)]
			topic, payload, visit := s.Next(rng, now)
			if visit != "" {
				cam := topic[strings.LastIndexByte(topic, '/')+1:]
				r.mu.Lock()
				r.visits[visit+"/"+cam] = time.Now()
				r.mu.Unlock()
			}
			tok := r.mq.PublishAsync(topic, 1, payload)
			published.Add(1)
			go func() {
				if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
					return
				}
				failed.Add(1)
			}()
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	elapsed := time.Since(start)
	after := r.snapshot(ctx)
	st := Step{Offered: float64(published.Load()) / elapsed.Seconds(), Published: int(published.Load()), PublishErrors: int(failed.Load())}
	st.Processed = (after.processed - before.processed) / elapsed.Seconds()
	st.CPU = (after.cpu - before.cpu) / elapsed.Seconds()
	st.BacklogStart, st.BacklogEnd = before.backlog, after.backlog
	st.Rejected = map[string]float64{}
	for k, v := range after.rejected {
		if d := v - before.rejected[k]; d > 0 {
			st.Rejected[k] = d
		}
	}
	r.mu.Lock()
	st.Alerts, st.Latency = r.alerts, Quantiles(r.lat)
	r.mu.Unlock()
	st.Sustained = Sustained(st)
	return st, nil
}

// waitDrained waits until the backlog is gone or d passes.
func (r *Runner) waitDrained(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.snapshot(ctx).backlog == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type snapshot struct {
	processed, cpu float64
	backlog        uint64
	rejected       map[string]float64
}

// snapshot reads the deployment's counters and the tracker's backlog.
func (r *Runner) snapshot(ctx context.Context) snapshot {
	s := snapshot{rejected: map[string]float64{}}
	for _, u := range r.o.MetricsURLs {
		samples, err := r.scrape(ctx, u)
		if err != nil {
			r.log.Warn("metrics", "url", u, "error", err)
			continue
		}
		for _, m := range samples {
			switch {
			case m.Name == "process_cpu_seconds_total":
				s.cpu += m.Value
			case m.Name == "poi_stage_processed_total" && m.Labels["stage"] == r.o.Stage:
				s.processed += m.Value
			case m.Name == "poi_stage_dead_lettered_total" && m.Labels["stage"] == r.o.Stage:
				s.processed += m.Value
			case m.Name == "poi_stage_rejected_total":
				s.rejected[m.Labels["stage"]+"/"+m.Labels["reason"]] += m.Value
			}
		}
	}
	if r.js != nil {
		// The backlog of the whole pipeline: the tracker's partitions and
		// the alert stage's sightings.
		for _, q := range []struct{ stream, prefix string }{{streams.Ingest, streams.ConsumerIndexPrefix}, {streams.Sightings, streams.ConsumerAlert}} {
			str, err := r.js.Stream(ctx, q.stream)
			if err != nil {
				r.log.Warn("backlog", "stream", q.stream, "error", err)
				continue
			}
			lister := str.ListConsumers(ctx)
			for info := range lister.Info() {
				if strings.HasPrefix(info.Name, q.prefix) {
					s.backlog += info.NumPending + uint64(info.NumAckPending)
				}
			}
		}
	}
	return s
}

// Sample is one line of a Prometheus text exposition.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// scrape reads a Prometheus text exposition.
func (r *Runner) scrape(ctx context.Context, url string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	if r.o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.o.APIKey)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d (the API's /metrics needs --key-file)", url, resp.StatusCode)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics reads the samples of a Prometheus text exposition (the
// subset the service writes: no timestamps, no escaped quotes in labels).
func ParseMetrics(rd io.Reader) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		head := line[:sp]
		m := Sample{Labels: map[string]string{}, Value: v}
		if i := strings.IndexByte(head, '{'); i >= 0 {
			m.Name = head[:i]
			for _, kv := range strings.Split(strings.TrimSuffix(head[i+1:], "}"), ",") {
				if k, val, ok := strings.Cut(kv, "="); ok {
					m.Labels[k] = strings.Trim(val, `"`)
				}
			}
		} else {
			m.Name = head
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}
