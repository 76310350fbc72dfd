package partition

import (
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// gate restores a partition's order after taking it over from an owner that
// held deliveries. Those messages (stream sequences up to upTo, remaining of
// them) come back as redeliveries, and not in their order: the previous
// owner kept them in progress on more than one clock, so their ack waits end
// at different times and they return over several fetches. The gate holds
// every message, old and newer, unacknowledged and kept in progress, and
// lets them through together in stream order once the old ones are all
// back; applying an old message as soon as it returned would let a later old
// one overtake an earlier one that comes in the next fetch, and the earlier
// would then look already applied.
//
// The gate also opens when the consumer shows nothing is out there any more
// (observe: the ack floor passed upTo, or every unacknowledged delivery is in
// the gate), or when no old message has come for a while and none is known
// to be outstanding (dead letters, deleted messages). While a previous owner
// that is alive still works on old messages (it lost the partition under
// load and finishes the batch in its hands), they are outstanding and the
// gate stays shut, up to hardUntil. The zero gate lets everything through.
type gate struct {
	upTo      uint64
	remaining int
	until     time.Time
	quiet     time.Duration
	// outstanding: deliveries up to upTo are unacknowledged and not in the
	// gate (observe sets it from the consumer's state).
	outstanding bool
	hardUntil   time.Time
	old, held   []jetstream.Msg
	// seen are the old sequences in the gate: a message redelivered twice
	// while it waited counts once.
	seen map[uint64]bool
}

// admit takes msgs into the gate and returns, in stream order, the messages
// that may be handled now.
func (g *gate) admit(msgs []jetstream.Msg, now time.Time) []jetstream.Msg {
	if !g.shut() {
		return msgs
	}
	if g.seen == nil {
		g.seen = map[uint64]bool{}
	}
	for _, m := range msgs {
		seq := seqOf(m)
		if seq > g.upTo {
			g.held = append(g.held, m)
			continue
		}
		g.until = now.Add(g.quiet)
		if g.seen[seq] {
			continue // the copy already held stands for it
		}
		g.seen[seq] = true
		g.remaining--
		g.old = append(g.old, m)
	}
	if g.remaining > 0 && !(now.After(g.until) && (!g.outstanding || now.After(g.hardUntil))) {
		return nil
	}
	out := append(g.old, g.held...)
	sortBySeq(out)
	g.old, g.held, g.remaining = nil, nil, 0
	return out
}

// shut reports whether the gate still holds messages back.
func (g *gate) shut() bool { return g.remaining > 0 || len(g.old) > 0 || len(g.held) > 0 }

// inHand is what the gate holds, to be kept in progress.
func (g *gate) inHand() []jetstream.Msg { return append(slices.Clone(g.old), g.held...) }

// observe updates the gate from the partition consumer's state: its ack
// floor (every sequence up to it is acknowledged) and how many deliveries
// are unacknowledged, read when this owner holds nothing but the gate's
// messages. Once the floor reaches upTo, every old delivery is settled; once
// every unacknowledged delivery is in the gate, no more will come. Either
// way the gate may open.
func (g *gate) observe(ackFloor uint64, ackPending int) {
	if !g.shut() {
		return
	}
	if ackFloor >= g.upTo || ackPending <= len(g.old)+len(g.held) {
		g.remaining = 0
		return
	}
	g.outstanding = true
}

func seqOf(m jetstream.Msg) uint64 {
	meta, err := m.Metadata()
	if err != nil {
		return 0
	}
	return meta.Sequence.Stream
}

func sortBySeq(msgs []jetstream.Msg) {
	slices.SortStableFunc(msgs, func(a, b jetstream.Msg) int {
		sa, sb := seqOf(a), seqOf(b)
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
}
