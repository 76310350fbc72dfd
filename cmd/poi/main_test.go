package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"poi/internal/cluster"
	"poi/internal/stacktest"
	"poi/internal/testenv"
)

// TestMain lets the test binary act as the poi binary when re-executed, so
// that tests run the real process (signals, exit codes, ports) without a
// separate build step, and as a nats-server node of the cluster tests.
func TestMain(m *testing.M) {
	cluster.ServeNodeIfAsked()
	if os.Getenv("POITEST_EXEC_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	ports  []int
	api    string
}

// startPoi runs `poi args...` with every port free and every file in a
// temporary folder; extra environment entries override. Access control is
// off unless extraEnv turns it on (POI_AUTH_ENABLED=true): these tests are
// about processes, not keys.
func startPoi(t *testing.T, redisURL string, extraEnv []string, args ...string) *proc {
	t.Helper()
	apiPort, natsPort, mqttPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(),
		"POITEST_EXEC_MAIN=1",
		"POI_API_ADDR=127.0.0.1:"+strconv.Itoa(apiPort),
		"POI_NATS_EMBEDDED_PORT="+strconv.Itoa(natsPort),
		"POI_MQTT_EMBEDDED_ADDR=127.0.0.1:"+strconv.Itoa(mqttPort),
		"POI_REDIS_URL="+redisURL,
		"POI_DATA_DIR="+t.TempDir(),
		"POI_SHUTDOWN_TIMEOUT=10s",
		"POI_API_DEPENDENCY_TIMEOUT=500ms",
		"POI_FACE_MODEL_DIR="+testenv.ModelDir(t),
		"POI_FACE_ORT_LIBRARY="+testenv.ORTLibrary(t),
		"POI_AUTH_ENABLED=false",
		// The fault tests replay frames in camera time up to two hours ago.
		"POI_PIPELINE_MAX_CLOCK_SKEW=48h",
		// The tests name their cameras as they go.
		"POI_CAMERAS_ALLOW_UNKNOWN=true",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{}),
		ports: []int{apiPort, natsPort, mqttPort}, api: fmt.Sprintf("http://127.0.0.1:%d", apiPort)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() || os.Getenv("POITEST_SHOW_LOGS") != "" {
			t.Logf("poi %s stderr:\n%s", args[0], p.stderr.String())
		}
	})
	return p
}

type status struct {
	Status        string   `json:"status"`
	FaissVectors  *int     `json:"faiss_vectors"`
	MQTTConnected *bool    `json:"mqtt_connected"`
	Down          []string `json:"down"`
}

// statusBound bounds one status request. The status must never hang, and
// this tells a hang from an answer: far longer than any answer takes, so a
// loaded machine does not fail the test.
const statusBound = 30 * time.Second

// getStatus fetches the status; took is how long it took to answer, for
// messages only (no test asserts on it).
func getStatus(t *testing.T, base string) (code int, s status, took time.Duration, err error) {
	t.Helper()
	c := http.Client{Timeout: statusBound}
	start := time.Now()
	resp, err := c.Get(base + "/api/v1/status")
	if err != nil {
		return 0, status{}, 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("status body: %v", err)
	}
	return resp.StatusCode, s, time.Since(start), nil
}

// waitStatus polls until cond holds, and fails if within passes first, if
// the process exits, or if a status request hangs.
func waitStatus(t *testing.T, p *proc, within time.Duration, what string, cond func(int, status) bool) status {
	t.Helper()
	var got status
	testenv.EventuallyNil(t, within, what, func() error {
		select {
		case <-p.done:
			t.Fatalf("poi exited while waiting for %s: %v", what, p.cmd.ProcessState)
		default:
		}
		code, s, took, err := getStatus(t, p.api)
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			t.Fatalf("status did not answer within %s: it must never hang", statusBound)
		}
		if err != nil {
			return err // not listening yet
		}
		if !cond(code, s) {
			return fmt.Errorf("last status %d %+v (answered in %s)", code, s, took)
		}
		got = s
		return nil
	})
	return got
}

func TestRunStatusDegradesWithRedisAndStopsCleanlyOnSIGTERM(t *testing.T) {
	redis := testenv.StartRedis(t)
	p := startPoi(t, redis.URL(), nil, "run")

	s := waitStatus(t, p, 60*time.Second, "running status with mqtt connected", func(code int, s status) bool {
		return code == 200 && s.Status == "running" && s.MQTTConnected != nil && *s.MQTTConnected
	})
	if s.FaissVectors == nil {
		t.Fatal("status lacks faiss_vectors")
	}

	redis.Stop()
	s = waitStatus(t, p, 30*time.Second, "degraded status", func(code int, s status) bool {
		return code == 503 && s.Status == "degraded"
	})
	if len(s.Down) != 1 || s.Down[0] != "redis" {
		t.Fatalf("down = %v, want [redis]", s.Down)
	}
	redis.Start()
	waitStatus(t, p, 30*time.Second, "running status after redis returned", func(code int, s status) bool {
		return code == 200 && s.Status == "running"
	})

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("poi did not exit within 20s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	t.Logf("shutdown took %s", time.Since(start))
	for _, port := range p.ports {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d still in use after exit: %v", port, err)
		}
		ln.Close()
	}
}

func TestBadConfigurationExitsNonZeroNamingTheField(t *testing.T) {
	redis := testenv.StartRedis(t)
	badFile := filepath.Join(t.TempDir(), "poi.yaml")
	if err := os.WriteFile(badFile, []byte("api:\n  adr: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		env   []string
		args  []string
		field string
	}{
		{"port out of range", []string{"POI_API_ADDR=127.0.0.1:70000"}, []string{"run"}, "api.addr"},
		{"unknown key", nil, []string{"run", "--config", badFile}, "api.adr"},
		{"nats url that does not answer", []string{"POI_NATS_URL=nats://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))}, []string{"api"}, "nats.url"},
		{"unknown pool", nil, []string{"worker", "--pools", "detect,paint"}, "paint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startPoi(t, redis.URL(), tc.env, tc.args...)
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				t.Fatal("poi did not exit on a bad configuration")
			}
			if p.cmd.ProcessState.ExitCode() == 0 {
				t.Fatal("exit code 0 on a bad configuration")
			}
			if !strings.Contains(p.stderr.String(), tc.field) {
				t.Fatalf("stderr does not name %q:\n%s", tc.field, p.stderr.String())
			}
		})
	}
}

// TestWorkerRoleServesMetricsAndHealth: a worker-only process (no API)
// joins a running `poi run` and reports on metrics_addr, and serves its
// profiles on pprof_addr only.
func TestWorkerRoleServesMetricsAndHealth(t *testing.T) {
	redis := testenv.StartRedis(t)
	all := startPoi(t, redis.URL(), nil, "run", "--pools", "detect,embed,index,alert")
	waitStatus(t, all, 60*time.Second, "the main process", func(code int, s status) bool { return code == 200 })
	opsPort, pprofPort := testenv.FreePort(t), testenv.FreePort(t)
	w := startPoi(t, redis.URL(), []string{
		"POI_NATS_URL=nats://127.0.0.1:" + strconv.Itoa(all.ports[1]),
		"POI_METRICS_ADDR=127.0.0.1:" + strconv.Itoa(opsPort),
		"POI_PPROF_ADDR=127.0.0.1:" + strconv.Itoa(pprofPort),
	}, "worker", "--pools", "alert")
	base := "http://127.0.0.1:" + strconv.Itoa(opsPort)
	var body map[string]any
	stacktest.Eventually(t, 30*time.Second, "the worker's /healthz", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode == 200
	})
	if body["status"] != "running" {
		t.Fatalf("healthz %v", body)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "go_goroutines") {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://127.0.0.1:" + strconv.Itoa(pprofPort) + "/debug/pprof/cmdline"); code != 200 || !strings.Contains(body, "worker") {
		t.Fatalf("pprof_addr cmdline: %d %q", code, body)
	}
	if code, _ := get(base + "/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Fatalf("metrics_addr serves profiles: %d", code)
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not stop on SIGTERM")
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("worker exit code %d", code)
	}
}
