package index

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"time"

	"poi/internal/store"
	"poi/streams"
)

// This file is the tracker's pure core: state and one observation in, the
// new state and what must be written out. It does no I/O; the shell in
// index.go loads state, asks the face services, publishes and commits.

// state is the tracker's durable per-camera state.
type state struct {
	// Seq is the last POI_INGEST sequence applied: a redelivered message at
	// or below it was applied already.
	Seq    uint64   `json:"seq"`
	Next   int      `json:"next"`
	Tracks []*track `json:"tracks"`
}

type track struct {
	ID       string      `json:"id"`
	Entry    time.Time   `json:"entry"`
	Last     time.Time   `json:"last"`
	Box      streams.Box `json:"box"`
	Emb      packed      `json:"emb,omitempty"`
	EmbAt    time.Time   `json:"emb_at"`
	EmbArea  int         `json:"emb_area"`
	Samples  int         `json:"samples"`
	Frames   int         `json:"frames"`
	SampleAt time.Time   `json:"sample_at"`
	FrameAt  time.Time   `json:"frame_at"`
}

// packed is a track's last vector in the state: little-endian float32s,
// which encoding/json writes as base64 in one pass (a vector type with its
// own MarshalJSON costs a second pass over its output, and the state of a
// busy camera is written on every batch). A JSON list of numbers, as older
// states hold, is still read.
type packed []byte

// UnmarshalJSON reads base64 (what encoding/json writes for bytes) or a
// list of numbers.
func (p *packed) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '[' {
		var v []float32
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("track vector: %w", err)
		}
		*p = streams.FloatBytes(v)
		return nil
	}
	var raw []byte
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("track vector: %w", err)
	}
	*p = raw
	return nil
}

func (p packed) floats() []float32 {
	v, err := streams.BytesFloats(p)
	if err != nil {
		return nil // a damaged vector links nothing
	}
	return v
}

// plan is the first half of a step: exits, faces linked to open tracks by
// IoU, and the faces that need a vector from the embedder.
type plan struct {
	exited []*track
	owner  []*track
	taken  map[*track]bool
	// need are the faces to embed: unvectored faces of new tracks, of
	// tracks due for a refresh, or seen clearly larger than last embedded.
	need []int
	// frame reports whether the step will store a frame (a new track, or a
	// last-seen frame due), so the shell fetches one when it has none.
	frame bool
}

// stepOut is what one step writes.
type stepOut struct {
	updates   map[string]*store.TrackUpdate
	samples   []streams.Sample
	sightings []streams.Sighting
	opened    int
	closed    int
}

// link runs the first half of a step on st (exits are applied to st).
func (c Config) link(st *state, obs *streams.Observation) *plan {
	now := obs.Timestamp
	p := &plan{taken: map[*track]bool{}}
	kept := st.Tracks[:0]
	for _, t := range st.Tracks {
		if now.Sub(t.Last) > c.Silence {
			p.exited = append(p.exited, t)
			continue
		}
		kept = append(kept, t)
	}
	st.Tracks = kept

	faces := obs.Faces
	p.owner = make([]*track, len(faces))
	type pair struct {
		f   int
		t   *track
		iou float64
	}
	var pairs []pair
	for i, f := range faces {
		for _, t := range st.Tracks {
			if v := f.Box.IoU(t.Box); v >= c.MinIoU {
				pairs = append(pairs, pair{i, t, v})
			}
		}
	}
	sort.SliceStable(pairs, func(a, b int) bool { return pairs[a].iou > pairs[b].iou })
	for _, pr := range pairs {
		if p.owner[pr.f] == nil && !p.taken[pr.t] {
			p.owner[pr.f], p.taken[pr.t] = pr.t, true
		}
	}
	for i, f := range faces {
		t := p.owner[i]
		if t == nil || now.Sub(t.FrameAt) >= c.LastFrameEvery {
			p.frame = true
		}
		if f.Embedding != nil {
			continue
		}
		if t == nil || now.Sub(t.EmbAt) >= c.SampleInterval || float64(f.Box.Area()) >= c.BetterView*float64(max(1, t.EmbArea)) {
			p.need = append(p.need, i)
		}
	}
	return p
}

// apply runs the second half of a step: faces IoU could not place go to the
// most similar unclaimed track if the vectors say it is the same person,
// otherwise to a new track; then records, frames, samples and sightings.
// The faces of obs carry the vectors the embedder returned, and thumbs the
// thumbnails by face index.
func (c Config) apply(st *state, obs *streams.Observation, seq uint64, p *plan, thumbs map[int][]byte) stepOut {
	now := obs.Timestamp
	out := stepOut{updates: map[string]*store.TrackUpdate{}}
	upd := func(t *track) *store.TrackUpdate {
		u, ok := out.updates[t.ID]
		if !ok {
			u = &store.TrackUpdate{}
			out.updates[t.ID] = u
		}
		u.Track = store.Track{ID: t.ID, CameraID: obs.CameraID, Entry: t.Entry, LastSeen: t.Last, Box: t.Box, Samples: t.Samples, Frames: t.Frames}
		return u
	}
	for _, t := range p.exited {
		u := upd(t)
		u.Track.Exit, u.Exited = t.Last, true
		out.closed++
	}
	if !obs.Tick {
		st.Seq = seq
	}

	faces := obs.Faces
	for i, f := range faces {
		if p.owner[i] != nil {
			continue
		}
		if f.Embedding != nil {
			best, bestSim := (*track)(nil), c.Continuity
			for _, t := range st.Tracks {
				if p.taken[t] || t.Emb == nil {
					continue
				}
				if sim := cosine(f.Embedding, t.Emb.floats()); sim >= bestSim {
					best, bestSim = t, sim
				}
			}
			if best != nil {
				p.owner[i], p.taken[best] = best, true
				continue
			}
		}
		t := &track{ID: fmt.Sprintf("cam:%s:%d", obs.CameraID, st.Next), Entry: now}
		st.Next++
		st.Tracks = append(st.Tracks, t)
		p.owner[i], p.taken[t] = t, true
		out.opened++
	}

	var sighted []streams.SightedFace
	for i, f := range faces {
		t := p.owner[i]
		isNew := t.Last.IsZero()
		t.Last, t.Box = now, f.Box
		t.Frames++
		u := upd(t)
		if isNew {
			u.EntryFrame = obs.FrameJPEG
		}
		if len(obs.FrameJPEG) > 0 && (isNew || now.Sub(t.FrameAt) >= c.LastFrameEvery) {
			u.LastFrame, t.FrameAt = obs.FrameJPEG, now
		}
		if th := thumbs[i]; th != nil && (isNew || f.Box.Area() > t.EmbArea) {
			u.Thumb = th
		}
		if f.Embedding == nil {
			continue
		}
		t.Emb, t.EmbAt, t.EmbArea = packed(streams.FloatBytes(f.Embedding)), now, f.Box.Area()
		if t.Samples < c.MaxSamples && (t.Samples == 0 || now.Sub(t.SampleAt) >= c.SampleInterval) {
			id := sampleID(t.ID, t.Samples)
			t.Samples++
			t.SampleAt = now
			u.Track.Samples = t.Samples
			out.samples = append(out.samples, streams.Sample{
				Header: streams.Current(), ID: id, TrackID: t.ID, CameraID: obs.CameraID, Timestamp: now, Box: f.Box, Model: c.Model, Vector: f.Embedding,
			})
		}
		sighted = append(sighted, streams.SightedFace{TrackID: t.ID, Box: f.Box, Confidence: f.Score, Embedding: f.Embedding})
	}
	if len(sighted) > 0 {
		// One sighting for the faces of the observation: the alert stage
		// gets one message a frame, not one a face.
		out.sightings = append(out.sightings, streams.Sighting{
			Header: streams.Current(), FrameNumber: obs.FrameNumber, CameraID: obs.CameraID, Timestamp: now, Model: c.Model, Faces: sighted,
		})
	}
	return out
}

// merge folds a later step's writes into earlier ones of the same batch:
// the record is the latest, the entry frame the first, the last frame and
// thumbnail the latest given.
func (o *stepOut) merge(later stepOut) {
	for id, u := range later.updates {
		prev, ok := o.updates[id]
		if !ok {
			o.updates[id] = u
			continue
		}
		prev.Track = u.Track
		if prev.EntryFrame == nil {
			prev.EntryFrame = u.EntryFrame
		}
		if u.LastFrame != nil {
			prev.LastFrame = u.LastFrame
		}
		if u.Thumb != nil {
			prev.Thumb = u.Thumb
		}
		prev.Exited = prev.Exited || u.Exited
	}
	o.samples = append(o.samples, later.samples...)
	o.sightings = append(o.sightings, later.sightings...)
	o.opened += later.opened
	o.closed += later.closed
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
