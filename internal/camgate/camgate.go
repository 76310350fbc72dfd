// Package camgate decides which camera ids the service accepts. Every id
// accepted creates state (the bridge's throttle, the camera:seen entry, the
// tracker's per-camera state, stream subjects), so an MQTT publisher must
// not be able to create ids at will: an id is accepted when it is
// configured, when SceneScape lists it, or, with allow_unknown, while fewer
// than a cap of other unknown ids were seen within the idle TTL.
package camgate

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Rejection reasons (metric labels).
const (
	// ReasonUnknown: the id is not configured nor listed by SceneScape, and
	// unknown ids are not allowed.
	ReasonUnknown = "unknown_camera"
	// ReasonCap: unknown ids are allowed, but the cap of them is reached.
	ReasonCap = "camera_cap"
)

// Lister returns the ids of the cameras an external source (SceneScape)
// knows.
type Lister func(ctx context.Context) ([]string, error)

// Config is the policy.
type Config struct {
	// Known are the configured camera ids.
	Known []string
	// List, when set, is asked for more known ids: at most once per
	// Refresh, and only when an id is not otherwise known.
	List    Lister
	Refresh time.Duration
	// AllowUnknown admits other ids, at most MaxUnknown of them within
	// IdleTTL of their last message.
	AllowUnknown bool
	MaxUnknown   int
	IdleTTL      time.Duration
}

// Gate applies a Config; safe for concurrent use.
type Gate struct {
	cfg   Config
	known map[string]bool

	mu       sync.Mutex
	listed   map[string]bool
	listedAt time.Time
	unknown  map[string]time.Time // last admitted message of each unknown id
}

// New returns a gate.
func New(cfg Config) *Gate {
	g := &Gate{cfg: cfg, known: map[string]bool{}, listed: map[string]bool{}, unknown: map[string]time.Time{}}
	for _, id := range cfg.Known {
		g.known[id] = true
	}
	if g.cfg.Refresh <= 0 {
		g.cfg.Refresh = 30 * time.Second
	}
	return g
}

// Rejected is a camera id the gate refuses; Reason is its metric label.
type Rejected struct {
	Camera string
	Reason string
}

func (r *Rejected) Error() string {
	return fmt.Sprintf("camera %q refused: %s", r.Camera, r.Reason)
}

// Admit decides whether a message of camera at now is accepted. A
// SceneScape that cannot be asked counts as listing nothing new (the error
// is returned beside the decision, for the log).
func (g *Gate) Admit(ctx context.Context, camera string, now time.Time) (*Rejected, error) {
	if g.known[camera] {
		return nil, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var listErr error
	if g.cfg.List != nil && !g.listed[camera] && now.Sub(g.listedAt) >= g.cfg.Refresh {
		// Asked under the lock: one request per refresh period, however
		// many unknown ids arrive at once.
		g.listedAt = now
		ids, err := g.cfg.List(ctx)
		if err != nil {
			listErr = fmt.Errorf("camgate: listing cameras: %w", err)
		} else {
			g.listed = make(map[string]bool, len(ids))
			for _, id := range ids {
				g.listed[id] = true
			}
		}
	}
	if g.listed[camera] {
		return nil, listErr
	}
	if !g.cfg.AllowUnknown {
		return &Rejected{Camera: camera, Reason: ReasonUnknown}, listErr
	}
	if _, ok := g.unknown[camera]; !ok && len(g.unknown) >= g.cfg.MaxUnknown {
		g.expire(now)
		if len(g.unknown) >= g.cfg.MaxUnknown {
			return &Rejected{Camera: camera, Reason: ReasonCap}, listErr
		}
	}
	g.unknown[camera] = now
	return nil, listErr
}

// expire forgets the unknown ids silent for IdleTTL (g.mu held). It runs
// only when the cap is reached, so its cost is paid once per expiry wave,
// not per message.
func (g *Gate) expire(now time.Time) {
	for id, at := range g.unknown {
		if now.Sub(at) >= g.cfg.IdleTTL {
			delete(g.unknown, id)
		}
	}
}

// Cap bounds how many ids can be admitted at once: configured, listed,
// and the unknown ones allowed.
func (g *Gate) Cap() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(g.known) + len(g.listed)
	if g.cfg.AllowUnknown {
		n += g.cfg.MaxUnknown
	}
	return n
}

// Tracked is how many ids the gate holds state for: configured, listed and
// unknown (for tests and metrics).
func (g *Gate) Tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.known) + len(g.listed) + len(g.unknown)
}
