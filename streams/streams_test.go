package streams

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/cluster"
	"poi/internal/embedded"
)

func TestTokenEscapesSubjectMetacharacters(t *testing.T) {
	for _, id := range []string{"Camera_01", "cam.1", "a*b", "x>y", "front door", "100%", "", "ümlaut", "cam:1-b"} {
		tok := Token(id)
		for _, bad := range []byte{'.', '*', '>', ' ', '\t'} {
			for i := 0; i < len(tok); i++ {
				if tok[i] == bad {
					t.Fatalf("Token(%q) = %q still holds %q", id, tok, bad)
				}
			}
		}
		back, err := Untoken(tok)
		if err != nil || back != id {
			t.Fatalf("Untoken(Token(%q)) = %q, %v", id, back, err)
		}
	}
	if got := Subject(IngestFrame, "cam.1"); got != "poi.ingest.frame.cam%2E1" {
		t.Fatalf("Subject = %q", got)
	}
	if _, err := Untoken("bad%Z1"); err == nil {
		t.Fatal("bad escape accepted")
	}
	if _, err := Untoken("trunc%4"); err == nil {
		t.Fatal("truncated escape accepted")
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"Camera_01", "a.b", "%41", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		back, err := Untoken(Token(s))
		if err != nil || back != s {
			t.Fatalf("round trip of %q: %q, %v", s, back, err)
		}
		_, _ = Untoken(s) // must not panic on arbitrary input
	})
}

func TestDeclareIsIdempotentAcrossRestartsAndUpdatesChanges(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	connect := func() (*embedded.NATS, *nats.Conn, jetstream.JetStream) {
		srv, err := embedded.StartNATS("127.0.0.1", -1, dir, log)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return srv, nc, js
	}
	created := map[string]time.Time{}

	srv, nc, js := connect()
	if err := Declare(ctx, js, DefaultLimits(), 5, log); err != nil {
		t.Fatal(err)
	}
	for _, sc := range Definitions(DefaultLimits()) {
		s, err := js.Stream(ctx, sc.Name)
		if err != nil {
			t.Fatalf("stream %s missing: %v", sc.Name, err)
		}
		created[sc.Name] = s.CachedInfo().Created
	}
	// A message stored before the restart must survive it: the stream is
	// reused, not recreated.
	if _, err := js.Publish(ctx, Subject(IngestRegion, "scene", "zone"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	srv, nc, js = connect()
	defer func() { nc.Close(); _ = srv.Shutdown(context.Background()) }()
	if err := Declare(ctx, js, DefaultLimits(), 5, log); err != nil {
		t.Fatal(err)
	}
	for name, at := range created {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !s.CachedInfo().Created.Equal(at) {
			t.Fatalf("stream %s was recreated: %v then %v", name, at, s.CachedInfo().Created)
		}
	}
	ing, _ := js.Stream(ctx, Ingest)
	if n := ing.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("ingest holds %d messages after restart, want 1", n)
	}
	for _, cd := range Consumers(DefaultLimits(), 5) {
		if _, err := js.Consumer(ctx, cd.Stream, cd.Config.Durable); err != nil {
			t.Fatalf("consumer %s/%s missing: %v", cd.Stream, cd.Config.Durable, err)
		}
	}

	// A changed definition is applied, not ignored.
	l := DefaultLimits()
	l.IngestMaxAge = 30 * time.Minute
	if err := Declare(ctx, js, l, 7, log); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, Ingest)
	if got := s.CachedInfo().Config.MaxAge; got != 30*time.Minute {
		t.Fatalf("ingest max age = %s after update, want 30m", got)
	}
	c, _ := js.Consumer(ctx, Ingest, IndexConsumer(3))
	if got := c.CachedInfo().Config.MaxDeliver; got != 7 {
		t.Fatalf("index max deliver = %d after update, want 7", got)
	}
}

func TestEnvelopesRoundTripWithRawBodies(t *testing.T) {
	jpeg := []byte{0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3}
	ts := time.Date(2026, 11, 27, 10, 0, 0, 5, time.UTC)
	m, err := NewMsg("poi.ingest.frame.c", &Frame{Header: Current(), CameraID: "c", Timestamp: ts, JPEG: jpeg})
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != string(jpeg) || m.Header.Get(MetaHeader) == "" {
		t.Fatalf("frame body %q, meta %q: the JPEG must be the raw body", m.Data, m.Header.Get(MetaHeader))
	}
	var f Frame
	if err := DecodeMsg(m.Header, m.Data, &f); err != nil || f.CameraID != "c" || !f.Timestamp.Equal(ts) || string(f.JPEG) != string(jpeg) {
		t.Fatalf("frame round trip: %+v %v", f, err)
	}
	if err := DecodeMsg(nats.Header{}, m.Data, &f); err == nil {
		t.Fatal("a frame without its metadata header was accepted")
	}
	s, _ := NewMsg("poi.sample.c", &Sample{Header: Current(), ID: 7, Vector: []float32{1, 2}})
	var back Sample
	if err := DecodeMsg(s.Header, s.Data, &back); err != nil || back.ID != 7 || len(back.Vector) != 2 {
		t.Fatalf("sample round trip: %+v %v", back, err)
	}
	if err := DecodeMsg(nil, []byte(`{"v":2,"id":7}`), &back); err == nil {
		t.Fatal("an unknown envelope version was accepted")
	}
}

// The server's subject transform puts each camera in the partition that
// Partition computes, region events stay as published, and SplitIngest reads
// the stored subjects back.
func TestIngestPartitionsMatchTheServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := embedded.StartNATS("127.0.0.1", -1, t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	l := DefaultLimits()
	if err := Declare(ctx, js, l, 5, log); err != nil {
		t.Fatal(err)
	}
	cams := []string{"cam-1", "cam-2", "entrance.north", "a b*>", "", "bench-07", "x%y"}
	seen := map[int]bool{}
	for _, cam := range cams {
		ack, err := js.Publish(ctx, Subject(IngestFrame, cam), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		s, _ := js.Stream(ctx, Ingest)
		raw, err := s.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		kind, p, back, err := SplitIngest(raw.Subject)
		if err != nil {
			t.Fatal(err)
		}
		if kind != IngestFrame || back != cam || p != Partition(cam, l.Partitions) {
			t.Fatalf("camera %q stored as %s: kind %s partition %d camera %q, want partition %d", cam, raw.Subject, kind, p, back, Partition(cam, l.Partitions))
		}
		seen[p] = true
	}
	if len(seen) < 3 {
		t.Fatalf("%d cameras fell into only %d partitions", len(cams), len(seen))
	}
	ack, err := js.Publish(ctx, Subject(IngestRegion, "scene", "zone"), []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, Ingest)
	raw, _ := s.GetMsg(ctx, ack.Sequence)
	if raw.Subject != Subject(IngestRegion, "scene", "zone") {
		t.Fatalf("region event stored as %s", raw.Subject)
	}
	// A publisher cannot pick a partition: subjects with one more token are
	// not the stream's.
	if _, err := js.Publish(ctx, IngestFrame+".3.cam", []byte("x")); err == nil {
		t.Fatal("a frame published with its own partition token was stored")
	}
}

func TestSightingsOfSeveralFacesRoundTrip(t *testing.T) {
	sg := &Sighting{Header: Current(), CameraID: "c", FrameNumber: 9, Model: "m", Faces: []SightedFace{
		{TrackID: "t1", Box: Box{1, 2, 3, 4}, Embedding: Vector{1, 2, 3}},
		{TrackID: "t2", Box: Box{5, 6, 7, 8}, Embedding: Vector{4, 5}},
	}}
	m, err := NewMsg("poi.sighting.c", sg)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Data) != 5*4 || sg.Faces[0].Embedding == nil || sg.Faces[0].Dim != 0 {
		t.Fatalf("body of %d bytes, envelope after encoding %+v", len(m.Data), sg.Faces)
	}
	var back Sighting
	if err := DecodeMsg(m.Header, m.Data, &back); err != nil {
		t.Fatal(err)
	}
	all := back.All()
	if len(all) != 2 || all[1].TrackID != "t2" || len(all[0].Embedding) != 3 || all[1].Embedding[1] != 5 {
		t.Fatalf("decoded %+v", all)
	}
	// A body that does not match the described vectors is refused.
	if err := DecodeMsg(m.Header, m.Data[:8], &back); err == nil {
		t.Fatal("a truncated body was accepted")
	}
	// One face at the top level is still read.
	one, _ := NewMsg("poi.sighting.c", &Sighting{Header: Current(), TrackID: "t", Model: "m", Embedding: Vector{7}})
	var single Sighting
	if err := DecodeMsg(one.Header, one.Data, &single); err != nil || len(single.All()) != 1 || single.All()[0].Embedding[0] != 7 {
		t.Fatalf("single-face sighting: %+v %v", single.All(), err)
	}
}

// Every stream's MaxAge follows from the configured retentions: alerts keep
// POI appearances for the retention; what can show anyone (samples, dead
// letters, pending input) lasts the unmatched retention at most.
func TestMaxAgeDerivedFromRetentions(t *testing.T) {
	maxAge := func(l Limits) map[string]time.Duration {
		out := map[string]time.Duration{}
		for _, d := range Definitions(l) {
			out[d.Name] = d.MaxAge
		}
		return out
	}
	for _, tc := range []struct {
		retention, unmatched time.Duration
		want                 map[string]time.Duration
	}{
		{168 * time.Hour, 168 * time.Hour, map[string]time.Duration{
			Alerts: 168 * time.Hour, DeadLetter: 168 * time.Hour, Samples: 168 * time.Hour, Ingest: time.Hour, Sightings: time.Hour, Audit: 365 * 24 * time.Hour, Control: 24 * time.Hour}},
		{720 * time.Hour, 4 * time.Hour, map[string]time.Duration{
			Alerts: 720 * time.Hour, DeadLetter: 4 * time.Hour, Samples: 4 * time.Hour, Ingest: time.Hour, Sightings: time.Hour}},
		{48 * time.Hour, 30 * time.Minute, map[string]time.Duration{
			Alerts: 48 * time.Hour, DeadLetter: 30 * time.Minute, Samples: 30 * time.Minute, Ingest: 30 * time.Minute, Sightings: 30 * time.Minute}},
	} {
		got := maxAge(DefaultLimits().WithRetention(tc.retention, tc.unmatched))
		for name, want := range tc.want {
			if got[name] != want {
				t.Errorf("retention %s, unmatched %s: %s MaxAge %s, want %s", tc.retention, tc.unmatched, name, got[name], want)
			}
		}
	}
}

// TestConcurrentDeclarationOnAFreshClusterSucceeds: three processes that
// start together on a new three-node cluster all declare every stream and
// consumer; none fails on the others' creations, and every stream has the
// configured replicas. A later change of replicas is applied.
func TestConcurrentDeclarationOnAFreshClusterSucceeds(t *testing.T) {
	c := cluster.StartNATS(t, 3)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := DefaultLimits()
	l.Replicas = 3
	errs := make(chan error, c.Len())
	for i := range c.Len() {
		nc, err := nats.Connect(c.NodeURL(i))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		go func() { errs <- Declare(ctx, js, l, 5, log) }()
	}
	for range c.Len() {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent declare: %v", err)
		}
	}
	nc, err := nats.Connect(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for _, sc := range Definitions(l) {
		s, err := js.Stream(ctx, sc.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", sc.Name, err)
		}
		if info := s.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("stream %s: replicas %d, cluster %+v; want 3 (a leader and 2 peers)", sc.Name, info.Config.Replicas, info.Cluster)
		}
	}
	for _, cd := range Consumers(l, 5) {
		if _, err := js.Consumer(ctx, cd.Stream, cd.Config.Durable); err != nil {
			t.Fatalf("consumer %s/%s: %v", cd.Stream, cd.Config.Durable, err)
		}
	}

	// Fewer replicas is a definition change like any other: applied and
	// logged as an update.
	var buf syncBuffer
	l.Replicas = 1
	if err := Declare(ctx, js, l, 5, slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, Alerts)
	if got := s.CachedInfo().Config.Replicas; got != 1 {
		t.Fatalf("alerts replicas %d after the change, want 1", got)
	}
	if !strings.Contains(buf.String(), "stream replicas changed") || !strings.Contains(buf.String(), "action=updated") {
		t.Fatalf("replica change not logged:\n%s", buf.String())
	}
}

// syncBuffer is a bytes.Buffer a logger may write from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
