package api

import (
	"testing"
	"time"

	"poi/internal/config"
)

// TestLimiterSpendsABurstThenRefillsAtTheRate: the bucket's arithmetic,
// on a clock the test moves (no waiting).
func TestLimiterSpendsABurstThenRefillsAtTheRate(t *testing.T) {
	l := newLimiter(config.RateLimit{Rate: 2, Burst: 3})
	now := time.Unix(1_000_000, 0)
	for i := range 3 {
		if ok, _ := l.take("enroll|key:a", now); !ok {
			t.Fatalf("take %d of a burst of 3 refused", i+1)
		}
	}
	ok, wait := l.take("enroll|key:a", now)
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("4th take: ok=%v wait=%s; want a refusal with a wait of at most 1/rate", ok, wait)
	}
	if got := retryAfter(wait); got != "1" {
		t.Fatalf("Retry-After for %s = %q, want whole seconds, at least 1", wait, got)
	}
	// A refused take must not spend: half a second later there is one token.
	if ok, _ := l.take("enroll|key:a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("a token refilled after 1/rate was refused: the refused take spent one")
	}
	if ok, _ := l.take("enroll|key:b", now); !ok {
		t.Fatal("another key's bucket was spent by key a")
	}
	if ok, _ := l.take("search|key:a", now); !ok {
		t.Fatal("the search bucket was spent by enrolments")
	}
}

// TestLimiterForgetsOnlyFullBucketsWhenAtItsBound: memory stays bounded
// under many callers, and a caller in the middle of its burst keeps its
// debt (forgetting it would hand it a fresh burst).
func TestLimiterForgetsOnlyFullBucketsWhenAtItsBound(t *testing.T) {
	l := newLimiter(config.RateLimit{Rate: 1, Burst: 2})
	now := time.Unix(1_000_000, 0)
	l.take("busy", now)
	l.take("busy", now)
	for i := range maxBuckets - 1 {
		l.take("idle-"+time.Duration(i).String(), now.Add(-time.Hour))
	}
	// Every idle bucket is full again at now; busy is empty.
	if ok, _ := l.take("newcomer", now); !ok {
		t.Fatal("newcomer refused")
	}
	if n := len(l.buckets); n > 2 {
		t.Fatalf("%d buckets after the sweep, want busy and newcomer only", n)
	}
	if ok, _ := l.take("busy", now); ok {
		t.Fatal("the busy caller's empty bucket was forgotten: it got a fresh burst")
	}
}
