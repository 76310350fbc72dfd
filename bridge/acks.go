package bridge

// ackOrder is the pure core of the bridge's acknowledgements. MQTT 3.1.1
// (4.6) wants PUBACKs in the order the PUBLISHes arrived, while the
// messages of different cameras are stored in JetStream concurrently and
// finish in any order. ackOrder numbers messages as they are admitted and
// releases them for acknowledgement only as an unbroken prefix of finished
// ones, so an acknowledgement never overtakes an earlier message that is
// not stored yet. It is bounded: admit refuses once limit messages are
// waiting, so the MQTT handler never has to wait for room.
//
// It is not safe for concurrent use; the bridge guards it with a mutex.
type ackOrder[T any] struct {
	limit int
	head  uint64 // oldest admitted message not yet released
	next  uint64 // sequence number of the next admitted message
	items map[uint64]T
	done  map[uint64]bool
}

func newAckOrder[T any](limit int) *ackOrder[T] {
	return &ackOrder[T]{limit: max(1, limit), items: map[uint64]T{}, done: map[uint64]bool{}}
}

// admit numbers v, or reports false when limit messages are already waiting.
func (a *ackOrder[T]) admit(v T) (uint64, bool) {
	if a.pending() >= a.limit {
		return 0, false
	}
	seq := a.next
	a.next++
	a.items[seq] = v
	return seq, true
}

// finish marks seq as ready to acknowledge (stored, or rejected as bad
// input) and returns, in admission order, every message that may now be
// acknowledged.
func (a *ackOrder[T]) finish(seq uint64) []T {
	if seq < a.head || seq >= a.next {
		return nil
	}
	a.done[seq] = true
	var out []T
	for a.head < a.next && a.done[a.head] {
		out = append(out, a.items[a.head])
		delete(a.items, a.head)
		delete(a.done, a.head)
		a.head++
	}
	return out
}

// pending is the number of admitted messages not yet released.
func (a *ackOrder[T]) pending() int { return int(a.next - a.head) }
