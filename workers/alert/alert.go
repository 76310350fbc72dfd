// Package alert is the alert stage: each sighting (a tracked face with a
// fresh vector) is searched in the POI index; a match raises at most one
// alert per track and POI, and none while the POI is in its cooldown on
// that camera. Alerts are stored in Redis and published on JetStream
// (POI_ALERTS, poi.alerts.{severity}.{poi_id}) and MQTT
// (poi/alerts/{severity}/{poi_id}) with the same payload.
package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/erasure"
	"poi/internal/metrics"
	"poi/internal/review"
	"poi/internal/store"
	"poi/internal/vectorindex"
	"poi/streams"
	"poi/workers/pool"
)

// Config tunes alerting.
type Config struct {
	Model          string
	MatchThreshold float64
	Cooldown       time.Duration
	Retention      time.Duration
	// NegativeMargin: a sighting alerts for a POI only if it is closer to
	// the POI's references than to each of its negatives (faces dismissed
	// as not the POI) by more than this.
	NegativeMargin float64
}

// candidates is how many POIs a face is checked against: the best one may
// be inactive or vetoed by its negatives, and the next one still alert.
const candidates = 4

// Publisher sends an alert to MQTT listeners.
type Publisher interface {
	Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error
}

// Stage is the alert stage.
type Stage struct {
	cfg   Config
	index *vectorindex.POIIndex
	store *store.Store
	js    jetstream.JetStream
	mqtt  Publisher
	m     *metrics.Metrics
	log   *slog.Logger

	// settled remembers the (track, POI) pairs this worker saw through to
	// the end, with the best similarity recorded for them. A claimed pair
	// never alerts again (Redis decides that once), so a later sighting
	// that does not beat the recorded similarity has nothing left to do:
	// the cache spares Redis the sightings of a matched track that follow
	// one another many times a second.
	mu      sync.Mutex
	settled map[string]float32

	// hook, set by tests only, runs at each point of a face's handling, so
	// a test can erase the POI exactly there.
	hook func(point string)
}

// settledMax bounds the cache; past it the cache starts again empty (a
// miss only costs the Redis round trips the cache saves).
const settledMax = 100_000

func (s *Stage) isSettled(key string, sim float32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, ok := s.settled[key]
	return ok && sim <= best
}

func (s *Stage) settle(key string, sim float32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.settled) >= settledMax {
		s.settled = map[string]float32{}
	}
	if sim > s.settled[key] {
		s.settled[key] = sim
	}
}

// New returns the stage. mqtt may be nil (JetStream and Redis only).
func New(cfg Config, idx *vectorindex.POIIndex, st *store.Store, js jetstream.JetStream, mqtt Publisher, m *metrics.Metrics, log *slog.Logger) *Stage {
	return &Stage{cfg: cfg, index: idx, store: st, js: js, mqtt: mqtt, m: m, log: log.With("stage", "alert"), settled: map[string]float32{}}
}

// AlertID is the seed's format, alert-YYYYmmdd-HHMMSS-{poi_id}, plus a
// suffix from the track so that two tracks alerting in the same second get
// different ids, and a redelivery gets the same one.
func AlertID(t time.Time, poi, track string) string {
	h := fnv.New32a()
	h.Write([]byte(track))
	return fmt.Sprintf("alert-%s-%s-%06x", t.UTC().Format("20060102-150405"), poi, h.Sum32()&0xffffff)
}

// MQTTTopic is where an alert goes on MQTT (a contract).
func MQTTTopic(severity, poi string) string { return "poi/alerts/" + severity + "/" + poi }

// Handle is the pool handler of the alert consumer.
func (s *Stage) Handle(ctx context.Context, msg jetstream.Msg) error {
	var sg streams.Sighting
	if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &sg); err != nil {
		return pool.Permanent("bad_envelope", err)
	}
	if sg.Model != s.cfg.Model {
		return pool.Permanent("model_mismatch", fmt.Errorf("alert: sighting of model %q, index is %q", sg.Model, s.cfg.Model))
	}
	// The faces of one frame: each is checked on its own; a failure is
	// retried for the whole message, which the claims make idempotent.
	for _, f := range sg.All() {
		if err := s.face(ctx, &sg, f); err != nil {
			return err
		}
	}
	return nil
}

// face checks one face of a sighting against the POI index.
func (s *Stage) face(ctx context.Context, sg *streams.Sighting, f streams.SightedFace) error {
	hits, err := s.index.Search(f.Embedding, candidates)
	if err != nil {
		return pool.Permanent("bad_vector", fmt.Errorf("alert: search: %w", err))
	}
	var (
		hit vectorindex.POIHit
		poi store.POI
		key string
	)
	for _, h := range hits {
		if float64(h.Similarity) < s.cfg.MatchThreshold {
			return nil // hits come best first: none further matches
		}
		key = f.TrackID + "\x00" + h.POIID
		if s.isSettled(key, h.Similarity) {
			return nil
		}
		p, negs, err := s.store.POIForAlert(ctx, h.POIID, time.Now())
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since this replica last heard: no alert for it
		}
		if err != nil {
			return err
		}
		if p.Status == store.StatusInactive {
			continue
		}
		if !review.Passes(h.Similarity, negativeSimilarities(f.Embedding, negs), s.cfg.NegativeMargin) {
			s.m.Rejected.WithLabelValues("alert", "negative").Inc()
			s.log.Debug("match vetoed by a dismissed face", "poi_id", p.ID, "track", f.TrackID, "similarity", h.Similarity)
			continue
		}
		hit, poi = h, p
		break
	}
	if poi.ID == "" {
		return nil
	}
	s.at(pointLookedUp)
	// From here on the POI may be erased at any moment. Every Redis write
	// below checks its tombstone in the same step (ErrErased, ClaimErased),
	// so none can recreate a key the purge removed; what the purge already
	// removed before a write began stays removed, since the write refuses.
	err = s.store.RecordAppearance(ctx, poi.ID, store.Appearance{TrackID: f.TrackID, Similarity: float64(hit.Similarity), BestTime: sg.Timestamp}, s.cfg.Retention)
	if errors.Is(err, store.ErrErased) {
		return s.erased(poi.ID)
	}
	if err != nil {
		return err
	}
	id := AlertID(sg.Timestamp, poi.ID, f.TrackID)
	outcome, prev, err := s.store.ClaimAlert(ctx, id, f.TrackID, poi.ID, sg.CameraID, s.cfg.Retention, s.cfg.Cooldown)
	if err != nil {
		return err
	}
	if outcome == store.ClaimErased {
		return s.erased(poi.ID)
	}
	s.at(pointClaimed)
	if outcome != store.ClaimNew && outcome != store.ClaimReplay {
		s.log.Debug("alert suppressed", "poi_id", poi.ID, "track", f.TrackID, "why", outcome)
		s.settle(key, hit.Similarity)
		return nil
	}
	a := streams.Alert{
		EventType: "poi_match_alert",
		AlertID:   id,
		POIID:     poi.ID,
		Severity:  poi.Severity,
		Timestamp: sg.Timestamp.UTC().Format(time.RFC3339),
		Status:    "New",
		Match: streams.AlertMatch{
			CameraID:        sg.CameraID,
			Confidence:      round(float64(f.Confidence)),
			SimilarityScore: round(float64(hit.Similarity)),
			BBox:            f.Box[:],
			FrameNumber:     int64(sg.FrameNumber),
			ThumbnailPath:   "/api/v1/thumbnail/" + f.TrackID,
		},
		POIMetadata: streams.AlertPOIMetadata{
			Notes:                poi.Notes,
			EnrollmentDate:       poi.CreatedAt.UTC().Format(time.RFC3339),
			TotalPreviousMatches: prev,
		},
	}
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("alert: encode: %w", err)
	}
	isNew, err := s.store.StoreAlert(ctx, id, poi.ID, body, f.Embedding, s.cfg.Retention)
	if errors.Is(err, store.ErrErased) {
		return s.erased(poi.ID)
	}
	if err != nil {
		return err
	}
	if isNew {
		// Counted when stored, not after delivery: the record is what the
		// API serves, and a delivery that fails is retried as a replay,
		// which StoreAlert no longer reports as new.
		s.m.Alerts.WithLabelValues(poi.Severity).Inc()
		s.log.Info("alert", "alert_id", id, "poi_id", poi.ID, "camera", sg.CameraID, "track", f.TrackID, "similarity", a.Match.SimilarityScore)
	}
	out := nats.NewMsg(streams.Subject(streams.AlertsSubj, poi.Severity, poi.ID))
	out.Data = body
	out.Header.Set(jetstream.MsgIDHeader, id)
	ack, err := s.js.PublishMsg(ctx, out)
	if err != nil {
		return fmt.Errorf("alert: publish %s: %w", id, err)
	}
	s.at(pointPublished)
	// The re-check after the publish: a purge that swept POI_ALERTS
	// before this message landed would leave it there. A purge that begins
	// after this check sweeps the stream later and takes the message.
	erased, err := s.store.Erased(ctx, poi.ID)
	if err != nil {
		return err
	}
	if erased {
		if err := erasure.EraseMessage(ctx, s.js, streams.Alerts, ack.Sequence); err != nil {
			return fmt.Errorf("alert: unpublish %s of an erased poi: %w", id, err)
		}
		return s.erased(poi.ID)
	}
	if s.mqtt != nil {
		// MQTT has no dedup of its own: a marker after the publish keeps a
		// redelivered sighting from sending it twice (a crash between the
		// two can still repeat it once: MQTT delivery is at least once).
		sent, err := s.store.AlertSent(ctx, id)
		if err != nil {
			return err
		}
		if !sent {
			if err := s.mqtt.Publish(ctx, MQTTTopic(poi.Severity, poi.ID), 1, false, body); err != nil {
				return fmt.Errorf("alert: mqtt %s: %w", id, err)
			}
			err := s.store.MarkAlertSent(ctx, id, poi.ID, s.cfg.Retention)
			if errors.Is(err, store.ErrErased) {
				return s.erased(poi.ID)
			}
			if err != nil {
				return err
			}
		}
	}
	s.settle(key, hit.Similarity)
	return nil
}

// erased ends the handling of a face whose POI was erased while it was
// handled: nothing more is written, and it is not an error.
func (s *Stage) erased(poi string) error {
	s.log.Info("alert dropped: poi erased while it was raised", "poi_id", poi)
	return nil
}

// Points of the handling of a face that tests stop at (Stage.hook).
const (
	pointLookedUp  = "looked-up" // the POI was read from Redis
	pointClaimed   = "claimed"   // the alert was claimed
	pointPublished = "published" // the alert is on POI_ALERTS
)

func (s *Stage) at(point string) {
	if s.hook != nil {
		s.hook(point)
	}
}

// negativeSimilarities are the cosine similarities of face to each
// negative (vectors are stored L2-normalised by the embedder; they are
// normalised again here so a stored vector of another scale cannot skew
// the comparison).
func negativeSimilarities(face []float32, negs []store.Negative) []float32 {
	if len(negs) == 0 {
		return nil
	}
	out := make([]float32, 0, len(negs))
	for _, n := range negs {
		out = append(out, cosine(face, n.Vector))
	}
	return out
}

func cosine(a, b []float32) float32 {
	if len(a) != len(b) {
		return -1 // another model's vector: never closer than a reference
	}
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return -1
	}
	return float32(dot / math.Sqrt(na*nb))
}

func round(x float64) float64 { return float64(int64(x*10000+0.5)) / 10000 }
