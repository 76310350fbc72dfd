package partition

import (
	"slices"
	"testing"
	"time"

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

func TestGateHoldsNewerMessagesUntilTheOldOnesReturn(t *testing.T) {
	now := time.Now()
	g := &gate{upTo: 20, remaining: 3, until: now.Add(time.Minute)}
	// Newer messages first: held.
	if got := g.admit(msgsOf(25, 30), now); len(got) != 0 {
		t.Fatalf("let %v through before the old deliveries", seqs(got))
	}
	// Two of the three old ones: through, in order; the newer still held.
	if got := seqs(g.admit(msgsOf(18, 12, 31), now)); !slices.Equal(got, []uint64{12, 18}) {
		t.Fatalf("got %v, want [12 18]", got)
	}
	// The last old one releases everything, in stream order.
	if got := seqs(g.admit(msgsOf(15), now)); !slices.Equal(got, []uint64{15, 25, 30, 31}) {
		t.Fatalf("got %v, want [15 25 30 31]", got)
	}
	// Open from then on.
	if got := seqs(g.admit(msgsOf(40), now)); !slices.Equal(got, []uint64{40}) {
		t.Fatalf("got %v after the gate opened", got)
	}
}

func TestGateOpensAtItsDeadline(t *testing.T) {
	now := time.Now()
	g := &gate{upTo: 20, remaining: 3, until: now.Add(time.Second), quiet: time.Second}
	g.admit(msgsOf(22, 21), now)
	// An old message moves the deadline: the partition is still catching up.
	if got := seqs(g.admit(msgsOf(5), now.Add(900*time.Millisecond))); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("got %v, want the old [5] only", got)
	}
	if got := seqs(g.admit(nil, now.Add(1500*time.Millisecond))); len(got) != 0 {
		t.Fatalf("the gate opened %v while old messages were still coming", got)
	}
	if got := seqs(g.admit(nil, now.Add(2*time.Second))); !slices.Equal(got, []uint64{21, 22}) {
		t.Fatalf("got %v after a quiet second, want the held [21 22]", got)
	}
	var zero gate
	if got := seqs(zero.admit(msgsOf(3, 1), now)); !slices.Equal(got, []uint64{3, 1}) {
		t.Fatalf("the zero gate reordered or held: %v", got)
	}
}
