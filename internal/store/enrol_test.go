package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// fixedIDs hands out the given ids in order, then fails.
func fixedIDs(ids ...string) func() (string, error) {
	return func() (string, error) {
		if len(ids) == 0 {
			return "", errors.New("no more ids")
		}
		id := ids[0]
		ids = ids[1:]
		return id, nil
	}
}

func twoRefs(id string) POI {
	return POI{ID: id, Severity: "high", Notes: "n", Status: "active", Model: "m", CreatedAt: time.Now(),
		Refs: []Ref{{EmbeddingID: EmbeddingID(id, 1), Vector: []float32{1, 0}}, {EmbeddingID: EmbeddingID(id, 2), Vector: []float32{0, 1}}}}
}

// TestEnrolWithTakesTheNextIDOnACollision is the pure part: a taken id is
// never written over, the next id is tried with the references renamed,
// and an id generator that only repeats taken ids ends in ErrExists.
func TestEnrolWithTakesTheNextIDOnACollision(t *testing.T) {
	taken := map[string]POI{"poi-00000000000000aa": {ID: "poi-00000000000000aa", Notes: "first"}}
	create := func(p POI) error {
		if _, ok := taken[p.ID]; ok {
			return ErrExists
		}
		taken[p.ID] = p
		return nil
	}
	got, err := enrolWith(twoRefs("poi-00000000000000aa"), fixedIDs("poi-00000000000000aa", "poi-00000000000000bb"), create)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "poi-00000000000000bb" || got.Refs[0].EmbeddingID != "emb-00000000000000bb-1" || got.Refs[1].EmbeddingID != "emb-00000000000000bb-2" {
		t.Fatalf("enrolled as %+v", got)
	}
	if taken["poi-00000000000000aa"].Notes != "first" {
		t.Fatalf("the first POI was overwritten: %+v", taken["poi-00000000000000aa"])
	}
	_, err = enrolWith(twoRefs("x"), fixedIDs("poi-00000000000000aa", "poi-00000000000000bb", "poi-00000000000000aa"), create)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("only taken ids: %v, want ErrExists", err)
	}
}

// TestCreatePOIIsCreateIfAbsent: against Redis, a second POI under a taken
// id writes nothing (not its metadata, vectors or photos), EnrolPOI puts it
// under the next id instead, and an erased id is never given out again.
func TestCreatePOIIsCreateIfAbsent(t *testing.T) {
	s := open(t, "c:")
	ctx := context.Background()
	const id = "poi-00000000000000aa"
	first := twoRefs(id)
	if err := s.CreatePOI(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := twoRefs(id)
	second.Notes, second.Severity = "second", "low"
	second.Refs = []Ref{{EmbeddingID: EmbeddingID(id, 1), Vector: []float32{0.6, 0.8}, Photo: []byte{0xff, 0xd8, 1}}}
	if err := s.CreatePOI(ctx, second); !errors.Is(err, ErrExists) {
		t.Fatalf("create over a taken id: %v, want ErrExists", err)
	}
	got, err := s.GetPOI(ctx, id)
	if err != nil || got.Notes != "n" || got.Severity != "high" || len(got.Refs) != 2 || got.Refs[0].Vector[0] != 1 {
		t.Fatalf("the first POI changed: %+v %v", got, err)
	}
	if ok, _ := s.Exists(ctx, s.keys.POIPhoto(id, EmbeddingID(id, 1))); ok {
		t.Fatal("the colliding POI's photo was written")
	}
	stored, err := s.EnrolPOI(ctx, second, fixedIDs(id, "poi-00000000000000bb"))
	if err != nil || stored.ID != "poi-00000000000000bb" {
		t.Fatalf("enrol after a collision: %+v %v", stored, err)
	}
	if got, err := s.GetPOI(ctx, stored.ID); err != nil || got.Notes != "second" || got.Refs[0].EmbeddingID != "emb-00000000000000bb-1" {
		t.Fatalf("the second POI: %+v %v", got, err)
	}
	pending, err := s.PendingEnrolments(ctx)
	if err != nil || strings.Join(pending, ",") != id+",poi-00000000000000bb" {
		t.Fatalf("outbox %v %v, want both POIs", pending, err)
	}
	// Erased: the id stays taken while the tombstone lives.
	if st, err := s.BeginErase(ctx, id, time.Hour); st != EraseBegun || err != nil {
		t.Fatalf("begin erase: %s %v", st, err)
	}
	if err := s.CreatePOI(ctx, twoRefs(id)); !errors.Is(err, ErrExists) {
		t.Fatalf("create over an erased id: %v, want ErrExists", err)
	}
	if pending, _ := s.PendingEnrolments(ctx); strings.Join(pending, ",") != "poi-00000000000000bb" {
		t.Fatalf("outbox after erasing %s: %v", id, pending)
	}
}

func TestNewPOIIDHas64RandomBits(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id, err := NewPOIID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != len("poi-")+16 || !IsPOIID(id) || seen[id] {
			t.Fatalf("id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
	for _, bad := range []string{"poi-", "poi-0123456789abcde", "poi-0123456789ABCDEF", "poi-0123456789abcdef0", "emb-0123456789abcdef"} {
		if IsPOIID(bad) {
			t.Fatalf("%q taken for a POI id", bad)
		}
	}
	if !IsPOIID("poi-0000abcd") {
		t.Fatal("legacy 8-digit ids must still be readable and erasable")
	}
}

// TestKeysNamingMatchesWholeIDs: a legacy 8-digit id is a prefix of longer
// ids; their keys are not its keys.
func TestKeysNamingMatchesWholeIDs(t *testing.T) {
	for _, c := range []struct {
		key, id string
		want    bool
	}{
		{"p:poi:poi-0000abcd:refs", "poi-0000abcd", true},
		{"p:poi:poi-0000abcd", "poi-0000abcd", true},
		{"p:alert:alert-20260101-000000-poi-0000abcd-1a2b3c", "poi-0000abcd", true},
		{"p:poi:poi-0000abcd00000000:refs", "poi-0000abcd", false},
		{"p:poi:poi-0000abcd00000000:photo:emb-0000abcd00000000-1", "poi-0000abcd", false},
		{"p:poi:poi-0000abcd00000000:photo:emb-0000abcd-1", "poi-0000abcd", false},
		{"p:poi:poi-0000abcd00000000:photo:emb-0000abcd-1", "0000abcd", true},
	} {
		if got := namesWhole(c.key, c.id); got != c.want {
			t.Errorf("namesWhole(%q, %q) = %v, want %v", c.key, c.id, got, c.want)
		}
	}
}
