package camgate

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	reason := func(r *Rejected) string {
		if r == nil {
			return ""
		}
		return r.Reason
	}

	// Configured ids only.
	g := New(Config{Known: []string{"door"}, MaxUnknown: 2, IdleTTL: time.Hour})
	if r, _ := g.Admit(ctx, "door", t0); r != nil {
		t.Fatalf("configured camera refused: %v", r)
	}
	if r, _ := g.Admit(ctx, "intruder", t0); reason(r) != ReasonUnknown {
		t.Fatalf("unknown camera: %v", r)
	}

	// SceneScape's list, asked once per refresh period however many
	// unknown ids arrive, and again after it.
	asked := 0
	listed := []string{"ss-1"}
	var fail error
	g = New(Config{List: func(context.Context) ([]string, error) { asked++; return listed, fail }, Refresh: time.Minute, MaxUnknown: 1, IdleTTL: time.Hour})
	if r, _ := g.Admit(ctx, "ss-1", t0); r != nil {
		t.Fatalf("listed camera refused: %v", r)
	}
	for i := range 100 {
		if r, _ := g.Admit(ctx, "ss-2", t0.Add(time.Duration(i)*time.Millisecond)); reason(r) != ReasonUnknown {
			t.Fatalf("unlisted camera: %v", r)
		}
	}
	if asked != 1 {
		t.Fatalf("SceneScape asked %d times within a refresh period", asked)
	}
	listed = []string{"ss-1", "ss-2"}
	if r, _ := g.Admit(ctx, "ss-2", t0.Add(time.Minute)); r != nil || asked != 2 {
		t.Fatalf("camera added to SceneScape: %v after %d requests", r, asked)
	}
	fail = errors.New("down")
	if r, err := g.Admit(ctx, "ss-3", t0.Add(3*time.Minute)); reason(r) != ReasonUnknown || err == nil {
		t.Fatalf("SceneScape down: %v, %v", r, err)
	}

	// Unknown ids up to the cap; a place frees after the idle TTL.
	g = New(Config{AllowUnknown: true, MaxUnknown: 3, IdleTTL: time.Hour})
	for _, id := range []string{"a", "b", "c"} {
		if r, _ := g.Admit(ctx, id, t0); r != nil {
			t.Fatalf("%s: %v", id, r)
		}
	}
	if r, _ := g.Admit(ctx, "d", t0); reason(r) != ReasonCap {
		t.Fatalf("over the cap: %v", r)
	}
	if r, _ := g.Admit(ctx, "a", t0.Add(59*time.Minute)); r != nil {
		t.Fatalf("an admitted id stays admitted: %v", r)
	}
	if r, _ := g.Admit(ctx, "d", t0.Add(61*time.Minute)); r != nil {
		t.Fatalf("after b and c went idle: %v", r)
	}
	if n := g.Tracked(); n != 2 {
		t.Fatalf("tracked %d, want 2 (a, d)", n)
	}
	if n := g.Cap(); n != 3 {
		t.Fatalf("cap %d", n)
	}
}
