package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"poi/streams"
)

// Track is a face track record.
type Track struct {
	ID       string
	CameraID string
	Entry    time.Time
	LastSeen time.Time
	// Exit is zero while the track is open.
	Exit    time.Time
	Box     streams.Box
	Samples int
	// Frames counts the observations the track was seen in.
	Frames int
}

// TrackUpdate is what one tracking step writes for one track. Nil frames
// leave the stored frame as it is.
type TrackUpdate struct {
	Track      Track
	EntryFrame []byte
	LastFrame  []byte
	// Exited copies the last-seen frame to the exit frame.
	Exited bool
	Thumb  []byte
}

// Sample is one vector of the all-detections index as Redis knows it.
type Sample struct {
	ID       int64
	TrackID  string
	CameraID string
	Time     time.Time
	Box      streams.Box
}

// TrackerCameras lists the cameras that have tracker state (SCAN, never
// KEYS): a new owner of a partition finds the cameras whose open tracks it
// must close when they stay quiet.
func (s *Store) TrackerCameras(ctx context.Context) ([]string, error) {
	prefix := strings.TrimSuffix(s.keys.TrackerStatePattern(), "*")
	var out []string
	it := s.rdb.Scan(ctx, 0, s.keys.TrackerStatePattern(), 1000).Iterator()
	for it.Next(ctx) {
		out = append(out, strings.TrimPrefix(it.Val(), prefix))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("tracker cameras: %w", err)
	}
	return out, nil
}

// ErrConflict: the tracker state changed since it was read (another owner
// of the camera committed); the step must be redone from the new state.
var ErrConflict = errors.New("tracker state changed since it was read")

// TrackerState returns a camera's tracker state (nil when there is none)
// and its version, for CommitTracking.
func (s *Store) TrackerState(ctx context.Context, camera string) ([]byte, int64, error) {
	var st, ver *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		st = p.Get(ctx, s.keys.TrackerState(camera))
		ver = p.Get(ctx, s.keys.TrackerVersion(camera))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("tracker state %s: %w", camera, err)
	}
	b, err := st.Bytes()
	if errors.Is(err, redis.Nil) {
		b = nil
	} else if err != nil {
		return nil, 0, fmt.Errorf("tracker state %s: %w", camera, err)
	}
	v, err := ver.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("tracker version %s: %w", camera, err)
	}
	return b, v, nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// CommitTracking writes tracking steps atomically (MULTI/EXEC): track
// records, frames, thumbnails, samples and the new tracker state. Either all
// of it is stored or none, so a worker killed mid-step leaves Redis as it
// was and the redelivered observations redo the steps exactly. It commits
// only if the state is still at version (as TrackerState read it), and
// returns ErrConflict otherwise.
func (s *Store) CommitTracking(ctx context.Context, camera string, version int64, state []byte, updates []TrackUpdate, samples []Sample, ttl time.Duration) error {
	k := s.keys
	vkey := k.TrackerVersion(camera)
	err := s.rdb.Watch(ctx, func(rtx *redis.Tx) error {
		cur, err := rtx.Get(ctx, vkey).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if cur != version {
			return ErrConflict
		}
		_, err = rtx.TxPipelined(ctx, func(tx redis.Pipeliner) error {
			s.writeTracking(ctx, tx, camera, version+1, state, updates, samples, ttl)
			return nil
		})
		if err != nil {
			return err
		}
		return s.replicated(ctx, rtx, "tracking "+camera)
	}, vkey)
	if errors.Is(err, redis.TxFailedErr) {
		err = ErrConflict
	}
	if err != nil {
		return fmt.Errorf("commit tracking %s: %w", camera, err)
	}
	return nil
}

// atLeast gives key a TTL of ttl unless it already has a longer one. A
// track's keys are written with the unmatched retention; a match with a
// POI extends them to the full retention (RecordAppearance), and the
// tracker's later writes of the track must not shorten them again.
func atLeast(ctx context.Context, tx redis.Pipeliner, key string, ttl time.Duration) {
	tx.ExpireNX(ctx, key, ttl) // a new key has no TTL yet
	tx.ExpireGT(ctx, key, ttl)
}

// setAtLeast writes a string keeping the TTL it has, then applies atLeast.
func setAtLeast(ctx context.Context, tx redis.Pipeliner, key string, v []byte, ttl time.Duration) {
	tx.SetArgs(ctx, key, v, redis.SetArgs{KeepTTL: true})
	atLeast(ctx, tx, key, ttl)
}

func (s *Store) writeTracking(ctx context.Context, tx redis.Pipeliner, camera string, version int64, state []byte, updates []TrackUpdate, samples []Sample, ttl time.Duration) {
	k := s.keys
	for _, u := range updates {
		t := u.Track
		box, _ := json.Marshal(t.Box)
		tx.HSet(ctx, k.Track(t.ID), map[string]any{
			"track_id": t.ID, "camera_id": t.CameraID,
			"entry": fmtTime(t.Entry), "last_seen": fmtTime(t.LastSeen), "exit": fmtTime(t.Exit),
			"bbox": string(box), "samples": t.Samples, "frames": t.Frames,
		})
		atLeast(ctx, tx, k.Track(t.ID), ttl)
		if u.EntryFrame != nil {
			setAtLeast(ctx, tx, k.TrackFrame(t.ID, "entry"), u.EntryFrame, ttl)
		}
		if u.LastFrame != nil {
			setAtLeast(ctx, tx, k.TrackFrame(t.ID, "last"), u.LastFrame, ttl)
		}
		if u.Exited {
			// COPY carries the last frame's TTL over.
			tx.Copy(ctx, k.TrackFrame(t.ID, "last"), k.TrackExitFrame(t.ID), 0, true)
			atLeast(ctx, tx, k.TrackExitFrame(t.ID), ttl)
		}
		if u.Thumb != nil {
			setAtLeast(ctx, tx, k.Thumbnail(t.ID), u.Thumb, ttl)
		}
	}
	for _, sm := range samples {
		box, _ := json.Marshal(sm.Box)
		id := strconv.FormatInt(sm.ID, 10)
		tx.HSet(ctx, k.Detection(id), map[string]any{
			"track_id": sm.TrackID, "camera_id": sm.CameraID, "time": fmtTime(sm.Time), "bbox": string(box),
		})
		tx.Expire(ctx, k.Detection(id), ttl)
	}
	tx.Set(ctx, k.TrackerState(camera), state, ttl)
	tx.Set(ctx, k.TrackerVersion(camera), version, ttl)
}

func parseTrack(m map[string]string) (Track, error) {
	t := Track{ID: m["track_id"], CameraID: m["camera_id"]}
	var err error
	parse := func(s string) time.Time {
		if s == "" || err != nil {
			return time.Time{}
		}
		var v time.Time
		v, err = time.Parse(time.RFC3339Nano, s)
		return v
	}
	t.Entry, t.LastSeen, t.Exit = parse(m["entry"]), parse(m["last_seen"]), parse(m["exit"])
	if err != nil {
		return t, fmt.Errorf("track %s: %w", t.ID, err)
	}
	if b := m["bbox"]; b != "" {
		if err := json.Unmarshal([]byte(b), &t.Box); err != nil {
			return t, fmt.Errorf("track %s bbox: %w", t.ID, err)
		}
	}
	t.Samples, _ = strconv.Atoi(m["samples"])
	t.Frames, _ = strconv.Atoi(m["frames"])
	return t, nil
}

// GetTrack returns a track record.
func (s *Store) GetTrack(ctx context.Context, id string) (Track, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.Track(id)).Result()
	if err != nil {
		return Track{}, fmt.Errorf("get track %s: %w", id, err)
	}
	if len(m) == 0 {
		return Track{}, fmt.Errorf("track %s: %w", id, ErrNotFound)
	}
	return parseTrack(m)
}

// GetSamples returns the Redis records of the given sample ids; ids whose
// record expired are left out.
func (s *Store) GetSamples(ctx context.Context, ids []int64) (map[int64]Sample, error) {
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.HGetAll(ctx, s.keys.Detection(strconv.FormatInt(id, 10)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get samples: %w", err)
	}
	out := make(map[int64]Sample, len(ids))
	for i, c := range cmds {
		m := c.(*redis.MapStringStringCmd).Val()
		if len(m) == 0 {
			continue
		}
		sm := Sample{ID: ids[i], TrackID: m["track_id"], CameraID: m["camera_id"]}
		sm.Time, _ = time.Parse(time.RFC3339Nano, m["time"])
		_ = json.Unmarshal([]byte(m["bbox"]), &sm.Box)
		out[ids[i]] = sm
	}
	return out, nil
}

// Frame returns a JPEG of the frame namespace; any other key is
// ErrNotFound, so that the frames endpoint cannot read arbitrary keys.
func (s *Store) Frame(ctx context.Context, key string) ([]byte, error) {
	if !s.keys.IsFrameKey(key) {
		return nil, fmt.Errorf("frame %q: %w", key, ErrNotFound)
	}
	return s.getBytes(ctx, key)
}

// Thumbnail returns a track's face thumbnail.
func (s *Store) Thumbnail(ctx context.Context, track string) ([]byte, error) {
	return s.getBytes(ctx, s.keys.Thumbnail(track))
}

// Exists reports whether key exists.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	n, err := s.rdb.Exists(ctx, key).Result()
	if err != nil {
		return false, fmt.Errorf("exists %s: %w", key, err)
	}
	return n == 1, nil
}

func (s *Store) getBytes(ctx context.Context, key string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return b, nil
}

// SetCameraLatest caches a camera's latest frame for cropping upstream
// boxes.
func (s *Store) SetCameraLatest(ctx context.Context, camera string, jpeg []byte) error {
	if err := s.rdb.Set(ctx, s.keys.CameraLatest(camera), jpeg, time.Minute).Err(); err != nil {
		return fmt.Errorf("camera latest %s: %w", camera, err)
	}
	return nil
}

// CameraLatest returns a camera's latest frame.
func (s *Store) CameraLatest(ctx context.Context, camera string) ([]byte, error) {
	return s.getBytes(ctx, s.keys.CameraLatest(camera))
}

// ZoneAppearance is a track's visit of a zone (seed shape, less the URLs).
type ZoneAppearance struct {
	Zone       string    `json:"zone"`
	SceneID    string    `json:"scene_id"`
	Entry      time.Time `json:"entry_time"`
	Exit       time.Time `json:"exit_time"`
	Dwell      float64   `json:"dwell_seconds"`
	EntryFrame string    `json:"entry_frame_key,omitempty"`
	ExitFrame  string    `json:"exit_frame_key,omitempty"`
}

// OpenZone remembers that object entered region while on track.
func (s *Store) OpenZone(ctx context.Context, object, region string, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.rdb.Set(ctx, s.keys.ZoneOpen(object, region), b, ttl).Err(); err != nil {
		return fmt.Errorf("open zone %s/%s: %w", object, region, err)
	}
	return nil
}

// PendingZone returns the pending entry of object in region (nil when there
// is none).
func (s *Store) PendingZone(ctx context.Context, object, region string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.keys.ZoneOpen(object, region)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pending zone %s/%s: %w", object, region, err)
	}
	return b, nil
}

// closeZoneLua removes the pending entry only after the visit is written:
// an error stops a script where it happens, so a failed write leaves the
// entry for the retry (a MULTI would run the DEL anyway), and the frame
// copies it may have done are simply redone. An entry that is no longer
// the one the caller read was closed or replaced by someone else meanwhile.
const closeZoneLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[3])
if ARGV[4] == '1' then
  redis.call('COPY', KEYS[3], KEYS[4], 'REPLACE')
  redis.call('PEXPIRE', KEYS[4], ttl)
end
if ARGV[5] == '1' then
  redis.call('COPY', KEYS[5], KEYS[6], 'REPLACE')
  redis.call('PEXPIRE', KEYS[6], ttl)
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('DEL', KEYS[1])
return 1
`

// CloseZone appends a finished zone visit to a track, copying the given
// frames (when not empty) into the zone frame namespace, and removes the
// pending entry of object in region, all at once and only if that entry is
// still entry (as PendingZone returned it). It reports whether it closed
// the visit; false means someone else did. Either the visit is recorded
// and the entry gone, or the entry is still there for a retry: a
// redelivered exit can neither lose nor repeat the visit.
func (s *Store) CloseZone(ctx context.Context, object, region string, entry []byte, track string, z ZoneAppearance, entrySrc, exitSrc string, ttl time.Duration) (bool, error) {
	k := s.keys
	flag := func(src string) string {
		if src == "" {
			return "0"
		}
		return "1"
	}
	if entrySrc != "" {
		z.EntryFrame = k.ZoneFrame(track, z.Zone, z.Entry, "entry")
	}
	if exitSrc != "" {
		z.ExitFrame = k.ZoneFrame(track, z.Zone, z.Entry, "exit")
	}
	b, err := json.Marshal(z)
	if err != nil {
		return false, fmt.Errorf("zone appearance %s: %w", track, err)
	}
	n, err := s.closeZoneScript.Run(ctx, s.rdb,
		[]string{k.ZoneOpen(object, region), k.TrackZones(track), entrySrc, z.EntryFrame, exitSrc, z.ExitFrame},
		entry, b, ttl.Milliseconds(), flag(entrySrc), flag(exitSrc)).Int()
	if err != nil {
		return false, fmt.Errorf("zone appearance %s: %w", track, err)
	}
	return n == 1, nil
}

// ZoneAppearances returns a track's zone visits in order.
func (s *Store) ZoneAppearances(ctx context.Context, track string) ([]ZoneAppearance, error) {
	vals, err := s.rdb.LRange(ctx, s.keys.TrackZones(track), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("zones of %s: %w", track, err)
	}
	out := make([]ZoneAppearance, 0, len(vals))
	for _, v := range vals {
		var z ZoneAppearance
		if err := json.Unmarshal([]byte(v), &z); err == nil {
			out = append(out, z)
		}
	}
	return out, nil
}
