package loadgen

import (
	"bytes"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestStampedJPEGsDecodeAndDiffer(t *testing.T) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a, b := StampJPEG(buf.Bytes(), "cam", 1, now), StampJPEG(buf.Bytes(), "cam", 2, now)
	if bytes.Equal(a, b) {
		t.Fatal("two frames are identical: the bridge would drop the second as a redelivery")
	}
	for _, f := range [][]byte{a, b} {
		if _, err := jpeg.Decode(bytes.NewReader(f)); err != nil {
			t.Fatalf("stamped frame does not decode: %v", err)
		}
	}
}

func TestSceneVisitsAreNewTracksInTurn(t *testing.T) {
	v := func(i int) []float32 { x := make([]float32, 4); x[i] = 1; return x }
	s := &Scene{Camera: "c", Visit: time.Second,
		Strangers: []Person{{Box: [4]int{0, 0, 10, 10}, Vector: v(0)}},
		Visitors:  []Person{{Box: [4]int{100, 100, 10, 10}, Vector: v(1), POI: "a"}, {Box: [4]int{100, 100, 10, 10}, Vector: v(2), POI: "b"}}}
	r := rand.New(rand.NewPCG(1, 1))
	t0 := time.Now()
	var starts []string
	var boxes [][4]int
	for i := range 30 { // 3 s, ten messages a second
		ps, start := s.Next(r, t0.Add(time.Duration(i)*100*time.Millisecond))
		if len(ps) != 2 {
			t.Fatalf("%d persons, want a stranger and a visitor", len(ps))
		}
		if start != "" {
			starts = append(starts, start)
			boxes = append(boxes, ps[1].Box)
		}
	}
	if strings.Join(starts, ",") != "a,b,a" {
		t.Fatalf("visits %v, want a,b,a", starts)
	}
	if boxes[0] == boxes[2] {
		t.Fatal("a returning visitor stands where it stood: IoU would continue its old track")
	}
	msg, err := SceneScapeMessage("c", t0, 10, []Person{{Box: [4]int{0, 0, 100, 200}, Vector: v(1)}}, "m")
	if err != nil || !bytes.Contains(msg, []byte(`"face"`)) || !bytes.Contains(msg, []byte(EncodeVector(v(1)))) {
		t.Fatalf("message %s: %v", msg, err)
	}
}

func TestQuantilesAndSustained(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	q := Quantiles(d)
	if q.N != 100 || q.P50 != 50*time.Millisecond || q.P95 != 95*time.Millisecond || q.P99 != 99*time.Millisecond {
		t.Fatalf("quantiles %+v", q)
	}
	if !Sustained(Step{Offered: 100, Processed: 99, BacklogStart: 10, BacklogEnd: 50}) {
		t.Fatal("a step that kept up was not sustained")
	}
	if Sustained(Step{Offered: 100, Processed: 80}) || Sustained(Step{Offered: 100, Processed: 100, BacklogEnd: 500}) {
		t.Fatal("a step that fell behind was sustained")
	}
	samples, err := ParseMetrics(strings.NewReader("# HELP x\nx_total{stage=\"index\",reason=\"a\"} 3\nprocess_cpu_seconds_total 1.5\n"))
	if err != nil || len(samples) != 2 || samples[0].Labels["stage"] != "index" || samples[1].Value != 1.5 {
		t.Fatalf("metrics %+v %v", samples, err)
	}
}
