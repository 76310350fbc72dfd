package store

import (
	"context"
	"testing"
	"time"

	"poi/internal/testenv"
)

func open(t *testing.T, prefix string) *Store {
	t.Helper()
	r := testenv.StartRedis(t)
	s, err := Open(r.URL(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFrameNamespaceGuard(t *testing.T) {
	for _, prefix := range []string{"", "site1:"} {
		k := NewKeys(prefix)
		for _, key := range []string{k.TrackFrame("cam:a:1", "entry"), k.TrackExitFrame("cam:a:1"), k.DetectionFrame("42"), k.ZoneFrame("cam:a:1", "aisle", time.Now(), "exit")} {
			if !k.IsFrameKey(key) {
				t.Errorf("prefix %q: %s not served", prefix, key)
			}
		}
		for _, key := range []string{k.POIIndex(), k.POI("poi-12345678"), k.TrackerState("cam"), k.Alert("alert-1"), k.Thumbnail("cam:a:1"),
			prefix + "track:frame:", "other:" + k.TrackFrame("x", "entry"), "track:frame:x"} {
			if key == "track:frame:x" && prefix == "" {
				continue // unprefixed: this one is a frame key
			}
			if k.IsFrameKey(key) {
				t.Errorf("prefix %q: %s would be served", prefix, key)
			}
		}
	}
}

func TestAlertClaimsDedupCooldownAndReplay(t *testing.T) {
	s := open(t, "")
	ctx := context.Background()
	day, cool := 24*time.Hour, time.Minute
	claim := func(id, track, poi, cam string) (string, int64) {
		out, prev, err := s.ClaimAlert(ctx, id, track, poi, cam, day, cool)
		if err != nil {
			t.Fatal(err)
		}
		return out, prev
	}
	if out, prev := claim("a1", "t1", "poi-1", "c1"); out != ClaimNew || prev != 0 {
		t.Fatalf("first claim: %s %d", out, prev)
	}
	if out, prev := claim("a1", "t1", "poi-1", "c1"); out != ClaimReplay || prev != 0 {
		t.Fatalf("replay: %s %d", out, prev)
	}
	if out, _ := claim("a2", "t1", "poi-1", "c1"); out != ClaimDup {
		t.Fatalf("same track: %s", out)
	}
	if out, _ := claim("a3", "t2", "poi-1", "c1"); out != ClaimCooldown {
		t.Fatalf("same camera within cooldown: %s", out)
	}
	if out, prev := claim("a4", "t3", "poi-1", "c2"); out != ClaimNew || prev != 1 {
		t.Fatalf("other camera: %s %d", out, prev)
	}
	for _, id := range []string{"alert-1", "alert-2"} {
		for range 2 { // the second store of the same alert is a no-op
			if _, err := s.StoreAlert(ctx, id, "poi-1", []byte(`{"alert_id":"`+id+`","poi_id":"poi-1"}`), nil, day); err != nil {
				t.Fatal(err)
			}
		}
	}
	recent, _ := s.RecentAlerts(ctx, 50)
	if len(recent) != 2 || string(recent[0]) != `{"alert_id":"alert-2","poi_id":"poi-1"}` {
		t.Fatalf("recent %s", recent)
	}
	n, err := s.DeleteAlerts(ctx)
	if err != nil || n != 2 {
		t.Fatalf("deleted %d, %v", n, err)
	}
	if recent, _ := s.RecentAlerts(ctx, 50); len(recent) != 0 {
		t.Fatalf("recent after delete: %s", recent)
	}
}

func TestDeletePOILeavesNoKeyNamingIt(t *testing.T) {
	s := open(t, "x:")
	ctx := context.Background()
	p := POI{ID: "poi-0000abcd", Severity: "low", Status: "active", Model: "m", CreatedAt: time.Now(),
		Refs: []Ref{{EmbeddingID: "emb-0000abcd-1", Vector: []float32{1, 0}, Photo: []byte{0xff, 0xd8}}}}
	if err := s.CreatePOI(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ClaimAlert(ctx, "alert-20260101-000000-poi-0000abcd-1", "cam:c:1", p.ID, "c", time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	s.StoreAlert(ctx, "alert-20260101-000000-poi-0000abcd-1", p.ID, []byte(`{"poi_id":"poi-0000abcd"}`), nil, time.Hour)
	s.StoreAlert(ctx, "alert-20260101-000000-poi-0000ffff-1", "poi-0000ffff", []byte(`{"poi_id":"poi-0000ffff"}`), nil, time.Hour)
	s.RecordAppearance(ctx, p.ID, Appearance{TrackID: "cam:c:1", Similarity: 0.9, BestTime: time.Now()}, time.Hour)
	got, err := s.GetPOI(ctx, p.ID)
	if err != nil || len(got.Refs) != 1 || got.Refs[0].Vector[0] != 1 {
		t.Fatalf("get: %+v %v", got, err)
	}
	if st, err := s.BeginErase(ctx, p.ID, time.Hour); st != EraseBegun || err != nil {
		t.Fatalf("begin erase: %v %v", st, err)
	}
	if err := s.DeletePOIData(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.KeysNaming(ctx, "0000abcd"); len(keys) != 0 {
		t.Fatalf("keys left: %v", keys)
	}
	recent, _ := s.RecentAlerts(ctx, 10)
	if len(recent) != 1 || string(recent[0]) != `{"poi_id":"poi-0000ffff"}` {
		t.Fatalf("other POI's alert must stay: %s", recent)
	}
	if err := s.FinishErase(ctx, p.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.BeginErase(ctx, p.ID, time.Hour); st != ErasePurged {
		t.Fatalf("erased twice: %s", st)
	}
}

// TestCloseZoneClosesOnlyTheEntryItRead: an entry replaced since it was
// read (the object entered again) is left alone and nothing is written.
func TestCloseZoneClosesOnlyTheEntryItRead(t *testing.T) {
	s := open(t, "p:")
	ctx := context.Background()
	if err := s.OpenZone(ctx, "obj", "r", map[string]string{"visit": "1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	first, err := s.PendingZone(ctx, "obj", "r")
	if err != nil || first == nil {
		t.Fatalf("pending: %s %v", first, err)
	}
	if err := s.OpenZone(ctx, "obj", "r", map[string]string{"visit": "2"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	z := ZoneAppearance{Zone: "hall", Dwell: 1}
	if closed, err := s.CloseZone(ctx, "obj", "r", first, "cam:a:1", z, "", "", time.Hour); closed || err != nil {
		t.Fatalf("stale entry: closed %v, %v", closed, err)
	}
	if zs, _ := s.ZoneAppearances(ctx, "cam:a:1"); len(zs) != 0 {
		t.Fatalf("a stale close wrote %+v", zs)
	}
	second, _ := s.PendingZone(ctx, "obj", "r")
	if closed, err := s.CloseZone(ctx, "obj", "r", second, "cam:a:1", z, "", "", time.Hour); !closed || err != nil {
		t.Fatalf("current entry: closed %v, %v", closed, err)
	}
	if zs, _ := s.ZoneAppearances(ctx, "cam:a:1"); len(zs) != 1 || zs[0].EntryFrame != "" || zs[0].ExitFrame != "" {
		t.Fatalf("zone appearances %+v, want one without frames", zs)
	}
	if left, _ := s.PendingZone(ctx, "obj", "r"); left != nil {
		t.Fatalf("entry left after closing: %s", left)
	}
}
