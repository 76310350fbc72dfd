package store

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rawClient reads TTLs and sets directly (what the store does not expose).
func rawClient(t *testing.T, s *Store) *redis.Client { t.Helper(); return s.rdb }

// A POI's appearances older than the retention before its newest are
// trimmed from its set at each write, not kept forever by a set whose TTL
// every new appearance renews.
func TestAppearancesTrimmedToRetention(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	rdb := rawClient(t, s)
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	ret := 24 * time.Hour
	for i, at := range []time.Time{t0, t0.Add(2 * time.Hour), t0.Add(25 * time.Hour), t0.Add(26*time.Hour + time.Minute)} {
		a := Appearance{TrackID: "cam:c:" + string(rune('1'+i)), Similarity: 0.8, BestTime: at}
		if err := s.RecordAppearance(ctx, "poi-00000001", a, ret); err != nil {
			t.Fatal(err)
		}
	}
	// The newest is t0+26h01m: everything before t0+2h01m is gone.
	got, err := rdb.ZRange(ctx, s.keys.POIAppearances("poi-00000001"), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "cam:c:3" || got[1] != "cam:c:4" {
		t.Fatalf("appearances %v, want cam:c:3 and cam:c:4", got)
	}
	apps, err := s.Appearances(ctx, "poi-00000001")
	if err != nil || len(apps) != 2 {
		t.Fatalf("Appearances: %v %v", apps, err)
	}
}

// Tracks are written with the unmatched retention; a match extends the
// track's record, thumbnail and frames to the full retention, and later
// writes of the track (the tracker does not know about the match) do not
// shorten them again. A track that never matched keeps the short TTL.
func TestUnmatchedRetention(t *testing.T) {
	ctx := context.Background()
	s := open(t, "")
	rdb := rawClient(t, s)
	k := s.keys
	unmatched, full := time.Hour, 168*time.Hour
	jpeg := []byte{0xFF, 0xD8, 0xFF, 0xD9}
	now := time.Now().UTC()
	track := func(id string, exited bool) TrackUpdate {
		tr := Track{ID: id, CameraID: "c", Entry: now, LastSeen: now}
		if exited {
			tr.Exit = now
		}
		return TrackUpdate{Track: tr, EntryFrame: jpeg, LastFrame: jpeg, Thumb: jpeg, Exited: exited}
	}
	commit := func(version int64, updates ...TrackUpdate) {
		t.Helper()
		samples := []Sample{{ID: version + 100, TrackID: updates[0].Track.ID, CameraID: "c", Time: now}}
		if err := s.CommitTracking(ctx, "c", version, []byte(`{}`), updates, samples, unmatched); err != nil {
			t.Fatal(err)
		}
	}
	keysOf := func(id string) []string {
		return []string{k.Track(id), k.Thumbnail(id), k.TrackFrame(id, "entry"), k.TrackFrame(id, "last")}
	}
	ttlOf := func(key string) time.Duration {
		t.Helper()
		d, err := rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	commit(0, track("cam:c:1", false), track("cam:c:2", false))
	for _, key := range append(keysOf("cam:c:1"), append(keysOf("cam:c:2"), k.Detection("100"), k.TrackerState("c"))...) {
		if d := ttlOf(key); d <= 0 || d > unmatched {
			t.Fatalf("%s: TTL %v, want the unmatched retention %v", key, d, unmatched)
		}
	}
	if err := s.RecordAppearance(ctx, "poi-00000001", Appearance{TrackID: "cam:c:1", Similarity: 0.9, BestTime: now}, full); err != nil {
		t.Fatal(err)
	}
	// Both tracks go on and exit; only the matched one keeps its long TTL.
	commit(1, track("cam:c:1", true), track("cam:c:2", true))
	for _, key := range append(keysOf("cam:c:1"), k.TrackExitFrame("cam:c:1")) {
		if d := ttlOf(key); d <= full-time.Minute || d > full {
			t.Errorf("matched %s: TTL %v, want the full retention %v", key, d, full)
		}
	}
	for _, key := range append(keysOf("cam:c:2"), k.TrackExitFrame("cam:c:2")) {
		if d := ttlOf(key); d <= 0 || d > unmatched {
			t.Errorf("unmatched %s: TTL %v, want at most %v", key, d, unmatched)
		}
	}
}
