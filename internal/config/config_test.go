package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"poi/internal/face"
)

func TestDefaultsAreValid(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c.API.Addr != "0.0.0.0:8000" || c.Redis.URL != "redis://127.0.0.1:6379/0" || !c.NATS.Embedded() || !c.MQTT.Embedded() {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.MQTT.BrokerURL() != "tcp://127.0.0.1:1883" {
		t.Fatalf("mqtt broker url = %q", c.MQTT.BrokerURL())
	}
	if c.DataDir != "./data" || c.ShutdownTimeout != 15*time.Second {
		t.Fatalf("data dir / shutdown: %q %s", c.DataDir, c.ShutdownTimeout)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	c, err := Load("", []string{
		"POI_API_ADDR=127.0.0.1:9001",
		"POI_FACE_MATCH_THRESHOLD=0.55",
		"POI_PIPELINE_ALERT_COOLDOWN=1m",
		"POI_API_MAX_IMAGES=3",
		"POI_ASSETS_DIR=/elsewhere", // set-up variable, not a setting
		"HOME=/root",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Addr != "127.0.0.1:9001" || c.Face.MatchThreshold != 0.55 || c.Pipeline.AlertCooldown != time.Minute || c.API.MaxImages != 3 {
		t.Fatalf("overrides not applied: %+v", c)
	}
}

func TestClusterSettings(t *testing.T) {
	c, err := Load("", []string{
		"POI_NATS_URL=nats://n1:4222,nats://n2:4222,nats://n3:4222",
		"POI_NATS_REPLICAS=3",
		`POI_REDIS_SENTINEL_ADDRS=["s1:26379","s2:26379"]`,
		"POI_REDIS_SENTINEL_MASTER=poi",
		"POI_REDIS_WAIT_REPLICAS=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.Replicas != 3 || !c.Redis.Sentinel() || len(c.Redis.SentinelAddrs) != 2 || c.Redis.SentinelMaster != "poi" || c.Redis.WaitReplicas != 1 {
		t.Fatalf("cluster settings not applied: %+v %+v", c.NATS, c.Redis)
	}
	d, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.NATS.Replicas != 1 || d.Redis.Sentinel() || d.Redis.WaitReplicas != 0 {
		t.Fatalf("defaults: %+v %+v", d.NATS, d.Redis)
	}
}

func TestFileOverridesDefaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "poi.yaml")
	if err := os.WriteFile(p, []byte("api:\n  addr: 127.0.0.1:8123\nredis:\n  key_prefix: \"site1:\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Addr != "127.0.0.1:8123" || c.Redis.KeyPrefix != "site1:" || c.API.MaxImages != 5 {
		t.Fatalf("file not merged over defaults: %+v", c.API)
	}
}

func TestBadConfigurationNamesTheField(t *testing.T) {
	cases := []struct {
		name  string
		file  string
		env   []string
		field string
	}{
		{"port out of range", "", []string{"POI_API_ADDR=0.0.0.0:70000"}, "api.addr"},
		{"embedded nats port", "", []string{"POI_NATS_EMBEDDED_PORT=-4"}, "nats.embedded_port"},
		{"bad nats url", "", []string{"POI_NATS_URL=http://x:4222"}, "nats.url"},
		{"unknown env", "", []string{"POI_API_ADR=1"}, "POI_API_ADR"},
		{"not a number", "", []string{"POI_API_MAX_IMAGES=five"}, "POI_API_MAX_IMAGES"},
		{"threshold", "", []string{"POI_FACE_MATCH_THRESHOLD=1.5"}, "face.match_threshold"},
		{"tracker iou", "", []string{"POI_PIPELINE_TRACKER_MIN_IOU=0"}, "pipeline.tracker.min_iou"},
		{"tracker view", "", []string{"POI_PIPELINE_TRACKER_BETTER_VIEW=0.5"}, "pipeline.tracker.better_view"},
		{"retry for", "", []string{"POI_PIPELINE_RETRY_FOR=0s"}, "pipeline.retry_for"},
		{"frames pool", "", []string{"POI_PIPELINE_FRAMES_CONCURRENCY=0"}, "pipeline.frames_concurrency"},
		{"face timeout", "", []string{"POI_FACE_REQUEST_TIMEOUT=-1s"}, "face.request_timeout"},
		{"face resend beyond the timeout", "", []string{"POI_FACE_RESEND_AFTER=1m"}, "face.resend_after"},
		{"replicas", "", []string{"POI_NATS_URL=nats://a:4222,nats://b:4222", "POI_NATS_REPLICAS=7"}, "nats.replicas"},
		{"replicas embedded", "", []string{"POI_NATS_REPLICAS=3"}, "nats.replicas"},
		{"nats url list", "", []string{"POI_NATS_URL=nats://a:4222,http://b:4222"}, "nats.url"},
		{"sentinel without master", "", []string{`POI_REDIS_SENTINEL_ADDRS=["127.0.0.1:26379"]`}, "redis.sentinel_master"},
		{"sentinel addr", "", []string{`POI_REDIS_SENTINEL_ADDRS=["nowhere"]`, "POI_REDIS_SENTINEL_MASTER=m"}, "redis.sentinel_addrs[0]"},
		{"wait replicas", "", []string{"POI_REDIS_WAIT_REPLICAS=-1"}, "redis.wait_replicas"},
		{"unknown key", "api:\n  adr: 1\n", nil, "adr"},
		{"bad duration", "shutdown_timeout: soon\n", nil, "shutdown_timeout"},
		{"log level", "log:\n  level: loud\n", nil, "log.level"},
		{"unknown cameras key", "cameras:\n  allow_unknwon: true\n", nil, "allow_unknwon"},
		{"camera without id", "cameras:\n  list: [{name: Door}]\n", nil, "cameras.list[0].id"},
		{"camera cap", "", []string{"POI_CAMERAS_MAX_UNKNOWN=0"}, "cameras.max_unknown"},
		{"clock skew", "", []string{"POI_PIPELINE_MAX_CLOCK_SKEW=0s"}, "pipeline.max_clock_skew"},
		{"jpeg scans", "", []string{"POI_API_MAX_JPEG_SCANS=0"}, "api.max_jpeg_scans"},
		{"unmatched above retention", "", []string{"POI_PIPELINE_UNMATCHED_RETENTION=200h"}, "pipeline.unmatched_retention"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = filepath.Join(t.TempDir(), "poi.yaml")
				if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(path, tc.env)
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

// The shipped thresholds are the ones the face engine's calibration test
// (TestSimilarityMatrix on the real photos) proves.
func TestThresholdDefaultsAreTheCalibratedOnes(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Face.MatchThreshold != face.DefaultMatchThreshold || c.Face.SearchThreshold != face.DefaultSearchThreshold {
		t.Fatalf("configs/poi.yaml thresholds %.2f/%.2f, calibrated %.2f/%.2f", c.Face.MatchThreshold, c.Face.SearchThreshold, face.DefaultMatchThreshold, face.DefaultSearchThreshold)
	}
	if c.Face.DetectThreshold != float64(face.DefaultScoreThreshold) {
		t.Fatalf("detect threshold %v, engine default %v", c.Face.DetectThreshold, face.DefaultScoreThreshold)
	}
}

// The cameras section, and the list of cameras it replaced (in a file and
// as POI_CAMERAS), both still load.
func TestCamerasSection(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cameras.AllowUnknown || len(c.Cameras.List) != 0 || c.Cameras.MaxUnknown != 1000 || c.Cameras.IdleTTL != 24*time.Hour {
		t.Fatalf("camera defaults %+v", c.Cameras)
	}
	dir := t.TempDir()
	for name, file := range map[string]string{
		"section": "cameras:\n  list: [{id: c1, name: Door}]\n  allow_unknown: true\n  max_unknown: 7\n",
		"legacy":  "cameras: [{id: c1, name: Door}]\n",
	} {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(c.Cameras.List) != 1 || c.Cameras.List[0] != (Camera{ID: "c1", Name: "Door"}) || c.Cameras.IDs()[0] != "c1" {
			t.Fatalf("%s: %+v", name, c.Cameras)
		}
		if name == "section" && (!c.Cameras.AllowUnknown || c.Cameras.MaxUnknown != 7 || c.Cameras.IdleTTL != 24*time.Hour) {
			t.Fatalf("section: %+v", c.Cameras)
		}
	}
	for _, env := range []string{"POI_CAMERAS", "POI_CAMERAS_LIST"} {
		c, err := Load("", []string{env + `=[{"id":"c2","name":"Dock"}]`, "POI_CAMERAS_ALLOW_UNKNOWN=true"})
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		if len(c.Cameras.List) != 1 || c.Cameras.List[0].ID != "c2" || !c.Cameras.AllowUnknown {
			t.Fatalf("%s: %+v", env, c.Cameras)
		}
	}
}

func TestUnmatchedRetentionDefaultsToRetention(t *testing.T) {
	c, err := Load("", []string{"POI_PIPELINE_RETENTION=720h"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pipeline.Unmatched() != 720*time.Hour {
		t.Fatalf("unmatched retention %s, want the retention", c.Pipeline.Unmatched())
	}
	c, err = Load("", []string{"POI_PIPELINE_RETENTION=720h", "POI_PIPELINE_UNMATCHED_RETENTION=4h"})
	if err != nil || c.Pipeline.Unmatched() != 4*time.Hour {
		t.Fatalf("unmatched retention %s, %v", c.Pipeline.Unmatched(), err)
	}
}
