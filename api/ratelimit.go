package api

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"poi/internal/config"
)

// maxBuckets bounds the limiter's memory: beyond it, buckets that are full
// again (their callers idle) are forgotten, which loses nothing.
const maxBuckets = 4096

// limiter is a token bucket per (bucket, caller), in this process.
type limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(c config.RateLimit) *limiter {
	return &limiter{rate: rate.Limit(c.Rate), burst: c.Burst, buckets: map[string]*rate.Limiter{}}
}

// take spends one token of key's bucket at now; when there is none it
// says how long until there is.
func (l *limiter) take(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			for k, old := range l.buckets {
				if old.TokensAt(now) >= float64(l.burst) {
					delete(l.buckets, k)
				}
			}
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// retryAfter is the Retry-After value for a wait: whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// rateLimit spends a token of the caller's bucket (its key; its address
// with access control off) or answers 429 with Retry-After.
func (s *Server) rateLimit(bucket string) gin.HandlerFunc {
	return func(c *gin.Context) {
		who := "ip:" + c.Request.RemoteAddr
		if host, _, err := net.SplitHostPort(c.Request.RemoteAddr); err == nil {
			who = "ip:" + host
		}
		if p, ok := s.caller(c); ok && p.KeyID != "" {
			who = "key:" + p.KeyID
		}
		ok, wait := s.limits.take(bucket+"|"+who, time.Now())
		if ok {
			c.Next()
			return
		}
		s.deps.Metrics.Rejected.WithLabelValues("api", "rate_limited").Inc()
		c.Header("Retry-After", retryAfter(wait))
		fail(c, http.StatusTooManyRequests, "rate limited",
			bucket+": over "+strconv.FormatFloat(float64(s.limits.rate), 'g', -1, 64)+" a second (burst "+strconv.Itoa(s.limits.burst)+") for this key; retry after "+retryAfter(wait)+" s")
	}
}
