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
	// hardSpan is how long after its last cause the gate gives up waiting.
	hardSpan  time.Duration
	old, held []jetstream.Msg
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

// await makes the gate wait for msgs, given back to JetStream for
// redelivery after a backoff ending at due, before it lets anything newer
// through: JetStream delivers newer messages meanwhile.
func (g *gate) await(msgs []jetstream.Msg, due time.Time) {
	if g.seen == nil {
		g.seen = map[uint64]bool{}
	}
	for _, m := range msgs {
		seq := seqOf(m)
		g.upTo = max(g.upTo, seq)
		delete(g.seen, seq) // it comes back and must be counted again
		g.remaining++
	}
	g.until = laterOf(g.until, due.Add(g.quiet))
	g.hardUntil = laterOf(g.hardUntil, due.Add(g.hardSpan))
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
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

// pinWatch notices that a partition's pin changed between the messages one
// runner received: each message delivered to a pinned client carries the
// pin's id, and a new id means the pin was given anew, possibly to another
// process in between.
type pinWatch struct{ last string }

// changed reports whether msgs carry another pin than the messages before
// them (the first pin seen is no change: the takeover's settle covered it).
func (w *pinWatch) changed(msgs []jetstream.Msg) bool {
	moved := false
	for _, m := range msgs {
		id := m.Headers().Get(pinHeader)
		if id == "" {
			continue
		}
		if w.last != "" && id != w.last {
			moved = true
		}
		w.last = id
	}
	return moved
}

// pinHeader is the header in which JetStream gives the pin's id.
const pinHeader = "Nats-Pin-Id"
