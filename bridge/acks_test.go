package bridge

import (
	"slices"
	"testing"
)

func TestAckOrderReleasesOnlyAnUnbrokenPrefix(t *testing.T) {
	a := newAckOrder[string](3)
	s0, _ := a.admit("m0")
	s1, _ := a.admit("m1")
	s2, _ := a.admit("m2")
	if _, ok := a.admit("m3"); ok {
		t.Fatal("a fourth message was admitted past the limit of 3")
	}
	if got := a.finish(s2); got != nil {
		t.Fatalf("m2 stored before m0 and m1: released %v, want nothing", got)
	}
	if got := a.finish(s1); got != nil {
		t.Fatalf("m1 stored before m0: released %v, want nothing", got)
	}
	if got := a.finish(s0); !slices.Equal(got, []string{"m0", "m1", "m2"}) {
		t.Fatalf("m0 stored last: released %v, want m0 m1 m2 in order", got)
	}
	if a.pending() != 0 {
		t.Fatalf("pending %d after every release, want 0", a.pending())
	}
	s3, ok := a.admit("m3")
	if !ok {
		t.Fatal("no room after the releases")
	}
	if got := a.finish(s3); !slices.Equal(got, []string{"m3"}) {
		t.Fatalf("released %v, want m3", got)
	}
	if got := a.finish(s3); got != nil {
		t.Fatalf("a second finish of m3 released %v", got)
	}
	if got := a.finish(99); got != nil {
		t.Fatalf("an unknown sequence released %v", got)
	}
}

// A message that is never stored (JetStream down) holds back every later
// acknowledgement, whatever finished after it.
func TestAckOrderHoldsEverythingBehindAnUnstoredMessage(t *testing.T) {
	a := newAckOrder[int](100)
	var seqs []uint64
	for i := range 50 {
		s, _ := a.admit(i)
		seqs = append(seqs, s)
	}
	var released []int
	for _, s := range seqs[1:] {
		released = append(released, a.finish(s)...)
	}
	if len(released) != 0 || a.pending() != 50 {
		t.Fatalf("released %v with message 0 unstored; pending %d", released, a.pending())
	}
	released = a.finish(seqs[0])
	want := make([]int, 50)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(released, want) {
		t.Fatalf("released %v, want 0..49 in order", released)
	}
}
