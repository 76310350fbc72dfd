// Package streams is the single place that names every JetStream stream,
// subject and durable consumer of the service, and declares them.
//
// Declaring is idempotent: a second start finds the same definitions and
// changes nothing; a changed definition is updated in place and logged, never
// silently ignored.
package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	// Ingest holds everything the bridge accepted from MQTT, already
	// validated. It is a work queue with a bounded backlog: when it is full,
	// publishing fails (DiscardNew) and the bridge withholds the MQTT
	// acknowledgement, so the broker redelivers instead of anyone dropping.
	Ingest = "POI_INGEST"
	// Observations holds, per camera, the faces found in a frame with their
	// embeddings, for the tracker.
	Observations = "POI_OBSERVATIONS"
	// Sightings holds tracked face observations for the alert stage.
	Sightings = "POI_SIGHTINGS"
	// Samples is the log of every vector added to the all-detections index,
	// kept for the retention period: each index replica (API and worker
	// processes) replays it from its snapshot's position.
	Samples = "POI_SAMPLES"
	// Alerts is the public alert stream (a contract with integrators).
	Alerts = "POI_ALERTS"
	// Control carries POI enrolments and deletions to every replica of the
	// POI index.
	Control = "POI_CONTROL"
	// DeadLetter keeps messages that failed MaxDeliver times, for operators.
	DeadLetter = "POI_DLQ"
)

// Subjects. Camera ids are escaped with Token before they go into a subject.
const (
	IngestFrame      = "poi.ingest.frame"      // .{camera}: JPEG frame for the full path
	IngestSceneScape = "poi.ingest.scenescape" // .{camera}: SceneScape detections
	IngestImage      = "poi.ingest.image"      // .{camera}: SceneScape camera image
	IngestRegion     = "poi.ingest.region"     // .{scene}.{region}: region events
	ObservationsSubj = "poi.obs"               // .{camera}
	SightingsSubj    = "poi.sighting"          // .{camera}
	SamplesSubj      = "poi.sample"            // .{camera}
	AlertsSubj       = "poi.alerts"            // .{severity}.{poi_id} (contract)
	ControlSubj      = "poi.control"           // .{enrolled|deleted}
	DeadLetterSubj   = "poi.dlq"               // .{consumer}
	// EmbedService is the core-NATS request-reply subject of the embedding
	// service (queue group EmbedQueue), used by API processes that do not
	// load models.
	EmbedService = "poi.svc.embed"
	EmbedQueue   = "embed"
)

// Durable consumer names.
const (
	ConsumerDetect = "detect"
	ConsumerFrames = "frames"
	ConsumerZones  = "zones"
	ConsumerIndex  = "index"
	ConsumerAlert  = "alert"
)

// Subject joins tokens into a subject, escaping each.
func Subject(prefix string, tokens ...string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, t := range tokens {
		b.WriteByte('.')
		b.WriteString(Token(t))
	}
	return b.String()
}

// Token escapes s into one subject token: every byte outside [A-Za-z0-9_:-]
// (which covers '.', '*', '>', spaces and '%') becomes %XX, so that any camera
// id maps to exactly one token and back. An empty string becomes a lone "%"
// (never produced otherwise) because an empty token is not a valid subject.
func Token(s string) string {
	if s == "" {
		return "%"
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// Untoken reverses Token.
func Untoken(t string) (string, error) {
	if t == "%" {
		return "", nil
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '%' {
			b.WriteByte(t[i])
			continue
		}
		if i+2 >= len(t) {
			return "", fmt.Errorf("untoken %q: truncated escape", t)
		}
		var v byte
		for _, h := range []byte{t[i+1], t[i+2]} {
			switch {
			case h >= '0' && h <= '9':
				v = v<<4 | (h - '0')
			case h >= 'A' && h <= 'F':
				v = v<<4 | (h - 'A' + 10)
			default:
				return "", fmt.Errorf("untoken %q: bad escape", t)
			}
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), nil
}

// Limits sizes the streams; the defaults suit one site with tens of cameras.
type Limits struct {
	// IngestMaxAge bounds how long unprocessed input waits: frames older
	// than this are useless for live alerts.
	IngestMaxAge   time.Duration
	IngestMaxBytes int64
	// DuplicateWindow is how long a Nats-Msg-Id is remembered: it must
	// exceed the MQTT redelivery horizon (broker retries within seconds).
	DuplicateWindow time.Duration
	AlertsMaxAge    time.Duration
	DLQMaxAge       time.Duration
	// Retention is how long samples stay replayable: the same as the
	// all-detections index keeps them.
	Retention time.Duration
}

// DefaultLimits returns the limits used when nothing else is configured.
func DefaultLimits() Limits {
	return Limits{
		IngestMaxAge:    time.Hour,
		IngestMaxBytes:  2 << 30,
		DuplicateWindow: 2 * time.Minute,
		AlertsMaxAge:    7 * 24 * time.Hour,
		DLQMaxAge:       7 * 24 * time.Hour,
		Retention:       7 * 24 * time.Hour,
	}
}

// Definitions returns every stream of the service.
func Definitions(l Limits) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name:        Ingest,
			Description: "validated camera input from the MQTT bridge",
			Subjects:    []string{IngestFrame + ".>", IngestSceneScape + ".>", IngestImage + ".>", IngestRegion + ".>"},
			// Interest retention: a message is kept until every consumer
			// bound to its subject has acknowledged it.
			Retention:  jetstream.InterestPolicy,
			Discard:    jetstream.DiscardNew,
			MaxAge:     l.IngestMaxAge,
			MaxBytes:   l.IngestMaxBytes,
			MaxMsgSize: 16 << 20,
			Duplicates: l.DuplicateWindow,
			Storage:    jetstream.FileStorage,
		},
		{
			Name:        Observations,
			Description: "faces found per frame, with embeddings, for the tracker",
			Subjects:    []string{ObservationsSubj + ".>"},
			Retention:   jetstream.WorkQueuePolicy,
			Discard:     jetstream.DiscardNew,
			MaxAge:      l.IngestMaxAge,
			MaxBytes:    l.IngestMaxBytes / 2,
			Duplicates:  l.DuplicateWindow,
			Storage:     jetstream.FileStorage,
		},
		{
			Name:        Sightings,
			Description: "tracked face observations for the alert stage",
			Subjects:    []string{SightingsSubj + ".>"},
			Retention:   jetstream.WorkQueuePolicy,
			Discard:     jetstream.DiscardNew,
			MaxAge:      l.IngestMaxAge,
			MaxBytes:    l.IngestMaxBytes / 4,
			Duplicates:  l.DuplicateWindow,
			Storage:     jetstream.FileStorage,
		},
		{
			Name:        Samples,
			Description: "every vector of the all-detections index, for replica replay",
			Subjects:    []string{SamplesSubj + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      l.Retention,
			Duplicates:  l.DuplicateWindow,
			Storage:     jetstream.FileStorage,
		},
		{
			Name:        Alerts,
			Description: "POI match alerts: one element of GET /api/v1/alerts per message",
			Subjects:    []string{AlertsSubj + ".>"},
			Retention:   jetstream.LimitsPolicy,
			// Old alerts make way for new ones: a full alert stream must
			// never stop live alerting.
			Discard:    jetstream.DiscardOld,
			MaxAge:     l.AlertsMaxAge,
			Duplicates: l.DuplicateWindow,
			Storage:    jetstream.FileStorage,
		},
		{
			Name:        Control,
			Description: "POI enrolments and deletions for every POI index replica",
			Subjects:    []string{ControlSubj + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      24 * time.Hour,
			Storage:     jetstream.FileStorage,
		},
		{
			Name:        DeadLetter,
			Description: "messages that failed every delivery attempt",
			Subjects:    []string{DeadLetterSubj + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      l.DLQMaxAge,
			MaxBytes:    1 << 30,
			Storage:     jetstream.FileStorage,
		},
	}
}

// ConsumerDef is a durable pull consumer and the stream it reads.
type ConsumerDef struct {
	Stream string
	Config jetstream.ConsumerConfig
}

// Consumers returns every durable consumer of the service. maxDeliver bounds
// delivery attempts before a message goes to the dead-letter stream.
func Consumers(maxDeliver int) []ConsumerDef {
	pull := func(stream, name, desc string, ackWait time.Duration, maxAck int, subjects ...string) ConsumerDef {
		return ConsumerDef{Stream: stream, Config: jetstream.ConsumerConfig{
			Durable:        name,
			Description:    desc,
			FilterSubjects: subjects,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        ackWait,
			MaxDeliver:     maxDeliver,
			// Bounded in flight across all workers of the pool: beyond it,
			// delivery pauses until acks come back (back-pressure).
			MaxAckPending: maxAck,
		}}
	}
	return []ConsumerDef{
		// One frame in flight: observations must reach the tracker in each
		// camera's frame order, and detection (about 5 ms a frame with the
		// reduced-scale decode) is cheap; the expensive embedder runs
		// behind the tracker, only when a track needs it. Scaling past one
		// ordered consumer means partitioning cameras (README).
		pull(Ingest, ConsumerDetect, "frames and SceneScape detections to faces", 60*time.Second, 1,
			IngestFrame+".>", IngestSceneScape+".>"),
		pull(Ingest, ConsumerFrames, "SceneScape camera images into the frame cache", 30*time.Second, 256, IngestImage+".>"),
		pull(Ingest, ConsumerZones, "region events into zone appearances", 30*time.Second, 256, IngestRegion+".>"),
		// One in flight: the tracker needs a camera's observations in order.
		// A short ack wait, because while one observation is unacknowledged
		// nothing else flows: a dead tracker is replaced within 10 s (a live
		// one that is slow keeps its message with in-progress acks).
		pull(Observations, ConsumerIndex, "per-camera tracking and sampling", 10*time.Second, 1, ObservationsSubj+".>"),
		pull(Sightings, ConsumerAlert, "POI matching and alerting", 30*time.Second, 256, SightingsSubj+".>"),
	}
}

// Declare creates or updates every stream and consumer. It logs what it
// created or changed, so that an edited definition is visible in the logs.
func Declare(ctx context.Context, js jetstream.JetStream, l Limits, maxDeliver int, log *slog.Logger) error {
	for _, sc := range Definitions(l) {
		prev, err := js.Stream(ctx, sc.Name)
		var before *jetstream.StreamConfig
		switch {
		case err == nil:
			c := prev.CachedInfo().Config
			before = &c
		case errors.Is(err, jetstream.ErrStreamNotFound):
		default:
			return fmt.Errorf("declare stream %s: %w", sc.Name, err)
		}
		s, err := js.CreateOrUpdateStream(ctx, sc)
		if err != nil {
			return fmt.Errorf("declare stream %s: %w", sc.Name, err)
		}
		logChange(log, "stream", sc.Name, before != nil, before != nil && !reflect.DeepEqual(*before, s.CachedInfo().Config))
	}
	for _, cd := range Consumers(maxDeliver) {
		prev, err := js.Consumer(ctx, cd.Stream, cd.Config.Durable)
		var before *jetstream.ConsumerConfig
		switch {
		case err == nil:
			c := prev.CachedInfo().Config
			before = &c
		case errors.Is(err, jetstream.ErrConsumerNotFound):
		default:
			return fmt.Errorf("declare consumer %s/%s: %w", cd.Stream, cd.Config.Durable, err)
		}
		c, err := js.CreateOrUpdateConsumer(ctx, cd.Stream, cd.Config)
		if err != nil {
			return fmt.Errorf("declare consumer %s/%s: %w", cd.Stream, cd.Config.Durable, err)
		}
		logChange(log, "consumer", cd.Stream+"/"+cd.Config.Durable, before != nil, before != nil && !reflect.DeepEqual(*before, c.CachedInfo().Config))
	}
	return nil
}

func logChange(log *slog.Logger, kind, name string, existed, changed bool) {
	switch {
	case !existed:
		log.Info("declared "+kind, kind, name, "action", "created")
	case changed:
		log.Warn("declared "+kind, kind, name, "action", "updated")
	default:
		log.Debug("declared "+kind, kind, name, "action", "unchanged")
	}
}
