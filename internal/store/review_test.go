package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestNegativesExpireUnlessPinned: an unpinned negative lives for its TTL
// and takes the key's TTL with it; a pinned one keeps the key for good; a
// negative past its time is neither returned nor kept.
func TestNegativesExpireUnlessPinned(t *testing.T) {
	s := open(t, "t:")
	ctx := context.Background()
	now := time.Now()
	poi := "poi-00000000000000aa"
	if err := s.CreatePOI(ctx, POI{ID: poi, Status: StatusActive, CreatedAt: now, Refs: []Ref{{EmbeddingID: EmbeddingID(poi, 1), Vector: []float32{1, 0}}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddNegative(ctx, poi, "alert-1", []float32{0, 1}, time.Hour, false, now); err != nil {
		t.Fatal(err)
	}
	ttl, err := s.NegativesTTL(ctx, poi)
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("unpinned negative: key TTL %v %v, want about an hour", ttl, err)
	}
	if negs, _ := s.Negatives(ctx, poi, now.Add(2*time.Hour)); len(negs) != 0 {
		t.Fatalf("an expired negative is returned: %+v", negs)
	}
	if err := s.AddNegative(ctx, poi, "alert-2", []float32{0.6, 0.8}, time.Hour, true, now); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := s.NegativesTTL(ctx, poi); ttl != -1 {
		t.Fatalf("with a pinned negative the key has TTL %v, want none", ttl)
	}
	// Two hours on, a write drops the expired entry and keeps the pinned.
	if err := s.AddNegative(ctx, poi, "alert-3", []float32{0.8, 0.6}, time.Hour, false, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	m, err := s.rdb.HGetAll(ctx, s.keys.POINegatives(poi)).Result()
	if _, stale := m["alert-1"]; err != nil || stale || len(m) != 2 {
		t.Fatalf("negatives after expiry: %v %v", keysOfMap(m), err)
	}
	negs, err := s.Negatives(ctx, poi, now.Add(2*time.Hour))
	if err != nil || len(negs) != 2 {
		t.Fatalf("negatives: %+v %v", negs, err)
	}
	for _, n := range negs {
		if n.AlertID == "alert-2" && (!n.Expires.IsZero() || n.Vector[1] != 0.8) {
			t.Fatalf("pinned negative %+v", n)
		}
	}
	// An erased POI takes none.
	if _, err := s.BeginErase(ctx, poi, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.AddNegative(ctx, poi, "alert-4", []float32{1, 0}, time.Hour, false, now); !errors.Is(err, ErrErased) {
		t.Fatalf("negative of an erased POI: %v", err)
	}
}

func keysOfMap(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestReferencesAddedAndRemoved: photo and learned references are capped
// apart, numbered after every earlier one, and the last cannot go.
func TestReferencesAddedAndRemoved(t *testing.T) {
	s := open(t, "t:")
	ctx := context.Background()
	poi := "poi-00000000000000bb"
	if err := s.CreatePOI(ctx, POI{ID: poi, Status: StatusActive, CreatedAt: time.Now(), Refs: []Ref{{EmbeddingID: EmbeddingID(poi, 1), Vector: []float32{1, 0}}}}); err != nil {
		t.Fatal(err)
	}
	p, ids, err := s.AddRefs(ctx, poi, []Ref{{Vector: []float32{0, 1}, Photo: []byte("jpeg")}}, false, 2)
	if err != nil || len(ids) != 1 || ids[0] != EmbeddingID(poi, 2) || len(p.Refs) != 2 || p.RefsVersion != 1 {
		t.Fatalf("add photo: %v %+v %v", ids, p, err)
	}
	if _, _, err := s.AddRefs(ctx, poi, []Ref{{Vector: []float32{0, 1}}}, false, 2); !errors.Is(err, ErrTooMany) {
		t.Fatalf("a third photo over a cap of 2: %v", err)
	}
	_, ids, err = s.AddRefs(ctx, poi, []Ref{{Vector: []float32{0.6, 0.8}}}, true, 1)
	if err != nil || !strings.HasSuffix(ids[0], "-s3") {
		t.Fatalf("learned reference: %v %v", ids, err)
	}
	if n, _ := s.PendingEnrolments(ctx); len(n) != 1 || n[0] != poi {
		t.Fatalf("outbox %v, want the changed POI", n)
	}
	if _, err := s.RemoveRef(ctx, poi, EmbeddingID(poi, 2)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(ctx, s.keys.POIPhoto(poi, EmbeddingID(poi, 2))); ok {
		t.Fatal("the removed reference's photo is still stored")
	}
	// Numbers are never given out twice, even after a removal.
	_, ids, _ = s.AddRefs(ctx, poi, []Ref{{Vector: []float32{0, 1}}}, false, 2)
	if len(ids) != 1 || ids[0] != EmbeddingID(poi, 4) {
		t.Fatalf("after a removal: %v", ids)
	}
	if _, err := s.RemoveRef(ctx, poi, ids[0]); err != nil {
		t.Fatal(err)
	}
	p, _ = s.GetPOI(ctx, poi)
	if len(p.Refs) != 2 {
		t.Fatalf("refs %+v", p.Refs)
	}
	if _, err := s.RemoveRef(ctx, poi, EmbeddingID(poi, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveRef(ctx, poi, p.Refs[1].EmbeddingID); !errors.Is(err, ErrLastReference) {
		t.Fatalf("removing the last reference: %v", err)
	}
	if _, err := s.RemoveRef(ctx, poi, "emb-nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing an unknown reference: %v", err)
	}
}
