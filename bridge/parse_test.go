package bridge

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"image/jpeg"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"poi/internal/testenv"
	"poi/streams"
)

// The project's own SceneScape messages are in testdata/scenescape at the
// repository root; its README gives the formulas their vectors follow.
const (
	fixtureCamera = "lobby-cam"
	fixtureScene  = "7781b1eb-e47d-482b-83bb-35119a1e69e8"
	fixtureRegion = "7e0b3cef-d726-4181-822a-098a6b46b44e"
)

// bodyVector is body re-id vector k of the fixtures.
func bodyVector(k int) []float32 {
	v := make([]float32, 256)
	for i := range v {
		v[i] = float32((7*i+13*k)%33-16) / 32
	}
	return v
}

// faceVector is face vector f of the fixtures.
func faceVector(f int) []float32 {
	v := make([]float32, 512)
	for i := range v {
		v[i] = float32((5*i+11*f)%41-20) / 64
	}
	return v
}

func reason(err error) string {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

func at(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestParseSceneScapeFixtures(t *testing.T) {
	lim := DefaultLimits()
	t.Run("persons with base64 body vectors", func(t *testing.T) {
		d, err := ParseDetections(fixtureCamera, testenv.SceneScapeFixture(t, "data-camera-persons.json"), lim)
		if err != nil {
			t.Fatal(err)
		}
		if d.CameraID != fixtureCamera || !d.Timestamp.Equal(at(t, "2026-03-09T08:15:30.250Z")) {
			t.Fatalf("camera %q at %v", d.CameraID, d.Timestamp)
		}
		if len(d.Persons) != 3 || len(d.Faces) != 0 {
			t.Fatalf("persons %d faces %d, want 3 and 0", len(d.Persons), len(d.Faces))
		}
		want := []struct {
			box        streams.Box
			confidence float32
			vector     []float32
			model      string
		}{
			{streams.Box{412, 96, 570, 467}, 0.96875, bodyVector(1), "person-reid-256"},
			// Fractional pixels round to the nearest one.
			{streams.Box{1105, 210, 1203, 451}, 0.8125, bodyVector(2), "person-reid-256"},
			{streams.Box{20, 300, 80, 450}, 0.5, nil, ""},
		}
		for i, w := range want {
			p := d.Persons[i]
			if p.Box != w.box || p.Confidence != w.confidence || !slices.Equal(p.Embedding, w.vector) || p.ModelName != w.model {
				t.Errorf("person %d: box %v confidence %v model %q %d-d vector, want %v %v %q %d-d (values by the formula)",
					i+1, p.Box, p.Confidence, p.ModelName, len(p.Embedding), w.box, w.confidence, w.model, len(w.vector))
			}
		}
	})
	t.Run("face sub-objects in every vector encoding", func(t *testing.T) {
		d, err := ParseDetections(fixtureCamera, testenv.SceneScapeFixture(t, "data-camera-faces.json"), lim)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Timestamp.Equal(at(t, "2026-03-09T08:15:30.350Z")) {
			t.Fatalf("timestamp %v", d.Timestamp)
		}
		if len(d.Persons) != 6 || len(d.Faces) != 6 {
			t.Fatalf("persons %d faces %d, want 6 and 6", len(d.Persons), len(d.Faces))
		}
		boxes := []streams.Box{{455, 104, 519, 184}, {680, 130, 740, 202}, {900, 150, 956, 218}, {1075, 168, 1127, 232}, {1230, 186, 1278, 246}, {128, 206, 172, 260}}
		encodings := []string{"base64", "JSON list", "nested list", "JSON string of a list", "JSON string of a nested list", "no vector"}
		for i, f := range d.Faces {
			var vec []float32
			model := ""
			if i < 5 {
				vec, model = faceVector(i+1), "fr_feature"
			}
			if f.Box != boxes[i] || f.Confidence != 0.75+float32(i+1)/32 || !slices.Equal(f.Embedding, vec) || f.ModelName != model {
				t.Errorf("face %d (%s): box %v confidence %v model %q %d-d vector", i+1, encodings[i], f.Box, f.Confidence, f.ModelName, len(f.Embedding))
			}
		}
		for i, p := range d.Persons {
			var vec []float32
			if i < 2 {
				vec = bodyVector(i + 1)
			}
			if !slices.Equal(p.Embedding, vec) {
				t.Errorf("person %d: %d-d body vector, want %d-d", i+1, len(p.Embedding), len(vec))
			}
		}
	})
	t.Run("camera image", func(t *testing.T) {
		ci, err := ParseCameraImage(fixtureCamera, testenv.SceneScapeFixture(t, "image-camera.json"), lim)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(ci.JPEG))
		if err != nil || cfg.Width != 32 || cfg.Height != 24 {
			t.Fatalf("image %dx%d: %v", cfg.Width, cfg.Height, err)
		}
		if ci.CameraID != fixtureCamera || !ci.Timestamp.Equal(at(t, "2026-03-09T08:15:30.300Z")) {
			t.Fatalf("camera %q at %v", ci.CameraID, ci.Timestamp)
		}
	})
	t.Run("region entered", func(t *testing.T) {
		ev, err := ParseRegionEvent(fixtureScene, fixtureRegion, testenv.SceneScapeFixture(t, "region-entered.json"), lim)
		if err != nil {
			t.Fatal(err)
		}
		if ev.SceneName != "lobby" || ev.RegionName != "checkout-queue" || !ev.Timestamp.Equal(at(t, "2026-03-09T08:15:31Z")) {
			t.Fatalf("region event %q/%q at %v", ev.SceneName, ev.RegionName, ev.Timestamp)
		}
		if len(ev.Entered) != 2 || len(ev.Exited) != 0 {
			t.Fatalf("entered %d exited %d, want 2 and 0", len(ev.Entered), len(ev.Exited))
		}
		a, b := ev.Entered[0], ev.Entered[1]
		if a.ID != "499e833a-f4e0-44a9-9085-93603211f6df" || !slices.Equal(a.Cameras, []string{fixtureCamera}) ||
			!maps.Equal(a.CameraBounds, map[string]streams.Box{fixtureCamera: {452, 96, 610, 467}}) || a.Dwell != 0 {
			t.Errorf("first object %+v", a)
		}
		if b.ID != "56ade876-dc22-4d98-bfec-3aa839ea1876" || !slices.Equal(b.Cameras, []string{fixtureCamera, "aisle-cam"}) ||
			!maps.Equal(b.CameraBounds, map[string]streams.Box{fixtureCamera: {650, 130, 790, 480}, "aisle-cam": {88, 40, 208, 350}}) {
			t.Errorf("second object %+v", b)
		}
	})
	t.Run("region exited with dwell", func(t *testing.T) {
		ev, err := ParseRegionEvent(fixtureScene, fixtureRegion, testenv.SceneScapeFixture(t, "region-exited.json"), lim)
		if err != nil {
			t.Fatal(err)
		}
		if !ev.Timestamp.Equal(at(t, "2026-03-09T08:16:13.750Z")) || len(ev.Entered) != 0 || len(ev.Exited) != 1 {
			t.Fatalf("region event at %v: entered %d exited %d, want 0 and 1", ev.Timestamp, len(ev.Entered), len(ev.Exited))
		}
		if x := ev.Exited[0]; x.ID != "499e833a-f4e0-44a9-9085-93603211f6df" || x.Dwell != 42.75 || x.CameraBounds[fixtureCamera] != (streams.Box{452, 96, 610, 467}) {
			t.Fatalf("exited %+v", x)
		}
	})
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

func TestCheckClock(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	skew := 5 * time.Minute
	for _, tc := range []struct {
		ts   time.Time
		want string // reason, or "" for accepted
	}{
		{now, ""},
		{now.Add(skew), ""},
		{now.Add(-skew), ""},
		{now.Add(skew + time.Millisecond), "clock_skew"},
		{now.Add(-skew - time.Millisecond), "clock_skew"},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), "clock_skew"},
		{time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), "clock_skew"},
	} {
		err := CheckClock(tc.ts, now, skew)
		if got := reason(err); got != tc.want && !(tc.want == "" && err == nil) {
			t.Errorf("%s: %v, want %q", tc.ts, err, tc.want)
		}
	}
	err := CheckClock(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), now, skew)
	if err == nil || !strings.Contains(err.Error(), "timestamp 2200-01-01T00:00:00Z is") || !strings.Contains(err.Error(), "limit ±5m0s") {
		t.Fatalf("message %v", err)
	}
}
