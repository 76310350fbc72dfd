package embed

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/face"
	"poi/internal/imaging"
	"poi/internal/metrics"
	"poi/internal/testenv"
	"poi/streams"
)

func TestClientReportsNoWorkerAndTimeout(t *testing.T) {
	nc, _ := testenv.NATS(t)
	cl := NewClient(nc, streams.EmbedService, 300*time.Millisecond, 0, nil)
	if _, err := cl.Do(context.Background(), []byte("x"), Params{Mode: ModeLargest}); !errors.Is(err, ErrNoWorker) {
		t.Fatalf("no subscriber: %v, want ErrNoWorker", err)
	}
	sub, err := nc.QueueSubscribe(streams.EmbedService, streams.EmbedQueue, func(*nats.Msg) {}) // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// The call's context has no deadline, so only the client's own timeout
	// can end it with ErrTimeout. The bound below only tells a timeout that
	// fired from one that never does; it is not a speed test.
	res := make(chan error, 1)
	go func() {
		_, err := cl.Do(context.Background(), []byte("x"), Params{Mode: ModeLargest})
		res <- err
	}()
	select {
	case err := <-res:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("silent worker: %v, want ErrTimeout", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("silent worker: a call with a 300 ms timeout was still waiting after a minute")
	}
}

// TestClientResendsAnUnansweredRequest: a request lost on the way (here a
// worker that drops the first copy) is sent again after the resend
// interval, carrying the same deadline, and the answer to the second copy
// is the call's; the resend is counted.
func TestClientResendsAnUnansweredRequest(t *testing.T) {
	nc, _ := testenv.NATS(t)
	var mu sync.Mutex
	var deadlines []string
	sub, err := nc.QueueSubscribe(streams.EmbedService, streams.EmbedQueue, func(m *nats.Msg) {
		mu.Lock()
		deadlines = append(deadlines, m.Header.Get(deadlineHeader))
		first := len(deadlines) == 1
		mu.Unlock()
		if first {
			return // lost
		}
		b, _ := json.Marshal(Reply{Model: "m", Dim: 512})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	resent := prometheus.NewCounter(prometheus.CounterOpts{Name: "resent"})
	cl := NewClient(nc, streams.EmbedService, time.Minute, 200*time.Millisecond, resent)
	rep, err := cl.Do(context.Background(), []byte("x"), Params{Mode: ModeInfo})
	if err != nil || rep.Model != "m" {
		t.Fatalf("Do: %+v, %v; want the second copy's answer", rep, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deadlines) != 2 || deadlines[0] == "" || deadlines[0] != deadlines[1] {
		t.Errorf("copies received with deadlines %q, want two with the same one", deadlines)
	}
	if n := testutil.ToFloat64(resent); n != 1 {
		t.Errorf("resends counted %v, want 1", n)
	}
}

func TestServiceEmbedsAndReportsTypedErrors(t *testing.T) {
	nc, _ := testenv.NATS(t)
	cfg := face.DefaultConfig()
	cfg.ModelDir, cfg.LibraryPath = testenv.ModelDir(t), testenv.ORTLibrary(t)
	eng, err := face.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	m := metrics.New()
	svc := NewService(eng, imaging.DefaultLimits(), 2, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := svc.Subscribe(nc, streams.EmbedService, streams.EmbedQueue); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	cl := NewClient(nc, streams.EmbedService, 30*time.Second, 0, nil)

	info, err := cl.Info(ctx)
	if err != nil || info.Model != eng.Model().Name || info.Dim != 512 {
		t.Fatalf("info %+v %v", info, err)
	}
	group, err := cl.Do(ctx, testenv.ReadPhoto(t, "faces.jpg"), Params{Mode: ModeAll, Thumbs: true})
	if err != nil || len(group.Faces) != 3 {
		t.Fatalf("group photo: %d faces, %v", len(group.Faces), err)
	}
	for _, f := range group.Faces {
		if len(f.Embedding) != 512 || len(f.Thumb) == 0 {
			t.Fatalf("face %+v", f.Box)
		}
	}
	// The same faces given back by box and landmarks embed to the same vectors.
	p := Params{Mode: ModeFaces}
	for _, f := range group.Faces {
		p.Faces = append(p.Faces, FaceIn{Box: f.Box, Landmarks: f.Landmarks})
	}
	again, err := cl.Do(ctx, testenv.ReadPhoto(t, "faces.jpg"), p)
	if err != nil || len(again.Faces) != 3 {
		t.Fatalf("faces mode: %v", err)
	}
	for i := range again.Faces {
		if sim := face.Similarity(again.Faces[i].Embedding, group.Faces[i].Embedding); sim < 0.999 {
			t.Fatalf("face %d: similarity %.4f between the two paths", i, sim)
		}
	}
	for _, tc := range []struct {
		img  []byte
		p    Params
		code string
	}{
		{[]byte("plain text"), Params{Mode: ModeLargest}, CodeUnsupported},
		{nil, Params{Mode: ModeLargest}, CodeBadImage},
		{testenv.ReadPhoto(t, "cage.jpg")[:2000], Params{Mode: ModeLargest}, CodeBadImage},
		{testenv.ReadPhoto(t, "cage.jpg"), Params{Mode: "paint"}, CodeBadRequest},
		{testenv.ReadPhoto(t, "cage.jpg"), Params{Mode: ModeFaces, Faces: []FaceIn{{Box: streams.Box{90000, 90000, 90100, 90100}}}}, CodeBadImage},
	} {
		_, err := cl.Do(ctx, tc.img, tc.p)
		var ee *Error
		if !errors.As(err, &ee) || ee.Code != tc.code {
			t.Errorf("%s: %v, want code %s", tc.p.Mode, err, tc.code)
		}
	}

	// A copy that reaches the service after its requester's deadline is
	// dropped unanswered, and counted.
	late := nats.NewMsg(streams.EmbedService)
	late.Header.Set(paramsHeader, `{"mode":"largest"}`)
	late.Header.Set(deadlineHeader, strconv.FormatInt(time.Now().Add(-time.Second).UnixNano(), 10))
	late.Data = testenv.ReadPhoto(t, "cage.jpg")
	if _, err := nc.RequestMsg(late, 2*time.Second); !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("a request past its deadline: %v, want no answer", err)
	}
	if n := testutil.ToFloat64(m.Rejected.WithLabelValues("embed", "abandoned")); n != 1 {
		t.Errorf("abandoned requests counted %v, want 1", n)
	}
}
