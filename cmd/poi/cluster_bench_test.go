//go:build clusterbench

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"poi/internal/config"
	"poi/internal/loadgen"
	"poi/internal/testenv"
)

// TestBenchClusterAgainstOneProcess runs `poi bench`'s step search, in
// both of its modes, against one `poi run` process (embedded NATS, one
// replica per stream, a local Redis) and then against the cluster of
// startCluster (three NATS nodes with three replicas per stream, Redis
// with a replica, Sentinels and WAIT, two workers, two APIs, a bridge) on
// the same machine, and logs the highest sustained load of each: what the
// cluster's replication costs (docs/BENCHMARKS.md). It fails if either
// deployment sustains no step at all. Not a `TestCluster…` name, so the
// cluster tests' -run pattern leaves it out:
// go test -tags takeover -run TestBenchClusterAgainstOneProcess -timeout 60m ./cmd/poi
func TestBenchClusterAgainstOneProcess(t *testing.T) {
	modes := []struct {
		mode  string
		flags func(*benchFlags)
	}{
		{"frames", func(b *benchFlags) { b.o.Cameras, b.o.FPS, b.o.StepFactor = 6, 10, 1.2 }},
		{"scenescape", func(b *benchFlags) { b.o.Rate, b.o.StepFactor = 600, 1.3 }},
	}
	best := map[string]map[string]loadgen.Step{"one process": {}, "cluster": {}}
	run := func(name, mqttURL, natsURL, apiURL string, metrics []string) {
		for _, m := range modes {
			steps := benchSteps(t, m.mode, mqttURL, natsURL, apiURL, metrics, m.flags)
			for _, s := range steps {
				t.Logf("%s, %s: offered %.1f/s processed %.1f/s cameras %d backlog %d→%d cpu %.2f alerts %d p50 %v p99 %v sustained %v rejected %v",
					name, m.mode, s.Offered, s.Processed, s.Cameras, s.BacklogStart, s.BacklogEnd, s.CPU, s.Alerts,
					s.Latency.P50, s.Latency.P99, s.Sustained, s.Rejected)
				if s.Sustained && s.Processed > best[name][m.mode].Processed {
					best[name][m.mode] = s
				}
			}
			if best[name][m.mode].Processed == 0 {
				t.Errorf("%s sustained no %s step", name, m.mode)
			}
		}
	}

	// The cluster first: it is the part that can fail to start.
	c := startCluster(t)
	metrics := []string{"http://" + metricsAddr(c.bridge) + "/metrics"}
	for _, w := range c.workers {
		metrics = append(metrics, "http://"+metricsAddr(w)+"/metrics")
	}
	run("cluster", "tcp://"+c.mqtt.Addr(), c.nats.URL(), c.apis[0].api, metrics)
	// Stopped, so that it takes no CPU from the single process's run (the
	// idle Redis nodes and Sentinels stay until the test's cleanup).
	for _, p := range append(append([]*proc{c.bridge}, c.workers...), c.apis...) {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-p.done
	}
	for i := range 3 {
		c.nats.Kill(i)
	}

	rd := testenv.StartRedis(t)
	one := startPoi(t, rd.URL(), nil, "run")
	waitStatus(t, one, 3*time.Minute, "the single process", func(code int, s status) bool { return code == 200 && s.Status == "running" })
	run("one process", "tcp://127.0.0.1:"+strconv.Itoa(one.ports[2]), "nats://127.0.0.1:"+strconv.Itoa(one.ports[1]), one.api,
		[]string{one.api + "/metrics"})

	for _, m := range modes {
		o, cl := best["one process"][m.mode], best["cluster"][m.mode]
		if o.Processed > 0 {
			t.Logf("%s: highest sustained, one process %.1f/s (cpu %.2f), cluster %.1f/s (cpu %.2f): cluster/one %.2f",
				m.mode, o.Processed, o.CPU, cl.Processed, cl.CPU, cl.Processed/o.Processed)
		}
	}
}

// benchSteps runs `poi bench MODE --step` in this process against a
// deployment and returns its steps.
func benchSteps(t *testing.T, mode, mqttURL, natsURL, apiURL string, metrics []string, set func(*benchFlags)) []loadgen.Step {
	t.Helper()
	var b benchFlags
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	addBenchFlags(fs, &b)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	b.o.Step, b.o.Duration, b.o.Warmup = true, 15*time.Second, 5*time.Second
	b.natsURL, b.apiURL, b.metrics, b.jsonOut = natsURL, apiURL, strings.Join(metrics, ","), true
	b.photos = filepath.Join(testenv.AssetsDir(t), "photos")
	set(&b)
	cfg, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MQTT.URL = mqttURL
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if code := runBench(ctx, cfg, mode, b, slog.New(slog.NewTextHandler(io.Discard, nil)), &out, &errOut); code != 0 {
		t.Fatalf("poi bench %s: exit %d: %s", mode, code, errOut.String())
	}
	var steps []loadgen.Step
	if err := json.Unmarshal(out.Bytes(), &steps); err != nil {
		t.Fatalf("poi bench %s output: %v\n%s", mode, err, out.String())
	}
	return steps
}
