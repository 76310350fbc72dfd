package bridge

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"poi/internal/testenv"
)

// fixture reads a SceneScape sample from ../shared when it is there (it is
// on CI machines); the test fails rather than skips when it is not.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	p := filepath.Join(testenv.RepoRoot(t), "..", "shared", "fixtures", "scenescape", name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("SceneScape fixture: %v", err)
	}
	return b
}

func reason(err error) string {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

func TestParseSceneScapeFixtures(t *testing.T) {
	d, err := ParseDetections("lp-camera1", fixture(t, "camera1.json"), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Persons) == 0 || len(d.Faces) != 0 {
		t.Fatalf("persons %d faces %d", len(d.Persons), len(d.Faces))
	}
	p := d.Persons[0]
	if len(p.Embedding) != 256 || p.ModelName != "torch-jit-export" {
		t.Fatalf("person embedding %d-d from %q", len(p.Embedding), p.ModelName)
	}
	if p.Box != [4]int{784, 137, 784 + 161, 137 + 364} {
		t.Fatalf("box %v", p.Box)
	}
	if !d.Timestamp.Equal(time.Date(2026, 4, 14, 13, 2, 43, 571e6, time.UTC)) {
		t.Fatalf("timestamp %v", d.Timestamp)
	}
	ev, err := ParseRegionEvent("bfb9f86b-b152-4e7f-8099-7c251ed84630", "adb88222-de2e-4896-a0e2-d577d21b132e", fixture(t, "event1.json"), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if ev.RegionName != "aisle1" || len(ev.Entered) != 1 || ev.Entered[0].ID != "9b2f533f-b8f3-40a2-99f4-47db0e81ebbe" {
		t.Fatalf("region event %+v", ev)
	}
}

func TestParseEmbeddingEncodings(t *testing.T) {
	want := []float32{0.5, -1.25, 3}
	b := make([]byte, 12)
	for i, v := range want {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	b64 := base64.StdEncoding.EncodeToString(b)
	for _, raw := range []string{
		`"` + b64 + `"`,
		`[0.5, -1.25, 3]`,
		`[[0.5, -1.25, 3]]`,
		`"[0.5, -1.25, 3]"`,
		`"[[0.5, -1.25, 3]]"`,
	} {
		got, err := ParseEmbedding(json.RawMessage(raw), 4096)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if len(got) != 3 || got[0] != 0.5 || got[1] != -1.25 || got[2] != 3 {
			t.Fatalf("%s: %v", raw, got)
		}
	}
	for raw, why := range map[string]string{
		`"not base64!"`: "bad_base64",
		`"AAAA AAA"`:    "bad_base64",
		`"AAAAAA=="`:    "bad_vector", // 4 bytes + 0: not a multiple of 4? (len 4 ok) -> see below
		`[1, "x"]`:      "bad_vector",
		`[]`:            "bad_vector",
		`[[1,2],[3,4]]`: "bad_vector",
		`{"a": 1}`:      "bad_vector",
		`[1e39, 1]`:     "bad_vector",
		`"AAAAAAA="`:    "bad_vector",
		`"AADAfw=="`:    "bad_vector", // NaN
	} {
		_, err := ParseEmbedding(json.RawMessage(raw), 4096)
		if raw == `"AAAAAA=="` { // 4 zero bytes: one valid float
			if err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			continue
		}
		if err == nil || reason(err) != why {
			t.Fatalf("%s: error %v (reason %q), want %s", raw, err, reason(err), why)
		}
	}
	big := make([]float64, 5000)
	raw, _ := json.Marshal(big)
	if _, err := ParseEmbedding(raw, 4096); reason(err) != "bad_vector" {
		t.Fatalf("oversized vector: %v", err)
	}
}

var jpegHeader = []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F'}

func TestParseFrameAndImageRejectBadInput(t *testing.T) {
	lim := DefaultLimits()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f, err := ParseFrame("cam-1", jpegHeader, now, lim)
	if err != nil || !f.Timestamp.Equal(now) || len(f.JPEG) != len(jpegHeader) {
		t.Fatalf("raw frame: %+v %v", f, err)
	}
	js := `{"timestamp":"2026-11-27T09:00:00.5Z","image":"` + base64.StdEncoding.EncodeToString(jpegHeader) + `"}`
	f, err = ParseFrame("cam-1", []byte(js), now, lim)
	if err != nil || f.Timestamp.Format(time.RFC3339Nano) != "2026-11-27T09:00:00.5Z" {
		t.Fatalf("json frame: %+v %v", f, err)
	}
	cases := map[string]struct {
		camera  string
		payload []byte
		reason  string
	}{
		"not jpeg":       {"cam", []byte("hello"), "not_jpeg"},
		"empty":          {"cam", nil, "not_jpeg"},
		"bad json":       {"cam", []byte(`{"timestamp": 5`), "bad_json"},
		"wrong types":    {"cam", []byte(`{"timestamp": 5, "image": []}`), "bad_json"},
		"bad timestamp":  {"cam", []byte(`{"timestamp":"yesterday","image":"/9j/"}`), "bad_timestamp"},
		"no timestamp":   {"cam", []byte(`{"image":"/9j/"}`), "bad_timestamp"},
		"bad base64":     {"cam", []byte(`{"timestamp":"2026-01-01T00:00:00Z","image":"***"}`), "bad_base64"},
		"base64 of text": {"cam", []byte(`{"timestamp":"2026-01-01T00:00:00Z","image":"aGVsbG8="}`), "not_jpeg"},
		"oversized":      {"cam", append(append([]byte{}, jpegHeader...), make([]byte, 13<<20)...), "too_large"},
		"empty camera":   {"", jpegHeader, "bad_topic"},
		"long camera":    {strings.Repeat("c", 200), jpegHeader, "bad_topic"},
	}
	for name, tc := range cases {
		if _, err := ParseFrame(tc.camera, tc.payload, now, lim); reason(err) != tc.reason {
			t.Errorf("%s: error %v, want reason %s", name, err, tc.reason)
		}
	}
	if _, err := ParseCameraImage("cam", []byte(`{"timestamp":"2026-01-01T00:00:00Z","id":"cam","image":"aGVsbG8="}`), lim); reason(err) != "not_jpeg" {
		t.Fatalf("image of text: %v", err)
	}
	if _, err := ParseDetections("cam", []byte(`{"timestamp":"2026-01-01T00:00:00Z","objects":{"person":[{"bounding_box_px":{"x":1}}]}}`), lim); reason(err) != "bad_box" {
		t.Fatalf("box without size: %v", err)
	}
	if _, err := ParseDetections("cam", []byte(`{"timestamp":"2026-01-01T00:00:00Z","objects":{"person":"many"}}`), lim); reason(err) != "bad_json" {
		t.Fatalf("objects of wrong type: %v", err)
	}
}

func TestParseDetectionsFaceSubObjects(t *testing.T) {
	msg := `{"id":"cam","timestamp":"2026-01-01T00:00:00Z","objects":{"person":[{"confidence":0.9,
	"bounding_box_px":{"x":10,"y":20,"width":100,"height":200},
	"sub_objects":{"face":[{"confidence":0.8,"bounding_box_px":{"x":30,"y":25,"width":40,"height":50},
	"metadata":{"reid":{"embedding_vector":[[1,2,3]],"model_name":"fr_feature"}}}]}}]}}`
	d, err := ParseDetections("cam", []byte(msg), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Faces) != 1 || d.Faces[0].Box != [4]int{30, 25, 70, 75} || len(d.Faces[0].Embedding) != 3 || d.Faces[0].ModelName != "fr_feature" {
		t.Fatalf("faces %+v", d.Faces)
	}
}

func FuzzParseDetections(f *testing.F) {
	f.Add([]byte(`{"timestamp":"2026-01-01T00:00:00Z","objects":{"person":[{"bounding_box_px":{"x":1,"y":2,"width":3,"height":4},"metadata":{"reid":{"embedding_vector":"AAAAAA=="}}}]}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseDetections("cam", b, DefaultLimits())
	})
}

func FuzzParseRegionEvent(f *testing.F) {
	f.Add([]byte(`{"timestamp":"2026-01-01T00:00:00Z","entered":[{"id":"a","camera_bounds":{"c":{"x":1,"y":1,"width":2,"height":2}}}],"exited":[{"object":{"id":"b"},"dwell":2.5}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseRegionEvent("s", "r", b, DefaultLimits())
	})
}

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte(`{"timestamp":"2026-01-01T00:00:00Z","image":"/9j/4AAQ"}`))
	f.Add(jpegHeader)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseFrame("cam", b, time.Now(), DefaultLimits())
		_, _ = ParseCameraImage("cam", b, DefaultLimits())
	})
}

func FuzzParseEmbedding(f *testing.F) {
	f.Add([]byte(`"AAAAAA=="`))
	f.Add([]byte(`[[1,2]]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseEmbedding(b, 4096)
		if err == nil {
			for _, x := range v {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					t.Fatalf("non-finite value accepted from %q", b)
				}
			}
		}
	})
}
