// Package zones turns SceneScape region events into zone appearances of
// face tracks.
//
// Association: SceneScape objects carry scene UUIDs, our tracks are per
// camera. An entering object is attached to the face track that is open on
// a camera that sees it: when the event gives the object's box on a camera
// (camera_bounds), the open track whose face box centre lies inside it (the
// largest overlap wins, and two alike are ambiguous); otherwise, when
// exactly one track is open on the cameras that see it (visibility, or
// every known camera when the event names none), that one. Anything
// ambiguous is counted and logged, never guessed.
package zones

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/metrics"
	"poi/internal/store"
	"poi/streams"
	"poi/workers/index"
	"poi/workers/pool"
)

// Stage is the zones stage.
type Stage struct {
	store     *store.Store
	retention time.Duration
	m         *metrics.Metrics
	log       *slog.Logger
}

// New returns the stage.
func New(st *store.Store, retention time.Duration, m *metrics.Metrics, log *slog.Logger) *Stage {
	return &Stage{store: st, retention: retention, m: m, log: log.With("stage", "zones")}
}

type openZone struct {
	Track   string    `json:"track"`
	Zone    string    `json:"zone"`
	SceneID string    `json:"scene_id"`
	Entry   time.Time `json:"entry"`
}

// Handle is the pool handler of the zones consumer.
func (s *Stage) Handle(ctx context.Context, msg jetstream.Msg) error {
	var ev streams.RegionEvent
	if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &ev); err != nil {
		return pool.Permanent("bad_envelope", err)
	}
	zone := ev.RegionName
	if zone == "" {
		zone = ev.RegionID
	}
	for _, o := range ev.Entered {
		track, err := s.associate(ctx, o)
		if err != nil {
			return err
		}
		if track == "" {
			s.m.Rejected.WithLabelValues("zones", "unassociated").Inc()
			s.log.Debug("region entry not associated with a face track", "object", o.ID, "zone", zone)
			continue
		}
		oz := openZone{Track: track, Zone: zone, SceneID: ev.SceneID, Entry: ev.Timestamp}
		if err := s.store.OpenZone(ctx, o.ID, ev.RegionID, oz, s.retention); err != nil {
			return err
		}
	}
	for _, o := range ev.Exited {
		raw, err := s.store.PendingZone(ctx, o.ID, ev.RegionID)
		if err != nil {
			return err
		}
		if raw == nil {
			continue // its entry was not associated (or already closed)
		}
		var oz openZone
		if err := json.Unmarshal(raw, &oz); err != nil {
			return pool.Permanent("bad_state", fmt.Errorf("zones: open zone of %s: %w", o.ID, err))
		}
		dwell := o.Dwell
		if dwell == 0 {
			dwell = ev.Timestamp.Sub(oz.Entry).Seconds()
		}
		k := s.store.Keys()
		z := store.ZoneAppearance{Zone: oz.Zone, SceneID: oz.SceneID, Entry: oz.Entry, Exit: ev.Timestamp, Dwell: dwell}
		last := k.TrackFrame(oz.Track, "last")
		closed, err := s.store.CloseZone(ctx, o.ID, ev.RegionID, raw, oz.Track, z, k.TrackFrame(oz.Track, "entry"), last, s.retention)
		if err != nil {
			return err
		}
		if !closed {
			s.log.Debug("zone visit closed or replaced meanwhile", "object", o.ID, "zone", oz.Zone)
		}
	}
	return nil
}

func (s *Stage) associate(ctx context.Context, o streams.RegionObject) (string, error) {
	open, err := s.openTracks(ctx, o)
	if err != nil {
		return "", err
	}
	return pickTrack(o, open), nil
}

// openTracks reads the open tracks of every camera that sees o: those the
// event names, or every known camera when it names none.
func (s *Stage) openTracks(ctx context.Context, o streams.RegionObject) (map[string][]index.OpenTrack, error) {
	cams := o.Cameras
	for cam := range o.CameraBounds {
		cams = append(cams, cam)
	}
	if len(cams) == 0 {
		all, err := s.store.CamerasSeen(ctx)
		if err != nil {
			return nil, err
		}
		cams = all
	}
	open := make(map[string][]index.OpenTrack, len(cams))
	for _, cam := range cams {
		if _, done := open[cam]; done {
			continue
		}
		tracks, err := index.OpenTracks(ctx, s.store, cam)
		if err != nil {
			return nil, err
		}
		open[cam] = tracks
	}
	return open, nil
}

// pickTrack is the association rule of the package doc, apart from I/O:
// open holds the open tracks of every camera that sees o. It returns "" when
// no track can be told apart.
func pickTrack(o streams.RegionObject, open map[string][]index.OpenTrack) string {
	var candidates int
	only := ""
	best, bestOverlap, tie := "", 0, false
	for cam, tracks := range open {
		candidates += len(tracks)
		if len(tracks) > 0 {
			only = tracks[0].ID
		}
		b, ok := o.CameraBounds[cam]
		if !ok {
			continue
		}
		for _, t := range tracks {
			cx, cy := (t.Box[0]+t.Box[2])/2, (t.Box[1]+t.Box[3])/2
			if cx < b[0] || cx >= b[2] || cy < b[1] || cy >= b[3] {
				continue
			}
			// The overlap, not the face's size: a big face near the edge of
			// the object's box is more likely someone else's.
			switch ov := overlap(t.Box, b); {
			case ov > bestOverlap:
				best, bestOverlap, tie = t.ID, ov, false
			case ov == bestOverlap && ov > 0:
				tie = true
			}
		}
	}
	if best != "" {
		if tie {
			// Which of the two would depend on map order: a guess.
			return ""
		}
		return best
	}
	if len(o.CameraBounds) == 0 && candidates == 1 {
		return only
	}
	return ""
}

// overlap is the area two boxes share.
func overlap(a, b streams.Box) int {
	w := min(a[2], b[2]) - max(a[0], b[0])
	h := min(a[3], b[3]) - max(a[1], b[1])
	if w <= 0 || h <= 0 {
		return 0
	}
	return w * h
}
