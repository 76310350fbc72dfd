// Package index is the tracking stage: per camera, observations become face
// tracks (IoU with the previous boxes, then embedding continuity), entry /
// last-seen / exit frames, samples of the all-detections index and
// sightings for the alert stage.
//
// The tracker's state lives in Redis and every step is committed in one
// MULTI/EXEC together with the stream sequence it applied, so a step is
// applied exactly once even when a worker dies at any point: a redelivered
// observation either finds its sequence applied (and is only acknowledged)
// or redoes the step from the same state with the same result. Messages it
// derives carry ids computed from that state, so JetStream stores them once.
//
// The embedder is asked only when a track needs a vector: a new face, a
// refresh every sample interval, or a clearly larger (better) view.
package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/metrics"
	"poi/internal/store"
	"poi/streams"
	"poi/workers/embed"
	"poi/workers/pool"
)

// Config tunes tracking and sampling.
type Config struct {
	Model          string
	Silence        time.Duration // a track exits after this long unseen
	SampleInterval time.Duration // spacing of samples and embedding refreshes
	MaxSamples     int           // samples per track in the all-detections index
	Retention      time.Duration
	// MinIoU links a face to the track whose last box overlaps it most.
	MinIoU float64
	// Continuity links a face that moved too far for IoU to a track whose
	// last vector is at least this similar (cosine).
	Continuity float64
	// BetterView: a face this many times larger than when its track was
	// last embedded is embedded again.
	BetterView float64
	// LastFrameEvery bounds how often the last-seen frame is rewritten.
	LastFrameEvery time.Duration
}

// Embedder embeds faces of a frame (the embedding service client).
type Embedder interface {
	Do(ctx context.Context, img []byte, p embed.Params) (embed.Reply, error)
}

// Stage is the tracker.
type Stage struct {
	cfg   Config
	js    jetstream.JetStream
	store *store.Store
	emb   Embedder
	m     *metrics.Metrics
	log   *slog.Logger

	// idle remembers, per camera, when this worker last saw an observation
	// and the camera-time of it, so that open tracks of a camera that went
	// quiet can be closed by a tick.
	mu   sync.Mutex
	idle map[string]idleState
}

type idleState struct {
	wall time.Time
	cam  time.Time
	open bool
}

// New returns the tracker.
func New(cfg Config, js jetstream.JetStream, st *store.Store, emb Embedder, m *metrics.Metrics, log *slog.Logger) *Stage {
	return &Stage{cfg: cfg, js: js, store: st, emb: emb, m: m, log: log.With("stage", "index"), idle: map[string]idleState{}}
}

// state is the tracker's durable per-camera state.
type state struct {
	Seq    uint64   `json:"seq"`
	Next   int      `json:"next"`
	Tracks []*track `json:"tracks"`
}

type track struct {
	ID       string      `json:"id"`
	Entry    time.Time   `json:"entry"`
	Last     time.Time   `json:"last"`
	Box      streams.Box `json:"box"`
	Emb      []float32   `json:"emb,omitempty"`
	EmbAt    time.Time   `json:"emb_at"`
	EmbArea  int         `json:"emb_area"`
	Samples  int         `json:"samples"`
	Frames   int         `json:"frames"`
	SampleAt time.Time   `json:"sample_at"`
	FrameAt  time.Time   `json:"frame_at"`
}

// Handle is the pool handler of the index consumer.
func (s *Stage) Handle(ctx context.Context, msg jetstream.Msg) error {
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("index: metadata: %w", err)
	}
	var obs streams.Observation
	if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &obs); err != nil {
		return pool.Permanent("bad_envelope", err)
	}
	open, err := s.step(ctx, obs, meta.Sequence.Stream)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.idle[obs.CameraID] = idleState{wall: time.Now(), cam: obs.Timestamp, open: open}
	s.mu.Unlock()
	return nil
}

// step applies one observation; it reports whether tracks remain open.
func (s *Stage) step(ctx context.Context, obs streams.Observation, seq uint64) (bool, error) {
	raw, err := s.store.TrackerState(ctx, obs.CameraID)
	if err != nil {
		return false, err
	}
	st := &state{Next: 1}
	if raw != nil {
		if err := json.Unmarshal(raw, st); err != nil {
			return false, fmt.Errorf("index: tracker state of %s: %w", obs.CameraID, err)
		}
	}
	if seq <= st.Seq {
		return len(st.Tracks) > 0, nil // applied before a crash or redelivery
	}
	st.Seq = seq
	now := obs.Timestamp

	updates := map[string]*store.TrackUpdate{}
	upd := func(t *track) *store.TrackUpdate {
		u, ok := updates[t.ID]
		if !ok {
			u = &store.TrackUpdate{}
			updates[t.ID] = u
		}
		u.Track = store.Track{ID: t.ID, CameraID: obs.CameraID, Entry: t.Entry, LastSeen: t.Last, Box: t.Box, Samples: t.Samples, Frames: t.Frames}
		return u
	}

	// Exits: tracks silent for longer than the silence window.
	kept := st.Tracks[:0]
	for _, t := range st.Tracks {
		if now.Sub(t.Last) > s.cfg.Silence {
			u := upd(t)
			u.Track.Exit, u.Exited = t.Last, true
			s.m.TracksClose.Inc()
			continue
		}
		kept = append(kept, t)
	}
	st.Tracks = kept

	// Link faces to open tracks by IoU, best pairs first.
	faces := obs.Faces
	owner := make([]*track, len(faces))
	type pair struct {
		f   int
		t   *track
		iou float64
	}
	var pairs []pair
	for i, f := range faces {
		for _, t := range st.Tracks {
			if v := f.Box.IoU(t.Box); v >= s.cfg.MinIoU {
				pairs = append(pairs, pair{i, t, v})
			}
		}
	}
	sort.SliceStable(pairs, func(a, b int) bool { return pairs[a].iou > pairs[b].iou })
	taken := map[*track]bool{}
	for _, p := range pairs {
		if owner[p.f] == nil && !taken[p.t] {
			owner[p.f], taken[p.t] = p.t, true
		}
	}

	// Embed the faces that need it, in one request for the frame.
	var need []int
	for i, f := range faces {
		if f.Embedding != nil {
			continue
		}
		t := owner[i]
		if t == nil || now.Sub(t.EmbAt) >= s.cfg.SampleInterval || float64(f.Box.Area()) >= s.cfg.BetterView*float64(max(1, t.EmbArea)) {
			need = append(need, i)
		}
	}
	thumbs := map[int][]byte{}
	if len(need) > 0 && len(obs.FrameJPEG) > 0 {
		p := embed.Params{Mode: embed.ModeFaces, Thumbs: true}
		for _, i := range need {
			p.Faces = append(p.Faces, embed.FaceIn{Box: faces[i].Box, Landmarks: faces[i].Landmarks})
		}
		rep, err := s.emb.Do(ctx, obs.FrameJPEG, p)
		if err != nil {
			var se *embed.Error
			if errors.As(err, &se) && se.Code != embed.CodeInternal {
				return false, pool.Permanent("embed_"+se.Code, err)
			}
			return false, fmt.Errorf("index: embed: %w", err)
		}
		if rep.Model != s.cfg.Model || len(rep.Faces) != len(need) {
			return false, pool.Permanent("model_mismatch", fmt.Errorf("index: embedder answered %d faces of model %q, want %d of %q", len(rep.Faces), rep.Model, len(need), s.cfg.Model))
		}
		for j, i := range need {
			faces[i].Embedding, faces[i].Model = rep.Faces[j].Embedding, rep.Model
			thumbs[i] = rep.Faces[j].Thumb
		}
	}

	// Faces IoU could not place: the most similar unclaimed track, if the
	// vectors say it is the same person; otherwise a new track.
	for i, f := range faces {
		if owner[i] != nil {
			continue
		}
		if f.Embedding != nil {
			best, bestSim := (*track)(nil), s.cfg.Continuity
			for _, t := range st.Tracks {
				if taken[t] || t.Emb == nil {
					continue
				}
				if sim := cosine(f.Embedding, t.Emb); sim >= bestSim {
					best, bestSim = t, sim
				}
			}
			if best != nil {
				owner[i], taken[best] = best, true
				continue
			}
		}
		t := &track{ID: fmt.Sprintf("cam:%s:%d", obs.CameraID, st.Next), Entry: now}
		st.Next++
		st.Tracks = append(st.Tracks, t)
		owner[i], taken[t] = t, true
		s.m.TracksOpen.Inc()
	}

	var samples []store.Sample
	var out []*nats.Msg
	for i, f := range faces {
		t := owner[i]
		isNew := t.Last.IsZero()
		t.Last, t.Box = now, f.Box
		t.Frames++
		u := upd(t)
		if isNew {
			u.EntryFrame = obs.FrameJPEG
		}
		if isNew || now.Sub(t.FrameAt) >= s.cfg.LastFrameEvery {
			u.LastFrame, t.FrameAt = obs.FrameJPEG, now
		}
		if th := thumbs[i]; th != nil && (isNew || f.Box.Area() > t.EmbArea) {
			u.Thumb = th
		}
		if f.Embedding == nil {
			continue
		}
		t.Emb, t.EmbAt, t.EmbArea = f.Embedding, now, f.Box.Area()
		if t.Samples < s.cfg.MaxSamples && (t.Samples == 0 || now.Sub(t.SampleAt) >= s.cfg.SampleInterval) {
			id := sampleID(t.ID, t.Samples)
			t.Samples++
			t.SampleAt = now
			u.Track.Samples = t.Samples
			samples = append(samples, store.Sample{ID: id, TrackID: t.ID, CameraID: obs.CameraID, Time: now, Box: f.Box})
			m, err := envelope(streams.Subject(streams.SamplesSubj, obs.CameraID), "sample-"+strconv.FormatInt(id, 10), streams.Sample{
				Header: streams.Current(), ID: id, TrackID: t.ID, CameraID: obs.CameraID, Timestamp: now, Box: f.Box, Model: s.cfg.Model, Vector: f.Embedding,
			})
			if err != nil {
				return false, err
			}
			out = append(out, m)
		}
		m, err := envelope(streams.Subject(streams.SightingsSubj, obs.CameraID), fmt.Sprintf("sight-%s-%d", t.ID, now.UnixNano()), streams.Sighting{
			Header: streams.Current(), TrackID: t.ID, FrameNumber: obs.FrameNumber, CameraID: obs.CameraID, Timestamp: now,
			Box: f.Box, Confidence: f.Score, Model: s.cfg.Model, Embedding: f.Embedding,
		})
		if err != nil {
			return false, err
		}
		out = append(out, m)
	}

	// Publish first, commit second: a crash in between redoes the step,
	// and the repeated messages are dropped by their ids.
	for _, m := range out {
		if _, err := s.js.PublishMsg(ctx, m); err != nil {
			return false, fmt.Errorf("index: publish %s: %w", m.Subject, err)
		}
	}
	body, err := json.Marshal(st)
	if err != nil {
		return false, fmt.Errorf("index: encode state: %w", err)
	}
	list := make([]store.TrackUpdate, 0, len(updates))
	for _, u := range updates {
		list = append(list, *u)
	}
	sort.Slice(list, func(a, b int) bool { return list[a].Track.ID < list[b].Track.ID })
	if err := s.store.CommitTracking(ctx, obs.CameraID, body, list, samples, s.cfg.Retention); err != nil {
		return false, err
	}
	return len(st.Tracks) > 0, nil
}

// envelope encodes v for subject with a dedup id.
func envelope(subject, id string, v any) (*nats.Msg, error) {
	m, err := streams.NewMsg(subject, v)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m, nil
}

// sampleID derives the FAISS id of a track's n-th sample, so that a redone
// step produces the same id (63 bits: FAISS ids are signed).
func sampleID(track string, n int) int64 {
	h := fnv.New64a()
	h.Write([]byte(track))
	h.Write([]byte{'#', byte(n)})
	return int64(h.Sum64() & math.MaxInt64)
}

func cosine(a, b []float32) float64 {
	if len(a) != len(b) {
		return -1
	}
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return -1
	}
	return dot / math.Sqrt(na*nb)
}

// RunTicker closes the tracks of cameras that went quiet: after Silence of
// wall time without observations, and with none of the camera's frames
// waiting in POI_INGEST or POI_OBSERVATIONS, it queues a tick observation
// whose camera time is just past the silence window of the last real one.
// Checking upstream matters: a tick that overtook a backlog of the camera's
// frames would close a track that the backlog continues.
func (s *Stage) RunTicker(ctx context.Context) error {
	t := time.NewTicker(max(s.cfg.Silence/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.mu.Lock()
		var due []string
		for cam, st := range s.idle {
			if st.open && time.Since(st.wall) > s.cfg.Silence {
				due = append(due, cam)
			}
		}
		s.mu.Unlock()
		for _, cam := range due {
			if s.pendingUpstream(ctx, cam) {
				// Frames of this camera are still on their way (a backlog
				// behind a slow or restarted stage): it is not idle.
				continue
			}
			s.mu.Lock()
			st := s.idle[cam]
			st.open, st.wall = false, time.Now()
			s.idle[cam] = st
			s.mu.Unlock()
			ts := st.cam.Add(s.cfg.Silence + time.Millisecond)
			m, err := envelope(streams.Subject(streams.ObservationsSubj, cam), fmt.Sprintf("tick-%s-%d", cam, ts.UnixNano()),
				&streams.Observation{Header: streams.Current(), CameraID: cam, Timestamp: ts, Tick: true})
			if err != nil {
				return err
			}
			if _, err := s.js.PublishMsg(ctx, m); err != nil {
				s.log.Warn("tick publish", "camera", cam, "error", err)
			}
		}
	}
}

// OpenTrack is a track the tracker holds open on a camera.
type OpenTrack struct {
	ID   string
	Box  streams.Box
	Last time.Time
}

// OpenTracks reads a camera's open tracks from the tracker's state.
func OpenTracks(ctx context.Context, st *store.Store, camera string) ([]OpenTrack, error) {
	raw, err := st.TrackerState(ctx, camera)
	if err != nil || raw == nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("tracker state of %s: %w", camera, err)
	}
	out := make([]OpenTrack, len(s.Tracks))
	for i, t := range s.Tracks {
		out[i] = OpenTrack{ID: t.ID, Box: t.Box, Last: t.Last}
	}
	return out, nil
}

// pendingUpstream reports whether messages of camera wait in the ingest or
// observation streams (or whether that cannot be told).
func (s *Stage) pendingUpstream(ctx context.Context, camera string) bool {
	for _, q := range []struct{ stream, subject string }{
		{streams.Ingest, streams.Subject(streams.IngestFrame, camera)},
		{streams.Ingest, streams.Subject(streams.IngestSceneScape, camera)},
		{streams.Observations, streams.Subject(streams.ObservationsSubj, camera)},
	} {
		st, err := s.js.Stream(ctx, q.stream)
		if err != nil {
			return true
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(q.subject))
		if err != nil {
			return true
		}
		if info.State.Subjects[q.subject] > 0 {
			return true
		}
	}
	return false
}
