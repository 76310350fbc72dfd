// Package index is the tracking stage: per camera, frames and SceneScape
// detections become face tracks (IoU with the previous boxes, then embedding
// continuity), entry / last-seen / exit frames, samples of the
// all-detections index and sightings for the alert stage.
//
// Cameras are partitioned (package partition): this process handles the
// messages of the partitions it owns, each partition in order. Detection,
// the costly stateless step, is asked of the detection service (any worker),
// for all the frames of a batch at once; the embedder only when a track
// needs a vector: a new face, a refresh every sample interval, or a clearly
// larger (better) view.
//
// The tracker's state of a camera lives in memory while this process owns
// the camera's partition and is written through to Redis: every batch of a
// camera is committed in one MULTI/EXEC together with the last stream
// sequence it applied and a version that the commit compares (two owners
// cannot both commit). A redelivered message either finds its sequence
// applied (and is only acknowledged) or is redone from the same state with
// the same result; the messages the tracker derives carry ids computed from
// that state, so JetStream stores them once.
package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
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
	"poi/workers/partition"
	"poi/workers/pool"
)

// Config tunes tracking and sampling.
type Config struct {
	Model          string
	Silence        time.Duration // a track exits after this long unseen
	SampleInterval time.Duration // spacing of samples and embedding refreshes
	MaxSamples     int           // samples per track in the all-detections index
	// Retention is the TTL of what the tracker writes: the unmatched
	// retention (a match with a POI extends a track's keys; store.RecordAppearance).
	Retention time.Duration
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
	// DetectConcurrency bounds the detection requests of a batch in flight.
	DetectConcurrency int
	// Partitions is the partition count (to find a partition's cameras).
	Partitions int
	// IdleTTL: the state of a camera without open tracks that sent nothing
	// for this long is dropped from memory (Redis keeps it, with its TTL),
	// so the map of cameras stays bounded by the recently active ones.
	IdleTTL time.Duration
}

// Embedder asks the face services (the embedding or the detection service
// client).
type Embedder interface {
	Do(ctx context.Context, img []byte, p embed.Params) (embed.Reply, error)
}

// Stage is the tracker.
type Stage struct {
	cfg    Config
	js     jetstream.JetStream
	store  *store.Store
	emb    Embedder
	detect Embedder
	m      *metrics.Metrics
	log    *slog.Logger

	mu sync.Mutex
	// cams holds the state of the cameras of owned partitions.
	cams map[string]*camera
	// parts serialises a partition's batches with its ticks.
	parts map[int]*sync.Mutex
}

// camera is a camera's cached tracker state.
type camera struct {
	partition int
	st        *state // nil: load from Redis
	version   int64
	// wall and open drive the idle tick: when this process last applied a
	// message of the camera, and whether tracks remain open.
	wall time.Time
	open bool
}

// New returns the tracker; detect asks the detection service, emb the
// embedding service.
func New(cfg Config, js jetstream.JetStream, st *store.Store, emb, detect Embedder, m *metrics.Metrics, log *slog.Logger) *Stage {
	cfg.DetectConcurrency = max(1, cfg.DetectConcurrency)
	return &Stage{cfg: cfg, js: js, store: st, emb: emb, detect: detect, m: m, log: log.With("stage", "index"),
		cams: map[string]*camera{}, parts: map[int]*sync.Mutex{}}
}

// Acquired is called when this process starts owning partition p: it
// loads the cameras of p that have open tracks, so that the ticker closes
// them even if those cameras never send again (their owner may have died
// right after their last frame).
func (s *Stage) Acquired(ctx context.Context, p int) {
	s.partLock(p)
	cams, err := s.store.TrackerCameras(ctx)
	if err != nil {
		s.log.Warn("finding the cameras of a new partition", "partition", p, "error", err)
		return
	}
	for _, cam := range cams {
		if streams.Partition(cam, s.cfg.Partitions) != p {
			continue
		}
		c, err := s.camera(ctx, p, cam)
		if err != nil {
			s.log.Warn("loading a camera of a new partition", "camera", cam, "error", err)
			continue
		}
		s.mu.Lock()
		c.open = len(c.st.Tracks) > 0
		s.mu.Unlock()
	}
}

// Cameras is how many cameras' state this process holds in memory.
func (s *Stage) Cameras() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cams)
}

// Released forgets partition p's cameras: the next owner reloads them from
// Redis, and so does this process if the partition comes back.
func (s *Stage) Released(p int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, c := range s.cams {
		if c.partition == p {
			delete(s.cams, id)
		}
	}
}

func (s *Stage) partLock(p int) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.parts[p]
	if l == nil {
		l = &sync.Mutex{}
		s.parts[p] = l
	}
	return l
}

// item is one message of a batch, decoded.
type item struct {
	seq       uint64
	delivered uint64
	obs       streams.Observation
	err       error
	// detect: a frame whose faces the detection service must find; persons:
	// SceneScape persons without face sub-objects, searched for faces on
	// the camera's latest frame.
	detect  bool
	persons []streams.ExternalObject
	// needFrame: faces without vectors of our model, embedded from the
	// camera's latest frame.
	needFrame bool
}

// HandleBatch is the partition handler: msgs are one partition's messages
// in order.
func (s *Stage) HandleBatch(ctx context.Context, p int, msgs []jetstream.Msg) []error {
	lock := s.partLock(p)
	lock.Lock()
	defer lock.Unlock()

	items := make([]item, len(msgs))
	for i, msg := range msgs {
		items[i] = s.decode(msg)
	}
	s.detectAll(ctx, items)

	// Cameras are independent: each runs its steps in order, beside the
	// others.
	byCam := map[string][]int{}
	var order []string
	for i, it := range items {
		if it.obs.Header.V == 0 {
			continue // undecodable: its permanent error is its result
		}
		if _, ok := byCam[it.obs.CameraID]; !ok {
			order = append(order, it.obs.CameraID)
		}
		byCam[it.obs.CameraID] = append(byCam[it.obs.CameraID], i)
	}
	results := make([]error, len(msgs))
	for i, it := range items {
		if it.obs.Header.V == 0 {
			results[i] = it.err
		}
	}
	var wg sync.WaitGroup
	for _, cam := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runCamera(ctx, p, cam, items, byCam[cam], results)
		}()
	}
	wg.Wait()
	return results
}

// decode reads one ingest message into an observation.
func (s *Stage) decode(msg jetstream.Msg) item {
	meta, err := msg.Metadata()
	if err != nil {
		return item{err: pool.Permanent("bad_metadata", fmt.Errorf("index: metadata: %w", err))}
	}
	it := item{seq: meta.Sequence.Stream, delivered: meta.NumDelivered}
	kind, _, _, err := streams.SplitIngest(msg.Subject())
	if err != nil {
		it.err = pool.Permanent("bad_subject", err)
		return it
	}
	switch kind {
	case streams.IngestFrame:
		var f streams.Frame
		if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &f); err != nil {
			it.err = pool.Permanent("bad_envelope", err)
			return it
		}
		it.obs = streams.Observation{Header: streams.Current(), CameraID: f.CameraID, Timestamp: f.Timestamp, FrameJPEG: f.JPEG}
		it.detect = true
	case streams.IngestSceneScape:
		var d streams.Detections
		if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &d); err != nil {
			it.err = pool.Permanent("bad_envelope", err)
			return it
		}
		it.obs = streams.Observation{Header: streams.Current(), CameraID: d.CameraID, Timestamp: d.Timestamp}
		for _, f := range d.Faces {
			o := streams.ObservedFace{Box: f.Box, Score: f.Confidence}
			if f.ModelName == s.cfg.Model && len(f.Embedding) > 0 {
				o.Embedding, o.Model = f.Embedding, f.ModelName
			} else {
				it.needFrame = true
			}
			it.obs.Faces = append(it.obs.Faces, o)
		}
		// Body re-id vectors are never used; persons without faces are
		// searched for faces on the latest frame.
		if len(d.Faces) == 0 && len(d.Persons) > 0 {
			it.persons = d.Persons
		}
	default:
		it.err = pool.Permanent("bad_subject", fmt.Errorf("index: unexpected subject %s", msg.Subject()))
	}
	it.obs.FrameNumber = it.seq
	return it
}

// detectAll asks the detection service for the faces of every frame of the
// batch at once: the requests spread over every detection worker.
func (s *Stage) detectAll(ctx context.Context, items []item) {
	sem := make(chan struct{}, s.cfg.DetectConcurrency)
	var wg sync.WaitGroup
	for i := range items {
		it := &items[i]
		if !it.detect || it.err != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			faces, err := s.detectFaces(ctx, it.obs.FrameJPEG)
			if err != nil {
				it.err = err
				return
			}
			it.obs.Faces = faces
			s.m.FacesSeen.Add(float64(len(faces)))
		}()
	}
	wg.Wait()
}

func (s *Stage) detectFaces(ctx context.Context, jpeg []byte) ([]streams.ObservedFace, error) {
	rep, err := s.detect.Do(ctx, jpeg, embed.Params{Mode: embed.ModeDetect})
	if err != nil {
		return nil, serviceErr("detect", err)
	}
	out := make([]streams.ObservedFace, len(rep.Faces))
	for i, f := range rep.Faces {
		out[i] = streams.ObservedFace{Box: f.Box, Score: f.Score, Landmarks: f.Landmarks}
	}
	return out, nil
}

// serviceErr classifies a face-service failure: a bad image will not get
// better, an unreachable or failing service may.
func serviceErr(what string, err error) error {
	var se *embed.Error
	if errors.As(err, &se) && se.Code != embed.CodeInternal {
		if se.Code == embed.CodeNoFace {
			return nil
		}
		if what == "detect" {
			return pool.Permanent(se.Code, err) // the frame itself is bad
		}
		return pool.Permanent(what+"_"+se.Code, err)
	}
	return fmt.Errorf("index: %s: %w", what, err)
}

// runCamera applies a camera's items in order and commits them together.
// On a transient failure every item of the camera is left for a retry, not
// only those from the failing one on: the items before it were applied to a
// state that is never committed, and acknowledging them would lose them.
// The cached state is dropped, so the retry starts from Redis.
func (s *Stage) runCamera(ctx context.Context, p int, cam string, items []item, idx []int, results []error) {
	fail := func(err error) {
		for k, i := range idx {
			if k == 0 {
				results[i] = err
			} else {
				results[i] = partition.ErrNotTried
			}
		}
		s.mu.Lock()
		delete(s.cams, cam)
		s.mu.Unlock()
	}
	c, err := s.camera(ctx, p, cam)
	if err != nil {
		fail(err)
		return
	}
	// Work on a copy: a failed commit must leave the cached state as it was.
	st := cloneState(c.st)
	total := stepOut{updates: map[string]*store.TrackUpdate{}}
	var latest []byte
	latestRead := false
	frame := func() ([]byte, error) {
		if !latestRead {
			b, err := s.store.CameraLatest(ctx, cam)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			latest, latestRead = b, true
		}
		return latest, nil
	}
	for _, i := range idx {
		it := &items[i]
		if it.seq <= st.Seq {
			if it.delivered <= 1 {
				// Never delivered before, yet older than what was applied:
				// the camera's order was broken upstream.
				s.log.Warn("message older than the camera's applied state", "camera", cam, "seq", it.seq, "applied", st.Seq)
			}
			s.log.Debug("already applied", "camera", cam, "seq", it.seq, "applied", st.Seq, "delivered", it.delivered)
			continue // applied before a crash or a redelivery
		}
		err := it.err
		var out stepOut
		if err == nil {
			out, err = s.step(ctx, st, it, frame)
		}
		if err != nil {
			if _, ok := pool.PermanentReason(err); ok {
				// A bad message is dead-lettered; the camera goes on past it.
				results[i] = err
				st.Seq = it.seq
				continue
			}
			fail(err)
			return
		}
		total.merge(out)
	}
	if len(total.updates) == 0 && len(total.samples) == 0 && len(total.sightings) == 0 {
		// Nothing but the sequence moved (frames without faces): keep it in
		// memory; a redelivery after a crash redoes steps that write nothing.
		s.mu.Lock()
		c.st.Seq, c.wall = st.Seq, time.Now()
		s.mu.Unlock()
		return
	}
	if err := s.commit(ctx, cam, c, st, total); err != nil {
		fail(err)
		return
	}
	s.m.TracksOpen.Add(float64(total.opened))
	s.m.TracksClose.Add(float64(total.closed))
}

// camera returns the cached state of cam, loading it from Redis when this
// process does not hold it.
func (s *Stage) camera(ctx context.Context, p int, cam string) (*camera, error) {
	s.mu.Lock()
	c := s.cams[cam]
	s.mu.Unlock()
	if c != nil && c.st != nil {
		return c, nil
	}
	raw, version, err := s.store.TrackerState(ctx, cam)
	if err != nil {
		return nil, err
	}
	st := &state{Next: 1}
	if raw != nil {
		if err := json.Unmarshal(raw, st); err != nil {
			return nil, fmt.Errorf("index: tracker state of %s: %w", cam, err)
		}
	}
	c = &camera{partition: p, st: st, version: version, wall: time.Now()}
	s.mu.Lock()
	s.cams[cam] = c
	s.mu.Unlock()
	return c, nil
}

// cloneState copies st deeply enough for a step: steps replace a track's
// vector, never write into it.
func cloneState(st *state) *state {
	out := &state{Seq: st.Seq, Next: st.Next, Tracks: make([]*track, len(st.Tracks))}
	for i, t := range st.Tracks {
		c := *t
		out.Tracks[i] = &c
	}
	return out
}

// step applies one item to st: the pure link, the face services where the
// plan needs them, the pure apply.
func (s *Stage) step(ctx context.Context, st *state, it *item, frame func() ([]byte, error)) (stepOut, error) {
	obs := it.obs // a copy: a redone step starts from the decoded message
	obs.Faces = append([]streams.ObservedFace(nil), it.obs.Faces...)
	if len(it.persons) > 0 {
		img, err := frame()
		if err != nil {
			return stepOut{}, err
		}
		if img == nil {
			s.m.Rejected.WithLabelValues("index", "no_frame").Inc()
		} else {
			faces, err := s.detectFaces(ctx, img)
			if err != nil {
				return stepOut{}, err
			}
			for _, f := range faces {
				if insideAny(f.Box, it.persons) {
					obs.Faces = append(obs.Faces, f)
				}
			}
			obs.FrameJPEG = img
		}
	}
	if it.needFrame {
		img, err := frame()
		if err != nil {
			return stepOut{}, err
		}
		if img == nil {
			// Faces we cannot embed without an image are dropped; faces
			// with vectors of our model go on without one.
			kept := obs.Faces[:0]
			for _, f := range obs.Faces {
				if f.Embedding != nil {
					kept = append(kept, f)
				}
			}
			if len(kept) < len(obs.Faces) {
				s.m.Rejected.WithLabelValues("index", "no_frame").Inc() // counted per message, as persons are
			}
			obs.Faces = kept
		} else {
			obs.FrameJPEG = img
		}
	}
	pl := s.cfg.link(st, &obs)
	if pl.frame && obs.FrameJPEG == nil && !it.detect {
		img, err := frame()
		if err != nil {
			return stepOut{}, err
		}
		obs.FrameJPEG = img
	}
	thumbs := map[int][]byte{}
	if len(pl.need) > 0 && len(obs.FrameJPEG) > 0 {
		p := embed.Params{Mode: embed.ModeFaces, Thumbs: true}
		for _, i := range pl.need {
			p.Faces = append(p.Faces, embed.FaceIn{Box: obs.Faces[i].Box, Landmarks: obs.Faces[i].Landmarks})
		}
		rep, err := s.emb.Do(ctx, obs.FrameJPEG, p)
		if err != nil {
			return stepOut{}, serviceErr("embed", err)
		}
		if rep.Model != s.cfg.Model || len(rep.Faces) != len(pl.need) {
			return stepOut{}, pool.Permanent("model_mismatch", fmt.Errorf("index: embedder answered %d faces of model %q, want %d of %q", len(rep.Faces), rep.Model, len(pl.need), s.cfg.Model))
		}
		for j, i := range pl.need {
			obs.Faces[i].Embedding, obs.Faces[i].Model = rep.Faces[j].Embedding, rep.Model
			thumbs[i] = rep.Faces[j].Thumb
		}
	}
	return s.cfg.apply(st, &obs, it.seq, pl, thumbs), nil
}

// commit publishes what the steps derived, then stores them with the new
// state. Publish first, commit second: a crash in between redoes the steps,
// and the repeated messages are dropped by their ids.
func (s *Stage) commit(ctx context.Context, cam string, c *camera, st *state, out stepOut) error {
	var msgs []*nats.Msg
	for _, sm := range out.samples {
		m, err := envelope(streams.Subject(streams.SamplesSubj, cam), "sample-"+strconv.FormatInt(sm.ID, 10), &sm)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	for _, sg := range out.sightings {
		m, err := envelope(streams.Subject(streams.SightingsSubj, cam), fmt.Sprintf("sight-%d", sg.FrameNumber), &sg)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if err := publishAll(ctx, s.js, msgs); err != nil {
		return err
	}
	body, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("index: encode state: %w", err)
	}
	list := make([]store.TrackUpdate, 0, len(out.updates))
	for _, u := range out.updates {
		list = append(list, *u)
	}
	sort.Slice(list, func(a, b int) bool { return list[a].Track.ID < list[b].Track.ID })
	samples := make([]store.Sample, len(out.samples))
	for i, sm := range out.samples {
		samples[i] = store.Sample{ID: sm.ID, TrackID: sm.TrackID, CameraID: sm.CameraID, Time: sm.Timestamp, Box: sm.Box}
	}
	if err := s.store.CommitTracking(ctx, cam, c.version, body, list, samples, s.cfg.Retention); err != nil {
		return err
	}
	s.mu.Lock()
	c.st, c.version = st, c.version+1
	c.wall, c.open = time.Now(), len(st.Tracks) > 0
	s.mu.Unlock()
	return nil
}

// publishAll publishes msgs asynchronously and waits for every ack: a batch
// costs one round trip, not one per message.
func publishAll(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("index: publish %s: %w", m.Subject, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("index: publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("index: publish: %w", ctx.Err())
		}
	}
	return nil
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

func insideAny(b streams.Box, persons []streams.ExternalObject) bool {
	c := image.Pt((b[0]+b[2])/2, (b[1]+b[3])/2)
	for _, p := range persons {
		if c.In(image.Rect(p.Box[0], p.Box[1], p.Box[2], p.Box[3])) {
			return true
		}
	}
	return false
}

// RunTicker closes the tracks of cameras that went quiet: after Silence of
// wall time without messages, and with nothing of the camera's partition
// waiting in POI_INGEST, it applies a tick whose camera time is just past the
// silence window of the last real observation. Checking the partition
// matters: a tick that overtook a backlog of the camera's frames would close
// a track that the backlog continues.
func (s *Stage) RunTicker(ctx context.Context, consumer func(p int) string) error {
	t := time.NewTicker(max(s.cfg.Silence/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.mu.Lock()
		due := map[int][]string{}
		for id, c := range s.cams {
			if c.open && time.Since(c.wall) > s.cfg.Silence {
				due[c.partition] = append(due[c.partition], id)
			}
			if !c.open && s.cfg.IdleTTL > 0 && time.Since(c.wall) > s.cfg.IdleTTL {
				delete(s.cams, id)
			}
		}
		s.mu.Unlock()
		for p, cams := range due {
			if s.pending(ctx, consumer(p)) {
				continue
			}
			lock := s.partLock(p)
			lock.Lock()
			for _, cam := range cams {
				if err := s.tick(ctx, cam); err != nil {
					s.log.Warn("tick", "camera", cam, "error", err)
				}
			}
			lock.Unlock()
		}
	}
}

// tick applies a tick observation to cam (the partition lock is held).
func (s *Stage) tick(ctx context.Context, cam string) error {
	s.mu.Lock()
	c := s.cams[cam]
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	if c.st == nil {
		// An earlier tick failed and dropped the state: reload it, or the
		// camera's open tracks would never close.
		fresh, err := s.camera(ctx, c.partition, cam)
		if err != nil {
			return err
		}
		s.mu.Lock()
		fresh.wall, fresh.open = c.wall, len(fresh.st.Tracks) > 0
		s.mu.Unlock()
		c = fresh
	}
	if len(c.st.Tracks) == 0 {
		s.mu.Lock()
		c.open = false
		s.mu.Unlock()
		return nil
	}
	st := cloneState(c.st)
	var last time.Time
	for _, t := range st.Tracks {
		if t.Last.After(last) {
			last = t.Last
		}
	}
	obs := streams.Observation{Header: streams.Current(), CameraID: cam, Timestamp: last.Add(s.cfg.Silence + time.Millisecond), Tick: true}
	pl := s.cfg.link(st, &obs)
	out := s.cfg.apply(st, &obs, 0, pl, nil)
	if err := s.commit(ctx, cam, c, st, out); err != nil {
		// Another commit came first (or Redis failed): the next tick starts
		// from what Redis holds. The camera stays due, so that its tracks
		// still close if it never sends again.
		s.mu.Lock()
		c.st = nil
		s.mu.Unlock()
		return err
	}
	s.m.TracksClose.Add(float64(out.closed))
	return nil
}

// pending reports whether messages wait for a partition's consumer (or
// whether that cannot be told).
func (s *Stage) pending(ctx context.Context, consumer string) bool {
	c, err := s.js.Consumer(ctx, streams.Ingest, consumer)
	if err != nil {
		return true
	}
	info := c.CachedInfo()
	return info.NumPending > 0 || info.NumAckPending > 0
}

// OpenTrack is a track the tracker holds open on a camera.
type OpenTrack struct {
	ID   string
	Box  streams.Box
	Last time.Time
}

// OpenTracks reads a camera's open tracks from the tracker's state.
func OpenTracks(ctx context.Context, st *store.Store, camera string) ([]OpenTrack, error) {
	raw, _, err := st.TrackerState(ctx, camera)
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
