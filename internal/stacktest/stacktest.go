// Package stacktest starts the whole service in the test process, against
// real servers: a redis-server of its own, the embedded nats-server and MQTT
// broker, the real face models. Tests of the API and of the pipeline use it.
package stacktest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/jpeg"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/api"
	"poi/internal/config"
	"poi/internal/mqttclient"
	"poi/internal/node"
	"poi/internal/store"
	"poi/internal/testenv"
)

// Stack is a running service.
type Stack struct {
	URL     string // http://127.0.0.1:port
	MQTTURL string
	NATSURL string
	Config  config.Config
	Redis   *testenv.Redis
	Store   *store.Store
	NC      *nats.Conn
	JS      jetstream.JetStream
	Node    *node.Node
	// AdminKey is the bootstrap admin key (Options.Auth).
	AdminKey string
	cancel   context.CancelFunc
	finished chan error
}

// Options adjust the stack.
type Options struct {
	// Pools to run (default all four).
	Pools []string
	// Env are extra POI_* settings ("POI_PIPELINE_TRACK_SILENCE=2s").
	Env []string
	// Redis to use instead of starting one.
	Redis *testenv.Redis
	// DataDir to use instead of a fresh temporary one.
	DataDir string
	// Auth runs the stack with access control on, as deployed; the stack's
	// AdminKey is then the bootstrap key. Off (the default for tests that
	// are not about access control), every caller is an admin.
	Auth bool
	// Log receives the stack's log at debug level instead of stderr.
	Log io.Writer
}

// Env returns the POI_* environment of an isolated stack: free ports, a
// private data dir, the given Redis and the set-up's models.
func Env(t testing.TB, redisURL, dataDir string) []string {
	return []string{
		// Port 0 everywhere: the servers bind any free port themselves, so
		// parallel tests can never race for one.
		"POI_API_ADDR=127.0.0.1:0",
		"POI_NATS_EMBEDDED_PORT=0",
		"POI_MQTT_EMBEDDED_ADDR=127.0.0.1:0",
		"POI_REDIS_URL=" + redisURL,
		"POI_DATA_DIR=" + dataDir,
		"POI_FACE_MODEL_DIR=" + testenv.ModelDir(t),
		"POI_FACE_ORT_LIBRARY=" + testenv.ORTLibrary(t),
		"POI_SHUTDOWN_TIMEOUT=10s",
		// Tests replay frames in camera time up to a few hours ago.
		"POI_PIPELINE_MAX_CLOCK_SKEW=48h",
		// Tests name their cameras as they go.
		"POI_CAMERAS_ALLOW_UNKNOWN=true",
	}
}

// Start runs the service until the test ends.
func Start(t testing.TB, o Options) *Stack {
	t.Helper()
	if o.Redis == nil {
		o.Redis = testenv.StartRedis(t)
	}
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.Pools == nil {
		o.Pools = []string{"detect", "embed", "index", "alert"}
	}
	env := Env(t, o.Redis.URL(), o.DataDir)
	if !o.Auth {
		env = append(env, "POI_AUTH_ENABLED=false")
	}
	cfg, err := config.Load("", append(env, o.Env...))
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("POI_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	var out io.Writer = os.Stderr
	if o.Log != nil {
		out, level = o.Log, slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	n, err := node.New(cfg, node.Roles{Embedded: true, Bridge: true, API: true, Pools: o.Pools}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stack{Config: cfg, Redis: o.Redis, Node: n, cancel: cancel, finished: make(chan error, 1)}
	go func() { s.finished <- n.Run(ctx) }()
	select {
	case <-n.Ready:
	case err := <-s.finished:
		cancel()
		t.Fatalf("stack did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("stack not ready within 60s")
	}
	t.Cleanup(s.Stop)
	s.URL = "http://" + n.APIAddr()
	s.MQTTURL = n.MQTTURL()
	s.NATSURL = n.NATSURL()
	if s.Store, err = store.Open(o.Redis.URL(), cfg.Redis.KeyPrefix); err != nil {
		t.Fatal(err)
	}
	if s.NC, err = nats.Connect(s.NATSURL); err != nil {
		t.Fatal(err)
	}
	s.JS, _ = jetstream.New(s.NC)
	if o.Auth {
		b, err := os.ReadFile(api.AdminKeyFile(o.DataDir))
		if err != nil {
			t.Fatalf("the bootstrap admin key: %v", err)
		}
		s.AdminKey = strings.TrimSpace(string(b))
	}
	return s
}

// Request is an http.Request with key (if not empty) as a bearer token.
func Request(t testing.TB, method, url, key string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return req
}

// Stop shuts the stack down and waits for it (idempotent).
func (s *Stack) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case <-s.finished:
	case <-time.After(30 * time.Second):
	}
	if s.NC != nil {
		s.NC.Close()
	}
	if s.Store != nil {
		s.Store.Close()
	}
}

// MQTT connects a publisher/subscriber client to the stack's broker.
func (s *Stack) MQTT(t testing.TB) *mqttclient.Client {
	t.Helper()
	cl, err := mqttclient.Connect(context.Background(), mqttclient.Options{URL: s.MQTTURL, ConnectTimeout: 5 * time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(100 * time.Millisecond) })
	return cl
}

// FrameJSON is a poi/frames payload with an explicit timestamp.
func FrameJSON(jpeg []byte, ts time.Time) []byte {
	b, _ := json.Marshal(map[string]string{"timestamp": ts.UTC().Format(time.RFC3339Nano), "image": base64.StdEncoding.EncodeToString(jpeg)})
	return b
}

// Eventually is testenv.Eventually, kept here for the tests that already
// call it through this package.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, within, what, cond)
}

// Enroll posts photos (by name, from the set-up's photos) to
// POST {base}/api/v1/poi with the given form fields and returns the POI id.
func Enroll(t testing.TB, base string, fields map[string]string, photos ...string) string {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for _, p := range photos {
		fw, _ := w.CreateFormFile("images", p)
		fw.Write(testenv.ReadPhoto(t, p))
	}
	for k, v := range fields {
		w.WriteField(k, v)
	}
	w.Close()
	resp, err := http.Post(base+"/api/v1/poi", w.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		POIID string `json:"poi_id"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusCreated || out.POIID == "" {
		t.Fatalf("enroll %v: status %d", photos, resp.StatusCode)
	}
	return out.POIID
}

// GetJPEG fetches url and checks it is a cacheable JPEG that decodes.
func GetJPEG(t testing.TB, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || resp.Header.Get("Cache-Control") == "" {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if _, err := jpeg.Decode(resp.Body); err != nil {
		t.Fatalf("GET %s: not a JPEG: %v", url, err)
	}
}
