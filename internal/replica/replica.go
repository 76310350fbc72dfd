// Package replica keeps a process's FAISS indexes in step with the
// authoritative state: the POI index is rebuilt from Redis at start and then
// follows POI_CONTROL; the all-detections index loads its snapshot and then
// replays POI_SAMPLES from the snapshot's position. Every process that
// searches (API, alert workers) runs its own replica, so nothing assumes a
// single process.
package replica

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/store"
	"poi/internal/vectorindex"
	"poi/streams"
)

// POI is a replica of the POI index.
type POI struct {
	// name tells replicas apart in `poi erase --verify`.
	name  string
	idx   *vectorindex.POIIndex
	store *store.Store
	js    jetstream.JetStream
	log   *slog.Logger
}

// NewPOI creates an empty replica for model; Start fills it.
func NewPOI(model vectorindex.Model, st *store.Store, js jetstream.JetStream, log *slog.Logger) (*POI, error) {
	idx, err := vectorindex.NewPOIIndex(model)
	if err != nil {
		return nil, fmt.Errorf("poi replica: %w", err)
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	name := fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	return &POI{name: name, idx: idx, store: st, js: js, log: log.With("component", "poi-replica")}, nil
}

// Index is the live index (safe for concurrent search).
func (p *POI) Index() *vectorindex.POIIndex { return p.idx }

// Start rebuilds from Redis and then follows control events in the
// background until ctx ends. Events published while the rebuild ran are
// applied again, which is harmless: Add and Remove are idempotent.
func (p *POI) Start(ctx context.Context) error {
	s, err := p.js.Stream(ctx, streams.Control)
	if err != nil {
		return fmt.Errorf("poi replica: %w", err)
	}
	from := s.CachedInfo().State.LastSeq + 1
	if err := p.Rebuild(ctx); err != nil {
		return err
	}
	cons, err := p.js.OrderedConsumer(ctx, streams.Control, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
	})
	if err != nil {
		return fmt.Errorf("poi replica: follow control: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var ev streams.ControlEvent
		if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &ev); err != nil {
			p.log.Warn("bad control event", "error", err)
			return
		}
		if (ev.Op == streams.OpEnrolled || ev.Op == streams.OpRefs) && p.erased(ctx, ev.POIID) {
			// A late enrolment event (the outbox relay racing a purge)
			// must not bring an erased POI back into the index.
			p.log.Info("enrolment of an erased poi ignored", "poi_id", ev.POIID)
			return
		}
		if err := p.Apply(ev); err != nil {
			p.log.Error("apply control event", "op", ev.Op, "poi_id", ev.POIID, "error", err)
		}
	})
	if err != nil {
		return fmt.Errorf("poi replica: consume control: %w", err)
	}
	sub, err := p.js.Conn().Subscribe(streams.ReplicaQuery, p.answer)
	if err != nil {
		cc.Stop()
		return fmt.Errorf("poi replica: subscribe %s: %w", streams.ReplicaQuery, err)
	}
	go func() {
		<-ctx.Done()
		cc.Stop()
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			p.log.Warn("unsubscribe replica query", "error", err)
		}
	}()
	return nil
}

// erased reports whether the POI has a tombstone, asking Redis until it
// answers (or ctx ends): control events are applied in order, so waiting
// here holds back the events behind this one, which is what we want.
func (p *POI) erased(ctx context.Context, id string) bool {
	wait := 50 * time.Millisecond
	for {
		erased, err := p.store.Erased(ctx, id)
		if err == nil {
			return erased
		}
		p.log.Warn("tombstone check failed; retrying", "poi_id", id, "error", err)
		select {
		case <-ctx.Done():
			return true // shutting down: applying nothing is safe, a restart rebuilds
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// answer tells `poi erase --verify` how many FAISS ids this replica holds
// for the POI named in the request.
func (p *POI) answer(m *nats.Msg) {
	id := string(m.Data)
	body, err := json.Marshal(streams.ReplicaHolding{Header: streams.Current(), Replica: p.name, POIID: id, FAISSIDs: p.idx.Holds(id)})
	if err != nil {
		p.log.Error("encode replica answer", "error", err)
		return
	}
	if err := m.Respond(body); err != nil {
		p.log.Warn("answer replica query", "error", err)
	}
}

// Rebuild replaces the index with the POIs in Redis.
func (p *POI) Rebuild(ctx context.Context) error {
	pois, err := p.store.ListPOIs(ctx, true)
	if err != nil {
		return fmt.Errorf("poi replica rebuild: %w", err)
	}
	var entries []vectorindex.POIEntry
	model := p.idx.Model()
	for _, poi := range pois {
		if poi.Model != model.Name {
			// Vectors of another model are never compared with ours.
			p.log.Warn("skipping poi enrolled with another model", "poi_id", poi.ID, "model", poi.Model, "want", model.Name)
			continue
		}
		for _, r := range poi.Refs {
			entries = append(entries, vectorindex.POIEntry{POIID: poi.ID, EmbeddingID: r.EmbeddingID, Vector: r.Vector})
		}
	}
	if err := p.idx.Rebuild(entries); err != nil {
		return fmt.Errorf("poi replica rebuild: %w", err)
	}
	p.log.Info("poi index rebuilt from redis", "pois", p.idx.POICount(), "vectors", p.idx.Count())
	return nil
}

// Apply applies one control event (also called directly by the API after
// its own writes, so a client reads what it just wrote).
func (p *POI) Apply(ev streams.ControlEvent) error {
	switch ev.Op {
	case streams.OpEnrolled, streams.OpRefs:
		if ev.Model != p.idx.Model().Name {
			return fmt.Errorf("poi %s enrolled with model %q, index is %q", ev.POIID, ev.Model, p.idx.Model().Name)
		}
		refs := make([]vectorindex.Ref, len(ev.Refs))
		for i, r := range ev.Refs {
			refs[i] = vectorindex.Ref{EmbeddingID: r.EmbeddingID, Vector: r.Vector}
		}
		// Both carry the POI's whole set of references: replacing makes a
		// removed photo go too, and a repeat changes nothing.
		return p.idx.Replace(ev.POIID, refs)
	case streams.OpDeleted:
		_, err := p.idx.Remove(ev.POIID)
		return err
	}
	return fmt.Errorf("unknown control op %q", ev.Op)
}

// Close frees the index.
func (p *POI) Close() error { return p.idx.Close() }

// DetectionConfig configures the all-detections replica.
type DetectionConfig struct {
	Index     vectorindex.DetectionConfig
	Dir       string        // snapshot folder
	Retention time.Duration // samples older than this are dropped
	// SnapshotEvery is how often the index is written (also at shutdown).
	SnapshotEvery time.Duration
}

// Detections is a replica of the all-detections index.
type Detections struct {
	cfg DetectionConfig
	js  jetstream.JetStream
	log *slog.Logger

	mu  sync.Mutex // guards pos and signals waiters
	pos uint64
	cnd *sync.Cond

	idx *vectorindex.DetectionIndex
}

// NewDetections loads the snapshot under cfg.Dir, or starts empty (and
// replays the whole stream) when it is missing or damaged.
func NewDetections(cfg DetectionConfig, js jetstream.JetStream, log *slog.Logger) (*Detections, error) {
	log = log.With("component", "detection-replica")
	d := &Detections{cfg: cfg, js: js, log: log}
	d.cnd = sync.NewCond(&d.mu)
	start := time.Now()
	idx, pos, err := vectorindex.LoadDetectionIndex(cfg.Dir, cfg.Index)
	switch {
	case err == nil:
		log.Info("detection index snapshot loaded", "position", pos, "vectors", idx.Count(), "took", time.Since(start))
	default:
		if !errors.Is(err, vectorindex.ErrNoSnapshot) {
			log.Warn("detection index snapshot unusable; rebuilding from the samples stream", "error", err)
		}
		if idx, err = vectorindex.NewDetectionIndex(cfg.Index); err != nil {
			return nil, fmt.Errorf("detection replica: %w", err)
		}
		pos = 0
	}
	d.idx, d.pos = idx, pos
	return d, nil
}

// Index is the live index.
func (d *Detections) Index() *vectorindex.DetectionIndex { return d.idx }

// Position is the stream sequence of the last sample applied.
func (d *Detections) Position() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pos
}

// Run replays and follows POI_SAMPLES until ctx ends, applies retention and
// writes snapshots; at the end it writes a last snapshot.
func (d *Detections) Run(ctx context.Context) error {
	cons, err := d.js.OrderedConsumer(ctx, streams.Samples, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: d.Position() + 1,
	})
	if err != nil {
		return fmt.Errorf("detection replica: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			return
		}
		var s streams.Sample
		if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &s); err != nil {
			d.log.Warn("bad sample", "error", err)
		} else if s.Model != d.cfg.Index.Model.Name {
			d.log.Warn("sample of another model ignored", "model", s.Model)
		} else if time.Since(s.Timestamp) < d.cfg.Retention {
			if err := d.idx.Add(s.ID, s.Timestamp, s.Vector); err != nil {
				d.log.Error("add sample", "id", s.ID, "error", err)
			}
		}
		d.mu.Lock()
		d.pos = meta.Sequence.Stream
		d.cnd.Broadcast()
		d.mu.Unlock()
	})
	if err != nil {
		return fmt.Errorf("detection replica: %w", err)
	}
	tick := time.NewTicker(d.cfg.SnapshotEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			cc.Stop()
			return d.snapshot()
		case <-tick.C:
			if segs, vecs := d.idx.DropBefore(time.Now().Add(-d.cfg.Retention)); segs > 0 {
				d.log.Info("retention dropped segments", "segments", segs, "vectors", vecs)
			}
			if n, err := d.idx.CompactDue(ctx, time.Now()); err != nil && ctx.Err() == nil {
				d.log.Warn("compact", "error", err)
			} else if n > 0 {
				d.log.Info("detection segments rebuilt", "segments", n)
			}
			if err := d.snapshot(); err != nil {
				d.log.Warn("snapshot", "error", err)
			}
		}
	}
}

func (d *Detections) snapshot() error {
	if err := os.MkdirAll(d.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("snapshot dir: %w", err)
	}
	pos := d.Position()
	if err := d.idx.Snapshot(d.cfg.Dir, pos); err != nil {
		return fmt.Errorf("detection snapshot: %w", err)
	}
	d.log.Debug("detection index snapshot written", "position", pos, "dir", filepath.Clean(d.cfg.Dir))
	return nil
}

// WaitFor blocks until the replica has applied stream sequence seq, or ctx
// ends.
func (d *Detections) WaitFor(ctx context.Context, seq uint64) error {
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.cnd.Broadcast()
		d.mu.Unlock()
	})
	defer stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.pos < seq {
		if ctx.Err() != nil {
			return fmt.Errorf("detection replica at %d, waiting for %d: %w", d.pos, seq, ctx.Err())
		}
		d.cnd.Wait()
	}
	return nil
}

// CatchUp waits until every sample stored so far is applied.
func (d *Detections) CatchUp(ctx context.Context) error {
	s, err := d.js.Stream(ctx, streams.Samples)
	if err != nil {
		return fmt.Errorf("detection replica: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("detection replica: %w", err)
	}
	return d.WaitFor(ctx, info.State.LastSeq)
}

// Close frees the index.
func (d *Detections) Close() error { return d.idx.Close() }
