package partition

import (
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// gate restores a partition's order after taking it over from an owner that
// died holding deliveries. Those messages (stream sequences up to upTo,
// remaining of them) come back as redeliveries; anything newer that arrives
// first is held, unacknowledged and kept in progress, until they have all
// been let through, or until none has come for a while, in case some never
// return (dead letters, deleted messages). The wait is measured from the
// last old message let through, not from the takeover: a slow partition
// must not open the gate while its old messages are still coming. The zero
// gate lets everything through.
type gate struct {
	upTo      uint64
	remaining int
	until     time.Time
	quiet     time.Duration
	held      []jetstream.Msg
	// seen are the old sequences let through: a message redelivered twice
	// while it waited counts once.
	seen map[uint64]bool
}

// admit returns, in stream order, the messages that may be handled now.
func (g *gate) admit(msgs []jetstream.Msg, now time.Time) []jetstream.Msg {
	if g.remaining <= 0 && len(g.held) == 0 {
		return msgs
	}
	var ready []jetstream.Msg
	if g.seen == nil {
		g.seen = map[uint64]bool{}
	}
	for _, m := range msgs {
		if seq := seqOf(m); seq <= g.upTo {
			ready = append(ready, m)
			if !g.seen[seq] {
				g.seen[seq] = true
				g.remaining--
			}
			g.until = now.Add(g.quiet)
			continue
		}
		g.held = append(g.held, m)
	}
	sortBySeq(ready)
	if g.remaining <= 0 || now.After(g.until) {
		sortBySeq(g.held)
		ready = append(ready, g.held...)
		g.held, g.remaining = nil, 0
	}
	return ready
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
