package partition

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestAssignSplitsEvenlyAndAgrees(t *testing.T) {
	members := []string{"w-b", "w-a", "w-c"}
	seen := map[int]string{}
	for _, m := range members {
		for _, p := range Assign(members, 16, m) {
			if prev, ok := seen[p]; ok {
				t.Fatalf("partition %d given to %s and %s", p, prev, m)
			}
			seen[p] = m
		}
		if n := len(Assign(members, 16, m)); n < 5 || n > 6 {
			t.Errorf("%s owns %d of 16 partitions among 3 members", m, n)
		}
	}
	if len(seen) != 16 {
		t.Fatalf("%d of 16 partitions assigned", len(seen))
	}
	// Every process computes the same split whatever order it read.
	if !slices.Equal(Assign([]string{"w-c", "w-a", "w-b", "w-a"}, 16, "w-b"), Assign(members, 16, "w-b")) {
		t.Fatal("the split depends on the order of the list")
	}
	if Assign(members, 16, "stranger") != nil {
		t.Fatal("a process outside the list owns partitions")
	}
	if got := Assign([]string{"only"}, 4, "only"); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("a lone member owns %v", got)
	}
}

func TestKeySafe(t *testing.T) {
	if got := keySafe("host.name-1/x y"); got != "host_name-1_x_y" {
		t.Fatalf("keySafe = %q", got)
	}
}

// fakeMsg is a message that knows only its stream sequence.
type fakeMsg struct {
	jetstream.Msg
	seq uint64
}

func (m fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}

func seqs(msgs []jetstream.Msg) []uint64 {
	var out []uint64
	for _, m := range msgs {
		out = append(out, seqOf(m))
	}
	return out
}

func msgsOf(s ...uint64) []jetstream.Msg {
	var out []jetstream.Msg
	for _, q := range s {
		out = append(out, fakeMsg{seq: q})
	}
	return out
}

// TestGateReleasesEverythingInOrderOnceTheOldDeliveriesAreBack: old
// deliveries return over several fetches and out of order; none goes
// through before the last one is back, then all go in stream order.
func TestGateReleasesEverythingInOrderOnceTheOldDeliveriesAreBack(t *testing.T) {
	now := time.Now()
	g := &gate{upTo: 20, remaining: 3, until: now.Add(time.Minute), quiet: time.Minute}
	if got := g.admit(msgsOf(25, 30), now); len(got) != 0 {
		t.Fatalf("let %v through before the old deliveries", seqs(got))
	}
	// Two of the three old ones, the later first: both wait for the third,
	// which is earlier than one of them.
	if got := g.admit(msgsOf(18, 31), now); len(got) != 0 {
		t.Fatalf("let %v through with an old delivery still out", seqs(got))
	}
	if got := g.admit(msgsOf(18, 12), now); len(got) != 0 { // 18 again: counted once
		t.Fatalf("let %v through with an old delivery still out", seqs(got))
	}
	if got := seqs(g.admit(msgsOf(15), now)); !slices.Equal(got, []uint64{12, 15, 18, 25, 30, 31}) {
		t.Fatalf("got %v, want [12 15 18 25 30 31]", got)
	}
	if got := seqs(g.admit(msgsOf(40), now)); !slices.Equal(got, []uint64{40}) {
		t.Fatalf("got %v after the gate opened", got)
	}
}

func TestGateOpensAtItsDeadline(t *testing.T) {
	now := time.Now()
	g := &gate{upTo: 20, remaining: 3, until: now.Add(time.Second), quiet: time.Second, hardUntil: now.Add(time.Minute)}
	g.admit(msgsOf(22, 21), now)
	// An old message moves the deadline: the partition is still catching up.
	if got := g.admit(msgsOf(5), now.Add(900*time.Millisecond)); len(got) != 0 {
		t.Fatalf("got %v with old deliveries still out", seqs(got))
	}
	if got := seqs(g.admit(nil, now.Add(1500*time.Millisecond))); len(got) != 0 {
		t.Fatalf("the gate opened %v while old messages were still coming", got)
	}
	if got := seqs(g.admit(nil, now.Add(2*time.Second))); !slices.Equal(got, []uint64{5, 21, 22}) {
		t.Fatalf("got %v after a quiet second, want [5 21 22]", got)
	}
	var zero gate
	if got := seqs(zero.admit(msgsOf(3, 1), now)); !slices.Equal(got, []uint64{3, 1}) {
		t.Fatalf("the zero gate reordered or held: %v", got)
	}
}

// TestGateStaysShutWhileAnotherOwnerHoldsOldDeliveries: a previous owner
// still alive and working on the old messages keeps the gate shut past its
// quiet time; the gate opens when the ack floor passes them, when every
// unacknowledged delivery is in the gate, or at the hard bound.
func TestGateStaysShutWhileAnotherOwnerHoldsOldDeliveries(t *testing.T) {
	now := time.Now()
	fresh := func() *gate {
		return &gate{upTo: 20, remaining: 2, until: now.Add(time.Second), quiet: time.Second, hardUntil: now.Add(time.Minute)}
	}
	g := fresh()
	g.admit(msgsOf(25), now)
	g.observe(10, 3) // 3 unacknowledged, the gate holds 1: 2 are elsewhere
	if got := g.admit(nil, now.Add(5*time.Second)); len(got) != 0 {
		t.Fatalf("the gate opened %v past its quiet time while old deliveries were held elsewhere", seqs(got))
	}
	g.observe(20, 1) // the other owner acknowledged them
	if got := seqs(g.admit(nil, now.Add(6*time.Second))); !slices.Equal(got, []uint64{25}) {
		t.Fatalf("got %v once the ack floor passed the old deliveries, want [25]", got)
	}

	h := fresh()
	h.admit(msgsOf(30, 7), now)
	h.observe(5, 2) // everything unacknowledged is in the gate: nothing more will come
	if got := seqs(h.admit(nil, now)); !slices.Equal(got, []uint64{7, 30}) {
		t.Fatalf("got %v with nothing outstanding, want [7 30]", got)
	}

	k := fresh()
	k.admit(msgsOf(40), now)
	k.observe(10, 5)
	if got := k.admit(nil, now.Add(30*time.Second)); len(got) != 0 {
		t.Fatalf("got %v before the hard bound", seqs(got))
	}
	if got := seqs(k.admit(nil, now.Add(61*time.Second))); !slices.Equal(got, []uint64{40}) {
		t.Fatalf("got %v past the hard bound, want [40]", got)
	}
}

// TestGateAwaitsWhatWasGivenBack: messages given back for a redelivery
// after a backoff return after newer ones were delivered; the newer wait
// for them, even when they had passed an earlier gate.
func TestGateAwaitsWhatWasGivenBack(t *testing.T) {
	now := time.Now()
	g := &gate{quiet: time.Second, hardSpan: time.Minute}
	if got := seqs(g.admit(msgsOf(10, 11, 12), now)); !slices.Equal(got, []uint64{10, 11, 12}) {
		t.Fatalf("open gate: %v", got)
	}
	g.await(msgsOf(11, 12), now.Add(2*time.Second)) // 10 handled, 11 and 12 given back
	if got := g.admit(msgsOf(13, 14), now); len(got) != 0 {
		t.Fatalf("%v overtook the messages given back", seqs(got))
	}
	if got := g.admit(msgsOf(12), now.Add(2*time.Second)); len(got) != 0 {
		t.Fatalf("%v went through with 11 still to come back", seqs(got))
	}
	if got := seqs(g.admit(msgsOf(11), now.Add(2*time.Second))); !slices.Equal(got, []uint64{11, 12, 13, 14}) {
		t.Fatalf("got %v, want [11 12 13 14]", got)
	}

	// A message that came back through a takeover gate and was given back
	// again is counted again.
	h := &gate{upTo: 5, remaining: 1, quiet: time.Second, hardSpan: time.Minute, until: now.Add(time.Minute)}
	if got := seqs(h.admit(msgsOf(5), now)); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("got %v", got)
	}
	h.await(msgsOf(5), now)
	if got := h.admit(msgsOf(6), now); len(got) != 0 {
		t.Fatalf("%v overtook 5, given back", seqs(got))
	}
	if got := seqs(h.admit(msgsOf(5), now)); !slices.Equal(got, []uint64{5, 6}) {
		t.Fatalf("got %v, want [5 6]", got)
	}
}

// pinnedMsg is a message delivered under a pin.
type pinnedMsg struct {
	jetstream.Msg
	pin string
}

func (m pinnedMsg) Headers() nats.Header { return nats.Header{pinHeader: []string{m.pin}} }

// TestPinWatchNoticesANewPin: the first pin a runner sees is its takeover's
// (no change); a message under another pin is one, and the watch then
// follows the new pin.
func TestPinWatchNoticesANewPin(t *testing.T) {
	w := &pinWatch{}
	for _, step := range []struct {
		pins []string
		want bool
	}{
		{[]string{"a", "a"}, false},
		{[]string{"a"}, false},
		{[]string{"a", "b"}, true},
		{[]string{"b", "b"}, false},
		{[]string{"c"}, true},
	} {
		var msgs []jetstream.Msg
		for _, p := range step.pins {
			msgs = append(msgs, pinnedMsg{pin: p})
		}
		if got := w.changed(msgs); got != step.want {
			t.Errorf("pins %v after %q: changed %v, want %v", step.pins, w.last, got, step.want)
		}
	}
}
