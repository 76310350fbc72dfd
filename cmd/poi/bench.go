package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	xdraw "golang.org/x/image/draw"

	"poi/api"
	"poi/internal/config"
	"poi/internal/imaging"
	"poi/internal/loadgen"
	"poi/internal/mqttclient"
	"poi/streams"
	"poi/workers/embed"
)

// benchFlags are `poi bench`'s own flags.
type benchFlags struct {
	o                 loadgen.Options
	natsURL, apiURL   string
	metrics           string
	photos            string
	enroll, strangers string
	persons           int
	visit             time.Duration
	images            bool
	frameGlob, size   string
	jsonOut           bool
	bareAddr          string
	keyFile           string
}

func addBenchFlags(fs *flag.FlagSet, b *benchFlags) {
	fs.Float64Var(&b.o.Rate, "rate", 1000, "scenescape: messages per second over all cameras (the first step with --step)")
	fs.IntVar(&b.o.Cameras, "cameras", 4, "cameras (frames: the first step with --step)")
	fs.Float64Var(&b.o.FPS, "fps", 10, "frames: frames per second per camera")
	fs.DurationVar(&b.o.Duration, "duration", 30*time.Second, "measured time of a step")
	fs.DurationVar(&b.o.Warmup, "warmup", 5*time.Second, "unmeasured time before each step")
	fs.BoolVar(&b.o.Step, "step", false, "search for the highest sustained load")
	fs.Float64Var(&b.o.StepFactor, "step-factor", 1.25, "growth of the load between steps")
	fs.StringVar(&b.natsURL, "nats", "nats://127.0.0.1:4222", "the deployment's NATS (model, backlog)")
	fs.StringVar(&b.apiURL, "api", "http://127.0.0.1:8000", "the deployment's API (enrolments; empty: enrol nobody)")
	fs.StringVar(&b.metrics, "metrics", "http://127.0.0.1:8000/metrics", "comma-separated /metrics of the deployment's processes")
	fs.StringVar(&b.photos, "photos", ".assets/photos", "folder of face photos")
	fs.StringVar(&b.enroll, "enroll", "chuck_crop.jpg,fragrance-George-Clooney-main_crop.jpg,bill-murray-snl_crop.jpg,kim1_crop.jpg,obama4_crop.jpg,queen20_crop.jpg,ri_1_crop.jpg,terminator_crop.jpg,walter2_crop.jpg,joconde_crop.jpg",
		"scenescape: photos enrolled as POIs, whose vectors the visitors carry")
	fs.StringVar(&b.strangers, "strangers", "cage.jpg,SeanConnery.jpg,bieber_small.jpg,franck_01829.jpg", "scenescape: photos of people never enrolled")
	fs.IntVar(&b.persons, "persons", 2, "scenescape: persons per message (one of them an enrolled visitor)")
	fs.DurationVar(&b.visit, "visit", 700*time.Millisecond, "scenescape: how long an enrolled visitor stays")
	fs.BoolVar(&b.images, "images", false, "scenescape: publish a camera image per camera first")
	fs.StringVar(&b.frameGlob, "glob", "franck_0*.jpg", "frames: photos inside --photos")
	fs.StringVar(&b.size, "size", "1920x1080", "frames: scale the photos onto frames of this size (empty: as they are)")
	fs.BoolVar(&b.jsonOut, "json", false, "print the steps as JSON")
	fs.StringVar(&b.o.Stage, "stage", "index", "the stage whose processed messages count as done (bare: the bare bridge)")
	fs.StringVar(&b.bareAddr, "bare-addr", "127.0.0.1:9109", "bare: where the bare bridge serves /metrics")
	fs.StringVar(&b.keyFile, "key-file", "", "file holding an operator or admin API key for --api and --metrics (default {data_dir}/admin.key; none there: no key)")
}

// benchKey reads the API key the bench sends. The default file may be
// absent (a deployment with access control off); a named one must exist.
func benchKey(cfg config.Config, keyFile string) (string, error) {
	path, named := keyFile, keyFile != ""
	if !named {
		path = api.AdminKeyFile(cfg.DataDir)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !named {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("--key-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func runBench(ctx context.Context, cfg config.Config, mode string, b benchFlags, log *slog.Logger, stdout, stderr io.Writer) int {
	b.o.Mode, b.o.MetricsURLs = mode, splitList(b.metrics)
	switch mode {
	case "scenescape", "frames":
		key, err := benchKey(cfg, b.keyFile)
		if err != nil {
			fmt.Fprintf(stderr, "poi bench: %v\n", err)
			return 2
		}
		b.o.APIKey = key
	case "bare":
		return runBareBridge(ctx, cfg, b, log, stderr)
	case "floor":
		return runFloor(ctx, cfg, b, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "poi bench: mode must be scenescape, frames, bare or floor, got %q\n", mode)
		return 2
	}
	mq, err := mqttclient.Connect(ctx, mqttclient.Options{URL: cfg.MQTT.BrokerURL(), Username: cfg.MQTT.Username, Password: cfg.MQTT.Password,
		ConnectTimeout: cfg.MQTT.ConnectTimeout}, log)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench: mqtt: %v\n", err)
		return 1
	}
	defer mq.Close(time.Second)
	nc, err := nats.Connect(b.natsURL)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench: nats: %v\n", err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench: jetstream: %v\n", err)
		return 1
	}
	r := loadgen.New(b.o, mq, js, log)
	if err := r.Listen(ctx); err != nil {
		fmt.Fprintf(stderr, "poi bench: %v\n", err)
		return 1
	}
	var sources func(n int) ([]loadgen.Source, error)
	if mode == "scenescape" {
		sources, err = sceneSources(ctx, nc, mq, b)
	} else {
		sources, err = frameSources(b)
	}
	if err != nil {
		fmt.Fprintf(stderr, "poi bench: %v\n", err)
		return 1
	}
	steps, err := r.Run(ctx, sources)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench: %v\n", err)
		return 1
	}
	if b.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(steps)
		return 0
	}
	fmt.Fprintf(stdout, "%-8s %-10s %-10s %-9s %-9s %-7s %-9s %-9s %-9s %-6s %s\n", "cameras", "offered/s", "processed", "backlog", "cpu", "alerts", "p50", "p95", "p99", "kept", "rejected")
	for _, s := range steps {
		fmt.Fprintf(stdout, "%-8d %-10.1f %-10.1f %-9d %-9.2f %-7d %-9s %-9s %-9s %-6v %v\n", s.Cameras, s.Offered, s.Processed, s.BacklogEnd, s.CPU, s.Alerts,
			s.Latency.P50.Round(100*time.Microsecond), s.Latency.P95.Round(100*time.Microsecond), s.Latency.P99.Round(100*time.Microsecond), s.Sustained, s.Rejected)
	}
	return 0
}

// sceneSources enrols the POIs, embeds every photo through the deployment's
// own embedding service (so the vectors are of its model) and builds the
// cameras.
func sceneSources(ctx context.Context, nc *nats.Conn, mq *mqttclient.Client, b benchFlags) (func(int) ([]loadgen.Source, error), error) {
	cl := embed.NewClient(nc, streams.EmbedService, 30*time.Second, 0, nil)
	info, err := cl.Info(ctx)
	if err != nil {
		return nil, err
	}
	vector := func(name string) ([]float32, []byte, error) {
		img, err := os.ReadFile(filepath.Join(b.photos, name))
		if err != nil {
			return nil, nil, err
		}
		rep, err := cl.Do(ctx, img, embed.Params{Mode: embed.ModeLargest})
		if err != nil {
			return nil, nil, fmt.Errorf("embed %s: %w", name, err)
		}
		return rep.Faces[rep.Used].Embedding, img, nil
	}
	var visitors, strangers []loadgen.Person
	existing := map[string]string{}
	if b.apiURL != "" {
		if existing, err = benchPOIs(ctx, b.apiURL, b.o.APIKey); err != nil {
			return nil, err
		}
	}
	for _, name := range splitList(b.enroll) {
		v, img, err := vector(name)
		if err != nil {
			return nil, err
		}
		// Enrolled once per deployment: a second POI of the same photo
		// would take some of the alerts.
		id, ok := existing[benchNotes(name)]
		if !ok && b.apiURL != "" {
			if id, err = enrollPOI(ctx, b.apiURL, b.o.APIKey, name, img); err != nil {
				return nil, err
			}
		}
		visitors = append(visitors, loadgen.Person{Box: [4]int{0, 2000, 90, 200}, Vector: v, POI: id})
	}
	for i, name := range splitList(b.strangers) {
		v, _, err := vector(name)
		if err != nil {
			return nil, err
		}
		strangers = append(strangers, loadgen.Person{Box: [4]int{1000 + 200*(i%4), 200, 180, 400}, Vector: v})
	}
	var frame []byte
	if b.images {
		if frame, err = os.ReadFile(filepath.Join(b.photos, "faces.jpg")); err != nil {
			return nil, err
		}
	}
	return func(n int) ([]loadgen.Source, error) {
		var out []loadgen.Source
		for c := range n {
			cam := fmt.Sprintf("bench-ss-%02d", c+1)
			if frame != nil {
				msg := fmt.Sprintf(`{"timestamp":%q,"id":%q,"image":%q}`, time.Now().UTC().Format(time.RFC3339Nano), cam, encodeB64(frame))
				if err := mq.Publish(ctx, "scenescape/image/camera/"+cam, 1, false, []byte(msg)); err != nil {
					return nil, err
				}
			}
			sc := &loadgen.Scene{Camera: cam, Visit: b.visit}
			for k := range max(0, b.persons-1) {
				sc.Strangers = append(sc.Strangers, strangers[(c+k)%len(strangers)])
			}
			// Each camera shows the visitors in its own order.
			for k := range visitors {
				sc.Visitors = append(sc.Visitors, visitors[(c+k)%len(visitors)])
			}
			out = append(out, &loadgen.SceneSource{Scene: sc, Model: info.Model, Rate: b.o.Rate / float64(n)})
		}
		return out, nil
	}, nil
}

// frameSources builds cameras that send the frames of --glob.
func frameSources(b benchFlags) (func(int) ([]loadgen.Source, error), error) {
	jpegs, err := loadFrames(b)
	if err != nil {
		return nil, err
	}
	return func(n int) ([]loadgen.Source, error) {
		out := make([]loadgen.Source, n)
		for c := range n {
			out[c] = loadgen.NewFrameSource(fmt.Sprintf("bench-cam-%02d", c+1), jpegs)
		}
		return out, nil
	}, nil
}

// scaleOnto scales a photo to fill a WxH frame (as a camera of that size
// would see the scene) and encodes it as a JPEG.
func scaleOnto(jpeg []byte, size string) ([]byte, error) {
	var w, h int
	if _, err := fmt.Sscanf(size, "%dx%d", &w, &h); err != nil || w < 16 || h < 16 {
		return nil, fmt.Errorf("size %q: want WIDTHxHEIGHT", size)
	}
	img, err := imaging.Decode(jpeg, imaging.DefaultLimits())
	if err != nil {
		return nil, err
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.ApproxBiLinear.Scale(dst, dst.Rect, img, img.Rect, xdraw.Src, nil)
	return imaging.EncodeJPEG(dst, 85)
}

// enrollPOI enrols a photo through the API and returns the POI's id.
func enrollPOI(ctx context.Context, api, key, name string, img []byte) (string, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("images", name)
	if err != nil {
		return "", err
	}
	if _, err := fw.Write(img); err != nil {
		return "", err
	}
	_ = mw.WriteField("severity", "high")
	_ = mw.WriteField("description", benchNotes(name))
	if err := mw.Close(); err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/api/v1/poi", &body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	setKey(req, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("enroll %s: %w", name, err)
	}
	defer resp.Body.Close()
	var out struct {
		POIID string `json:"poi_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode/100 != 2 || out.POIID == "" {
		return "", fmt.Errorf("enroll %s: status %d", name, resp.StatusCode)
	}
	return out.POIID, nil
}

// setKey sends key, if any, as a bearer token.
func setKey(req *http.Request, key string) {
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
}

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// benchNotes marks the POIs the bench enrols.
func benchNotes(photo string) string {
	return "poi bench: " + strings.TrimSuffix(photo, filepath.Ext(photo))
}

// benchPOIs finds the POIs an earlier run enrolled, by their notes.
func benchPOIs(ctx context.Context, api, key string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/v1/poi", nil)
	if err != nil {
		return nil, err
	}
	setKey(req, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("list pois: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list pois: status %d (an API with access control needs --key-file)", resp.StatusCode)
	}
	var list []struct {
		POIID string `json:"poi_id"`
		Notes string `json:"notes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("list pois: %w", err)
	}
	out := map[string]string{}
	for _, p := range list {
		if strings.HasPrefix(p.Notes, "poi bench: ") {
			out[p.Notes] = p.POIID
		}
	}
	return out, nil
}
